//! The configuration: typed model, key layout, validation, key-by-key
//! state, stores (etcd; file for the embedded default), the watcher that
//! feeds changes to the controller, and the status written back. Also the
//! values parsed from it that others consume (`PortStatusSource`), and the
//! fabric document and `apply` the CLI and the lab share.
//!
//! May use: `net`. Everything downstream uses it; it uses nothing
//! downstream.

pub mod apply;
pub mod document;
pub mod etcd;
pub mod file;
pub mod keys;
pub mod model;
pub mod section;
pub mod state;
pub mod status;
pub mod store;
pub mod validate;
pub mod watch;

pub use keys::{ConfigKey, DEFAULT_PREFIX};
pub use model::*;
pub use section::Section;
pub use state::{Change, ConfigState, KeyError};
pub use validate::{validate, validate_changed, Problem};
