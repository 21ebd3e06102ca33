//! The image model: what a push needs from a source, whatever the source is.
//!
//! An image is its manifest's exact bytes (the digest is over those bytes, so they are
//! never re-serialised), the descriptors of its config and layers, and a way to open each
//! blob. Every source format is one adapter in this folder that builds an [`Image`]; the
//! destination side sees only this model. Blob bytes are read through [`BlobReader`],
//! which checks size and digest as it reads, so a corrupt blob stops the push before any
//! manifest is written.

mod oci;
mod oci_archive;

use std::collections::HashSet;
use std::fmt;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::Arc;

use sha2::{Digest as _, Sha256};

/// ECR's PutImage refuses manifests over 4 MiB; so does the OCI distribution spec's
/// recommended limit, so nothing larger is worth reading into memory.
pub const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;

const INDEX_MEDIA_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "image: `{0}` is not a supported image reference; use oci:DIR[:REF] or oci-archive:FILE[:REF]"
    )]
    Reference(String),
    #[error(
        "image: the {transport}: transport is not supported yet; export the image as an OCI layout (oci:DIR) or OCI archive (oci-archive:FILE)"
    )]
    UnsupportedTransport { transport: String },
    #[error("image: {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("image: {path} is not an OCI image layout: {reason}")]
    Layout { path: PathBuf, reason: String },
    #[error("image: {path}: {what} is not valid JSON: {source}")]
    Json {
        path: PathBuf,
        what: String,
        source: serde_json::Error,
    },
    #[error("image: `{0}` is not a sha256 digest (sha256: followed by 64 lowercase hex digits)")]
    Digest(String),
    #[error("image: blob {digest} is missing from {path}")]
    MissingBlob { path: PathBuf, digest: Digest },
    #[error("image: manifest {digest} is {size} bytes; ECR accepts at most {MAX_MANIFEST_BYTES}")]
    ManifestTooLarge { digest: Digest, size: u64 },
    #[error(
        "image: {digest} is an image index (multi-platform); pushing indexes is not supported yet, build a single-platform image (buildx: --platform ONE --provenance=false)"
    )]
    Index { digest: Digest },
    #[error(
        "image: manifest {digest} declares media type {in_manifest} but its descriptor says {in_descriptor}"
    )]
    MediaTypeConflict {
        digest: Digest,
        in_manifest: String,
        in_descriptor: String,
    },
    #[error("image: manifest {digest} has no media type, neither in itself nor in its descriptor")]
    NoMediaType { digest: Digest },
    #[error("image: blob {digest} is corrupt: {reason}; nothing was tagged")]
    Corrupt { digest: Digest, reason: String },
    #[error("image: reading blob {digest}: {source}")]
    Read { digest: Digest, source: io::Error },
}

