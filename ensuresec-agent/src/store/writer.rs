//! The write lock. Every change to the pinned state goes through a `Writer`,
//! which exists only while its holder has the exclusive lock on the pin
//! directory: two writers (CLI commands, agent threads) never interleave their
//! read-modify-write of a shared record such as `ES_CONTROL`.

use std::{fs::File, ops::Deref};

use ensuresec_common::maps::MAP_CONTROL;

use super::Store;
use crate::{
    error::{Error, Result},
    sys,
};

/// Holds the write lock; reads go through to the store.
pub struct Writer<'s> {
    store: &'s Store,
    _lock: File,
}

impl Deref for Writer<'_> {
    type Target = Store;

    fn deref(&self) -> &Store {
        self.store
    }
}

impl Store {
    /// Takes the write lock (an exclusive `flock` on the pin directory),
    /// waiting for the writer that holds it. Fails when, meanwhile, the maps
    /// this store opened stopped being the pinned ones (a `detach` removed
    /// them): nothing written then would be enforced.
    pub fn write(&self) -> Result<Writer<'_>> {
        let root = self.pins().root();
        let file =
            File::open(root).map_err(|e| Error::io(format!("opening {}", root.display()), e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                // An import of a million entries holds it for seconds.
                tracing::info!(pins = %root.display(), "another writer holds the lists' lock: waiting for it");
                file.lock()
                    .map_err(|e| Error::io(format!("locking {}", root.display()), e))?;
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Error::io(format!("locking {}", root.display()), e));
            }
        }
        let ours = self.control.id()?;
        let pinned = self.pins().map(MAP_CONTROL);
        let still_pinned = sys::obj_get(&pinned)
            .ok()
            .and_then(|fd| sys::map_id(std::os::fd::AsFd::as_fd(&fd)).ok());
        if still_pinned != Some(ours) {
            return Err(Error::MapsReplaced(root.to_path_buf()));
        }
        Ok(Writer {
            store: self,
            _lock: file,
        })
    }
}
