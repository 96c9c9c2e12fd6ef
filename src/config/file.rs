//! The file store: a YAML file in the shape of `Fabric`, read key by key
//! exactly as etcd's keys are, so a bad entry is rejected the same way. It
//! is the embedded default when no etcd endpoint is given; changes are
//! noticed by polling the file's modification time and size.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{error, info};

use super::keys::document_to_raw;
use super::store::{ConfigStore, RawSnapshot, StoreError};
use super::watch::Feed;

#[derive(Debug, Clone)]
pub struct FileStore {
    path: PathBuf,
}

impl FileStore {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileStore { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the file now (revision 0: files have no history).
    pub fn load_now(&self) -> Result<RawSnapshot, StoreError> {
        let text = std::fs::read_to_string(&self.path).map_err(|source| StoreError::Io {
            path: self.path.clone(),
            source,
        })?;
        let kvs = document_to_raw(&text).map_err(|source| StoreError::Document {
            path: self.path.clone(),
            source,
        })?;
        Ok(RawSnapshot { revision: 0, kvs })
    }

    fn stamp(&self) -> Option<(SystemTime, u64)> {
        let m = std::fs::metadata(&self.path).ok()?;
        Some((m.modified().ok()?, m.len()))
    }
}

impl ConfigStore for FileStore {
    async fn load(&self) -> Result<RawSnapshot, StoreError> {
        self.load_now()
    }
}

/// Feeds the file's content as a `Feed::Reset` at start and after every
/// change (revisions count the successful reads from 1). A file that cannot
/// be read or parsed leaves the last good configuration in force.
pub fn spawn_file_feed(
    path: PathBuf,
    poll: Duration,
) -> (mpsc::UnboundedReceiver<Feed>, JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let store = FileStore::new(path);
    let task = tokio::spawn(async move {
        // The stamp last read, and one seen changed but not yet read: a
        // file is read only once its stamp held still for a poll interval,
        // so a writer caught between truncating and writing (an empty
        // file: no configuration at all!) is never taken for an edit.
        let mut read: Option<Option<(SystemTime, u64)>> = None;
        let mut pending = None;
        let mut revision = 0;
        loop {
            let stamp = store.stamp();
            if read != Some(stamp) {
                if pending == Some(stamp) || read.is_none() {
                    read = Some(stamp);
                    match store.load_now() {
                        Ok(snap) => {
                            revision += 1;
                            info!(path = %store.path.display(), revision, "configuration file read");
                            if tx
                                .send(Feed::Reset {
                                    revision,
                                    kvs: snap.kvs,
                                })
                                .is_err()
                            {
                                return;
                            }
                        }
                        Err(e) => {
                            error!(error = %e, "configuration file unusable; keeping the last good config")
                        }
                    }
                } else {
                    pending = Some(stamp);
                }
            }
            tokio::time::sleep(poll).await;
            if tx.is_closed() {
                return;
            }
        }
    });
    (rx, task)
}