/// A sha256 content digest, `sha256:` and 64 lowercase hex digits: the only algorithm
/// ECR stores, so the only one accepted.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    pub fn parse(text: &str) -> Result<Self, Error> {
        let valid = text.strip_prefix("sha256:").is_some_and(|hex| {
            hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        });
        if valid {
            Ok(Self(text.to_owned()))
        } else {
            Err(Error::Digest(text.to_owned()))
        }
    }

    pub fn of(bytes: &[u8]) -> Self {
        Self::from_hasher(Sha256::new_with_prefix(bytes))
    }

    fn from_hasher(hasher: Sha256) -> Self {
        let hex: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Self(format!("sha256:{hex}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The short form used in log lines: algorithm and the first 12 hex digits.
    pub fn short(&self) -> &str {
        &self.0[..19]
    }

    fn hex(&self) -> &str {
        &self.0[7..]
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a manifest says of one blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
}

impl Descriptor {
    fn from_spec(spec: &oci_spec::image::Descriptor) -> Result<Self, Error> {
        Ok(Self {
            media_type: spec.media_type().to_string(),
            digest: Digest::parse(spec.digest().as_ref())?,
            size: spec.size(),
        })
    }
}

/// A manifest exactly as the source holds it.
#[derive(Clone, Debug)]
pub struct Manifest {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub digest: Digest,
}

/// Where blob bytes come from; each source format implements it.
pub trait Blobs: Send + Sync {
    /// Opens the blob's bytes, unverified: callers read it through [`BlobReader`].
    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + Send>, Error>;
}

/// An image ready to push: a single-platform manifest, its blobs, and the tag its
/// reference named, if any.
pub struct Image {
    pub manifest: Manifest,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    pub tag: Option<String>,
    blobs: Arc<dyn Blobs>,
}

impl Image {
    /// Opens an image from a reference in skopeo's transport syntax. Local sources only
    /// touch the file system, so a bad image fails before any network call.
    pub fn open(reference: &str) -> Result<Self, Error> {
        let (transport, rest) = reference
            .split_once(':')
            .ok_or_else(|| Error::Reference(reference.to_owned()))?;
        match transport {
            "oci" => oci::open_dir(rest),
            "oci-archive" => oci_archive::open(rest),
            "docker" | "docker-daemon" | "docker-archive" | "containers-storage" | "dir" => {
                Err(Error::UnsupportedTransport {
                    transport: transport.to_owned(),
                })
            }
            _ => Err(Error::Reference(reference.to_owned())),
        }
    }

    /// Config first, then layers, each digest once: a blob listed twice is pushed once.
    pub fn blobs(&self) -> Vec<&Descriptor> {
        let mut seen = HashSet::new();
        std::iter::once(&self.config)
            .chain(&self.layers)
            .filter(|d| seen.insert(&d.digest))
            .collect()
    }

    pub fn read_blob(&self, descriptor: &Descriptor) -> Result<BlobReader, Error> {
        Ok(BlobReader {
            inner: self.blobs.open(&descriptor.digest)?,
            descriptor: descriptor.clone(),
            hasher: Sha256::new(),
            read: 0,
        })
    }
}

/// Splits `PATH[:REF]` the way skopeo does for oci: and oci-archive: (first colon).
fn split_path_ref(rest: &str) -> (&str, Option<&str>) {
    match rest.split_once(':') {
        Some((path, reference)) if !reference.is_empty() => (path, Some(reference)),
        Some((path, _)) => (path, None),
        None => (rest, None),
    }
}

/// Builds an [`Image`] from a manifest's bytes and the descriptor that pointed at it,
/// checking the bytes against the descriptor first.
fn image_from_manifest(
    bytes: Vec<u8>,
    descriptor: &oci_spec::image::Descriptor,
    tag: Option<String>,
    blobs: Arc<dyn Blobs>,
    path: &std::path::Path,
) -> Result<Image, Error> {
    let expected = Descriptor::from_spec(descriptor)?;
    verify_whole(&bytes, &expected)?;
    #[derive(serde::Deserialize)]
    struct MediaTypeOnly {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
    }
    let json_err = |source| Error::Json {
        path: path.to_owned(),
        what: format!("manifest {}", expected.digest),
        source,
    };
    let declared = serde_json::from_slice::<MediaTypeOnly>(&bytes)
        .map_err(json_err)?
        .media_type;
    // umoci and some exporters leave `mediaType` out of the manifest; the index
    // descriptor then carries it, and PutImage needs it as a parameter.
    let media_type = match declared {
        Some(in_manifest)
            if !expected.media_type.is_empty() && in_manifest != expected.media_type =>
        {
            return Err(Error::MediaTypeConflict {
                digest: expected.digest,
                in_manifest,
                in_descriptor: expected.media_type,
            });
        }
        Some(in_manifest) => in_manifest,
        None if !expected.media_type.is_empty() => expected.media_type.clone(),
        None => {
            return Err(Error::NoMediaType {
                digest: expected.digest,
            });
        }
    };
    if INDEX_MEDIA_TYPES.contains(&media_type.as_str()) {
        return Err(Error::Index {
            digest: expected.digest,
        });
    }
    let parsed: oci_spec::image::ImageManifest =
        serde_json::from_slice(&bytes).map_err(json_err)?;
    let layers = parsed
        .layers()
        .iter()
        .map(Descriptor::from_spec)
        .collect::<Result<_, _>>()?;
    Ok(Image {
        config: Descriptor::from_spec(parsed.config())?,
        layers,
        manifest: Manifest {
            bytes,
            media_type,
            digest: expected.digest,
        },
        tag,
        blobs,
    })
}

/// Checks bytes already in memory (a manifest) against their descriptor.
fn verify_whole(bytes: &[u8], expected: &Descriptor) -> Result<(), Error> {
    let actual = Digest::of(bytes);
    if bytes.len() as u64 != expected.size {
        return Err(Error::Corrupt {
            digest: expected.digest.clone(),
            reason: format!(
                "{} bytes where the descriptor says {}",
                bytes.len(),
                expected.size
            ),
        });
    }
    if actual != expected.digest {
        return Err(Error::Corrupt {
            digest: expected.digest.clone(),
            reason: format!("its bytes hash to {actual}"),
        });
    }
    Ok(())
}

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
    pub fn descriptor(&self) -> &Descriptor {
        &self.descriptor
    }

    pub fn remaining(&self) -> u64 {
        self.descriptor.size - self.read
    }

    /// Reads the next part of at most `max` bytes. Blocking: call it off the reactor.
    pub fn read_part(&mut self, max: usize) -> Result<Vec<u8>, Error> {
        let want = self.remaining().min(max as u64) as usize;
        let mut part = vec![0; want];
        let mut filled = 0;
        while filled < want {
            match self.inner.read(&mut part[filled..]) {
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
        self.hasher.update(&part);
        self.read += want as u64;
        if self.remaining() == 0 {
            self.finish()?;
        }
        Ok(part)
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
        BlobReader {
            inner: Box::new(bytes),
            descriptor,
            hasher: Sha256::new(),
            read: 0,
        }
    }

    fn descriptor_of(bytes: &[u8]) -> Descriptor {
        Descriptor {
            media_type: "application/octet-stream".into(),
            digest: Digest::of(bytes),
            size: bytes.len() as u64,
        }
    }

    #[test]
    fn digest_accepts_only_lowercase_sha256() {
        let good = format!("sha256:{}", "a".repeat(64));
        assert_eq!(Digest::parse(&good).unwrap().as_str(), good);
        for bad in [
            format!("sha256:{}", "A".repeat(64)),
            format!("sha256:{}", "a".repeat(63)),
            format!("sha512:{}", "a".repeat(128)),
            "a".repeat(64),
        ] {
            assert!(Digest::parse(&bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn digest_of_empty_is_the_well_known_one() {
        assert_eq!(
            Digest::of(b"").as_str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
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

    #[test]
    fn split_path_ref_uses_the_first_colon() {
        assert_eq!(split_path_ref("dir"), ("dir", None));
        assert_eq!(split_path_ref("dir:v1"), ("dir", Some("v1")));
        assert_eq!(split_path_ref("dir:"), ("dir", None));
        assert_eq!(split_path_ref("dir:a:b"), ("dir", Some("a:b")));
    }
}
