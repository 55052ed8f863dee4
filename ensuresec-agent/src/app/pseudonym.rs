//! Accounts and card fingerprints are kept only as keyed hashes: BLAKE3 in
//! keyed mode with a per-installation key that never leaves the host, so a
//! hash in a listing or a log cannot be reversed by hashing guesses elsewhere.

use std::{fmt, io::Write as _, os::unix::fs::OpenOptionsExt as _, path::Path};

use crate::error::{Error, Result};

/// A keyed hash of an account name or a card fingerprint.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pseudonym(pub [u8; 16]);

impl fmt::Display for Pseudonym {
    /// The first 8 bytes in hex: enough to tell accounts apart in evidence.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Pseudonym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pseudonym({self})")
    }
}

impl Pseudonym {
    /// A stand-in for a label that is no secret (a signature's id), so that
    /// the same sets count labels and pseudonyms alike.
    pub fn of_label(label: &str) -> Self {
        let mut out = [0u8; 16];
        out.copy_from_slice(&blake3::hash(label.as_bytes()).as_bytes()[..16]);
        Pseudonym(out)
    }
}

#[derive(Clone)]
pub struct Hasher {
    key: [u8; 32],
}

impl Hasher {
    pub fn with_key(key: [u8; 32]) -> Self {
        Self { key }
    }

    /// A key of this process only (replays: nothing outlives them).
    pub fn ephemeral() -> Result<Self> {
        let mut key = [0u8; 32];
        getrandom(&mut key).map_err(|e| Error::io("making a hashing key", e))?;
        Ok(Self::with_key(key))
    }

    /// The installation's key from `path`, which must exist (the CLI never
    /// makes one: it must hash as the agent did).
    pub fn load(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Err(Error::Config {
                path: path.to_path_buf(),
                why: "no hashing key: the agent has not followed application logs or events with this state directory".into(),
            });
        }
        Self::load_or_create(path)
    }

    /// The installation's key from `path`, created (mode 0600) on first use.
    pub fn load_or_create(path: &Path) -> Result<Self> {
        let io = |what: &str, e| Error::io(format!("{what} the hashing key {}", path.display()), e);
        match std::fs::read(path) {
            Ok(bytes) => {
                let key: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| Error::Config {
                    path: path.to_path_buf(),
                    why: format!("the hashing key must be 32 bytes, not {}", b.len()),
                })?;
                Ok(Self::with_key(key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                getrandom(&mut key).map_err(|e| io("making", e))?;
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| io("making the folder of", e))?;
                }
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(|e| io("creating", e))?;
                file.write_all(&key).map_err(|e| io("writing", e))?;
                file.sync_all().map_err(|e| io("syncing", e))?;
                Ok(Self::with_key(key))
            }
            Err(e) => Err(io("reading", e)),
        }
    }

    /// The pseudonym of `text`. Case and surrounding spaces of an account
    /// name are not part of who it is.
    pub fn hash(&self, text: &str) -> Pseudonym {
        let normal = text.trim().to_lowercase();
        let full = blake3::keyed_hash(&self.key, normal.as_bytes());
        let mut out = [0u8; 16];
        out.copy_from_slice(&full.as_bytes()[..16]);
        Pseudonym(out)
    }
}

fn getrandom(buf: &mut [u8]) -> std::io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        // SAFETY: writes at most `len - filled` bytes into the buffer.
        let n =
            unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), buf.len() - filled, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e);
            }
        } else {
            filled += n as usize;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_decides_the_hash_and_is_kept() {
        let dir = std::env::temp_dir().join(format!("es-key-{}", std::process::id()));
        let path = dir.join("app.key");
        let a = Hasher::load_or_create(&path).unwrap();
        let again = Hasher::load_or_create(&path).unwrap();
        assert_eq!(
            a.hash("Alice@Example.com "),
            again.hash("alice@example.com")
        );
        let other = Hasher::with_key([7; 32]);
        assert_ne!(a.hash("alice"), other.hash("alice"));
        let mode = std::fs::metadata(&path).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        std::fs::write(&path, b"short").unwrap();
        let err = Hasher::load_or_create(&path).err().unwrap().to_string();
        assert!(err.contains("32 bytes"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
