//! [`BlobReader`]: every blob and manifest byte is read through it, checked for size
//! and digest as it goes, so a corrupt blob stops the push before any manifest is
//! written.

use std::io::{self, Read};

use sha2::{Digest as _, Sha256};

use super::{Descriptor, Digest, Error};

/// Reads a blob part by part, hashing as it goes; the part that ends the blob is only
/// returned once the size and digest are proven, so a destination never completes an
/// upload of bytes that are not the blob.
pub struct BlobReader {
    inner: Box<dyn Read + Send>,
    descriptor: Descriptor,
    hasher: Sha256,
    read: u64,
}

impl BlobReader {
    pub(crate) fn new(inner: Box<dyn Read + Send>, descriptor: Descriptor) -> Self {
        Self {
            inner,
            descriptor,
            hasher: Sha256::new(),
            read: 0,
        }
    }

    pub fn descriptor(&self) -> &Descriptor {
        &self.descriptor
    }

    pub fn remaining(&self) -> u64 {
        self.descriptor.size - self.read
    }

    /// Reads the next part of at most `max` bytes. Blocking: call it off the reactor.
    pub fn read_part(&mut self, max: usize) -> Result<Vec<u8>, Error> {
        let mut part = Vec::new();
        self.read_part_into(&mut part, max)?;
        Ok(part)
    }

    /// [`Self::read_part`] into `part`, whose buffer is reused (its bytes replaced).
    pub fn read_part_into(&mut self, part: &mut Vec<u8>, max: usize) -> Result<(), Error> {
        part.resize(self.remaining().min(max as u64) as usize, 0);
        self.fill(part)?;
        self.consume(part)
    }

    /// Reads the next part of at most `max` bytes through `piece`, handing `sink` each
    /// piece once hashed (while it is still in the CPU's cache), and returns the part's
    /// length. Every piece but the part's last fills `piece`, so a sink that encodes in
    /// blocks (base64's 3 bytes) sees whole blocks. What the sink made is to be used only
    /// if this returns `Ok`. Blocking: call it off the reactor.
    pub fn read_part_through(
        &mut self,
        max: usize,
        piece: &mut [u8],
        mut sink: impl FnMut(&[u8]),
    ) -> Result<usize, Error> {
        let want = self.remaining().min(max as u64) as usize;
        let mut done = 0;
        while done < want {
            let len = (want - done).min(piece.len());
            let piece = &mut piece[..len];
            self.fill(piece)?;
            self.consume(piece)?;
            sink(piece);
            done += piece.len();
        }
        Ok(want)
    }

    /// Fills `buf` from the blob, which must hold that many more bytes.
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), Error> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.inner.read(&mut buf[filled..]) {
                Ok(0) => {
                    return Err(self.corrupt(format!(
                        "it ends after {} bytes where the descriptor says {}",
                        self.read + filled as u64,
                        self.descriptor.size
                    )));
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(Error::Read {
                        digest: self.descriptor.digest.clone(),
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    /// Hashes and counts bytes just filled; at the blob's end, proves size and digest.
    fn consume(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.hasher.update(bytes);
        self.read += bytes.len() as u64;
        if self.remaining() == 0 {
            self.finish()?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), Error> {
        let mut extra = [0u8; 1];
        let more = loop {
            match self.inner.read(&mut extra) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => break other,
            }
        };
        match more {
            Ok(0) => {}
            Ok(_) => {
                return Err(self.corrupt(format!(
                    "it is longer than the {} bytes its descriptor says",
                    self.descriptor.size
                )));
            }
            Err(source) => {
                return Err(Error::Read {
                    digest: self.descriptor.digest.clone(),
                    source,
                });
            }
        }
        let actual = Digest::from_hasher(std::mem::take(&mut self.hasher));
        if actual != self.descriptor.digest {
            return Err(self.corrupt(format!("its bytes hash to {actual}")));
        }
        Ok(())
    }

    fn corrupt(&self, reason: String) -> Error {
        Error::Corrupt {
            digest: self.descriptor.digest.clone(),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(bytes: &'static [u8], descriptor: Descriptor) -> BlobReader {
        BlobReader::new(Box::new(bytes), descriptor)
    }
    fn descriptor_of(bytes: &[u8]) -> Descriptor {
        Descriptor {
            media_type: "application/octet-stream".into(),
            digest: Digest::of(bytes),
            size: bytes.len() as u64,
        }
    }

    #[test]
    fn reader_returns_parts_and_verifies_the_last() {
        let bytes: &'static [u8] = b"hello, world";
        let mut r = reader(bytes, descriptor_of(bytes));
        assert_eq!(r.read_part(5).unwrap(), b"hello");
        assert_eq!(r.read_part(5).unwrap(), b", wor");
        assert_eq!(r.read_part(5).unwrap(), b"ld");
        assert_eq!(r.remaining(), 0);
    }
    #[test]
    fn reader_hands_full_pieces_but_the_last() {
        let bytes: &'static [u8] = b"hello, world";
        let mut r = reader(bytes, descriptor_of(bytes));
        let mut pieces = Vec::new();
        let mut piece = [0; 3];
        let n = r
            .read_part_through(8, &mut piece, |p| pieces.push(p.to_vec()))
            .unwrap();
        assert_eq!((n, pieces.concat()), (8, b"hello, w".to_vec()));
        assert_eq!(pieces.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 2]);
        pieces.clear();
        assert_eq!(
            r.read_part_through(8, &mut piece, |p| pieces.push(p.to_vec()))
                .unwrap(),
            4
        );
        assert_eq!(pieces.concat(), b"orld");
        assert_eq!(r.remaining(), 0);
    }
    #[test]
    fn reader_rejects_wrong_bytes_on_the_last_part() {
        let mut d = descriptor_of(b"hello");
        d.digest = Digest::of(b"HELLO");
        let mut r = reader(b"hello", d);
        let err = r.read_part(10).unwrap_err().to_string();
        assert!(err.contains("corrupt") && err.contains("hash to"), "{err}");
    }
    #[test]
    fn reader_rejects_short_and_long_blobs() {
        let mut d = descriptor_of(b"hello");
        d.size = 6;
        let err = reader(b"hello", d).read_part(10).unwrap_err().to_string();
        assert!(err.contains("ends after 5 bytes"), "{err}");
        let mut d = descriptor_of(b"hell");
        d.size = 4;
        let err = reader(b"hello", d).read_part(10).unwrap_err().to_string();
        assert!(err.contains("longer than the 4 bytes"), "{err}");
    }
}
