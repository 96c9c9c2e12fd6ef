//! The configuration: typed model, validation, stores (etcd and file) and the
//! watcher that feeds changes to the controller.

pub mod model;

pub use model::*;
