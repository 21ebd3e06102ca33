//! A remote source read once for several targets: each blob is fetched from the source
//! the first time any target reads it, into a file of a temporary folder (under
//! [`super::spool_dir`]), and every later read of it, by any target, is of that file.
//!
//! Memory stays that of one copy buffer per blob being fetched; disk holds every blob
//! some target lacked, until the push ends and the folder goes. A reader that wants a
//! blob another is fetching waits for it (on the blocking thread it reads on), so the
//! source sees one GET per blob. A fetch is checked against the blob's digest before it
//! is kept; one that fails is not kept, and the next reader fetches again.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use sha2::{Digest as _, Sha256};

use super::{Blobs, Descriptor, Digest, Error};

/// The blob store of a source read once: a handle on what every reader shares.
pub(super) struct Spool(Arc<Inner>);

struct Inner {
    source: Arc<dyn Blobs>,
    dir: tempfile::TempDir,
    /// Per blob, the file it was fetched into, once it was; the lock is held while it
    /// is fetched.
    fetched: Mutex<HashMap<Digest, Arc<Mutex<Option<PathBuf>>>>>,
}

impl Spool {
    pub(super) fn new(source: Arc<dyn Blobs>) -> Result<Self, Error> {
        Inner::new(source).map(|inner| Self(Arc::new(inner)))
    }
}

impl Inner {
    fn new(source: Arc<dyn Blobs>) -> Result<Self, Error> {
        let parent = super::spool_dir();
        let dir = tempfile::Builder::new()
            .prefix("ecr-push-source-")
            .tempdir_in(&parent)
            .map_err(|source| Error::Io {
                path: parent,
                source,
            })?;
        Ok(Self {
            source,
            dir,
            fetched: Mutex::new(HashMap::new()),
        })
    }

    /// The blob's file, fetched now if no reader fetched it before. Blocking.
    fn file(&self, digest: &Digest) -> io::Result<File> {
        let slot = {
            let mut fetched = self
                .fetched
                .lock()
                .map_err(|_| io::Error::other("a spool reader panicked"))?;
            Arc::clone(fetched.entry(digest.clone()).or_default())
        };
        let mut path = slot
            .lock()
            .map_err(|_| io::Error::other("a spool reader panicked"))?;
        if let Some(path) = path.as_ref() {
            return File::open(path);
        }
        let fetched = self.fetch(digest)?;
        let file = File::open(&fetched)?;
        *path = Some(fetched);
        Ok(file)
    }

    /// Copies the blob from the source into the folder, checking its digest.
    fn fetch(&self, digest: &Digest) -> io::Result<PathBuf> {
        let path = self.dir.path().join(digest.hex());
        let mut source = self
            .source
            .open(digest)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let mut file = File::create(&path)?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0; 1 << 20];
        loop {
            let n = match source.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let _ = std::fs::remove_file(&path);
                    return Err(e);
                }
            };
            hasher.update(&buffer[..n]);
            file.write_all(&buffer[..n])?;
        }
        file.flush()?;
        let actual = Digest::from_hasher(hasher);
        if actual != *digest {
            let _ = std::fs::remove_file(&path);
            return Err(io::Error::other(format!(
                "the source sent bytes of digest {actual} for blob {digest}"
            )));
        }
        Ok(path)
    }
}

impl Blobs for Spool {
    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + Send>, Error> {
        // The fetch waits until the first read, which is on a blocking thread.
        Ok(Box::new(Lazy {
            spool: Arc::clone(&self.0),
            digest: digest.clone(),
            file: None,
        }))
    }

    fn open_manifest(&self, descriptor: &Descriptor) -> Result<Box<dyn Read + Send>, Error> {
        self.0.source.open_manifest(descriptor)
    }
}

/// A read of a spooled blob that fetches it, or waits for its fetch, on the first read.
struct Lazy {
    spool: Arc<Inner>,
    digest: Digest,
    file: Option<File>,
}

impl Read for Lazy {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let file = match &mut self.file {
            Some(file) => file,
            None => self.file.insert(self.spool.file(&self.digest)?),
        };
        file.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A source that counts its opens and sends `bytes` for every digest.
    struct Counting {
        opens: AtomicUsize,
        bytes: Vec<u8>,
    }

    impl Blobs for Counting {
        fn open(&self, _: &Digest) -> Result<Box<dyn Read + Send>, Error> {
            self.opens.fetch_add(1, Ordering::SeqCst);
            Ok(Box::new(io::Cursor::new(self.bytes.clone())))
        }
    }

    #[test]
    fn readers_at_once_fetch_a_blob_once() {
        let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        let digest = Digest::of(&bytes);
        let source = Arc::new(Counting {
            opens: AtomicUsize::new(0),
            bytes: bytes.clone(),
        });
        let spool = Arc::new(Spool::new(source.clone()).unwrap());
        let readers: Vec<_> = (0..4)
            .map(|_| {
                let (spool, digest) = (Arc::clone(&spool), digest.clone());
                std::thread::spawn(move || {
                    let mut read = Vec::new();
                    spool.open(&digest).unwrap().read_to_end(&mut read).unwrap();
                    read
                })
            })
            .collect();
        for reader in readers {
            assert!(reader.join().unwrap() == bytes);
        }
        assert_eq!(source.opens.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_fetch_of_other_bytes_is_not_kept() {
        let source = Arc::new(Counting {
            opens: AtomicUsize::new(0),
            bytes: b"not the blob".to_vec(),
        });
        let spool = Spool::new(source.clone()).unwrap();
        let digest = Digest::of(b"the blob");
        for _ in 0..2 {
            let err = spool
                .open(&digest)
                .unwrap()
                .read_to_end(&mut Vec::new())
                .unwrap_err();
            assert!(
                err.to_string().contains("the source sent bytes of digest"),
                "{err}"
            );
        }
        // Nothing kept: the second read fetched again.
        assert_eq!(source.opens.load(Ordering::SeqCst), 2);
        assert_eq!(std::fs::read_dir(spool.0.dir.path()).unwrap().count(), 0);
    }
}
