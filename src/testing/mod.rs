//! Support for tests that need real services (here: etcd). Public and not
//! test-only so integration tests of every crate in the workspace can use
//! it.

pub mod etcd;

pub use etcd::EtcdServer;
