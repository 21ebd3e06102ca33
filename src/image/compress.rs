//! `compression: gzip | zstd`: uncompressed layers are compressed before the push, on a
//! pool of worker threads, each into a temporary file while it is hashed. The compressed
//! digest has to be known before the upload (to skip a layer the repository already
//! has, and to write the manifest), so a layer is compressed once, up front, and then
//! uploaded like any other blob.
//!
//! The output depends only on the input bytes, the algorithm and the level (no file
//! name, no time in the gzip header), so a re-run gives the same digests and a re-push
//! uploads nothing. Manifests that list a compressed layer are rewritten, and the
//! indexes above them; attestation entries follow the image they describe, as do the
//! attestations this push turned into referrers. Layers that are already compressed,
//! and blobs that are not layers (configs, in-toto statements), are left as they are.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use sha2::{Digest as _, Sha256};

use super::{BlobReader, Blobs, Descriptor, Digest, Error, Image, Manifest, REFERENCE_DIGEST};

const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const DOCKER_LAYER_PLAIN: &str = "application/vnd.docker.image.rootfs.diff.tar";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// How layers travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// As they are in the source.
    Keep,
    Gzip {
        level: u32,
    },
    Zstd {
        level: i32,
    },
}

impl Compression {
    fn name(self) -> &'static str {
        match self {
            Self::Keep => "keep",
            Self::Gzip { .. } => "gzip",
            Self::Zstd { .. } => "zstd",
        }
    }

    fn oci_media_type(self) -> &'static str {
        match self {
            Self::Zstd { .. } => "application/vnd.oci.image.layer.v1.tar+zstd",
            _ => "application/vnd.oci.image.layer.v1.tar+gzip",
        }
    }
}

/// A layer after compression: where its bytes are, and what describes them.
struct Compressed {
    path: PathBuf,
    descriptor: Descriptor,
}

/// Compresses the image's uncompressed layers and rewrites the manifests that list
/// them. `threads` layers are compressed at once. Blocking.
pub(super) fn compress(
    image: Image,
    compression: Compression,
    threads: usize,
) -> Result<Image, Error> {
    if compression == Compression::Keep {
        return Ok(image);
    }
    let manifests: Vec<&Manifest> = image.children.iter().chain([&image.manifest]).collect();
    let layers = layers_to_compress(&image, &manifests, compression)?;

    let spool_dir = super::spool_dir();
    let spool = tempfile::tempdir_in(&spool_dir).map_err(|source| Error::Io {
        path: spool_dir,
        source,
    })?;
    let started = std::time::Instant::now();
    let done = compress_in_parallel(&image, layers, compression, threads, &spool)?;
    if done.is_empty() {
        return Ok(image);
    }
    log_compressed(&image, &done, compression, started);

    let (manifests, renamed) = rewrite_manifests(manifests, &done)?;
    let mut image = image;
    image.referrers = follow_rewritten(std::mem::take(&mut image.referrers), &renamed)?;
    with_compressed_layers(image, manifests, done, spool)
}

/// The referrers this push made (BuildKit's attestations given a `subject`,
/// `attestations: referrers`) pointed at their platform manifest's new digest, as the
/// index's attestation entries follow theirs: they were made for this push, from
/// entries that describe the platform image, not its layers' encoding. A source's own
/// referrers are left as they are: a signature over the old digest does not hold for
/// the new one, and `without_orphaned_referrers` leaves them out.
fn follow_rewritten(
    referrers: Vec<super::Referrer>,
    renamed: &HashMap<String, Descriptor>,
) -> Result<Vec<super::Referrer>, Error> {
    referrers
        .into_iter()
        .map(|mut referrer| {
            let subject = renamed.get(referrer.subject.digest.as_str());
            if let (Some(_), Some(subject)) = (&referrer.rewritten_from, subject)
                && let Some(manifest) = rewrite_manifest(&referrer.manifest, renamed)?
            {
                referrer.manifest = manifest;
                referrer.subject = subject.clone();
            }
            Ok(referrer)
        })
        .collect()
}

/// The layers the manifests list whose media type lets them be uncompressed (their
/// first bytes decide, in `compress_one`), each once, as the image's blobs describe
/// them. Refuses zstd for a layer whose manifest has no zstd layer type.
fn layers_to_compress(
    image: &Image,
    manifests: &[&Manifest],
    compression: Compression,
) -> Result<Vec<Descriptor>, Error> {
    let mut layers: Vec<Descriptor> = Vec::new();
    for manifest in manifests {
        if super::is_index(&manifest.media_type) {
            continue;
        }
        let value = json(manifest)?;
        for layer in value["layers"].as_array().into_iter().flatten() {
            let media_type = layer["mediaType"].as_str().unwrap_or_default();
            if ![OCI_LAYER, DOCKER_LAYER, DOCKER_LAYER_PLAIN].contains(&media_type) {
                continue;
            }
            // Docker's layer types have no zstd form, in a schema 2 manifest or not.
            if matches!(compression, Compression::Zstd { .. }) && media_type != OCI_LAYER {
                return Err(no_zstd_form(manifest, media_type));
            }
            if let Some(d) = image
                .blobs
                .iter()
                .find(|b| Some(b.digest.as_str()) == layer["digest"].as_str())
                && !layers.contains(d)
            {
                layers.push(d.clone());
            }
        }
    }
    Ok(layers)
}

/// Why `manifest`, listing a layer of `media_type`, cannot have zstd layers.
fn no_zstd_form(manifest: &Manifest, media_type: &str) -> Error {
    Error::Compression(format!(
        "zstd layers need an OCI manifest, and {} {}; use gzip",
        manifest.digest,
        if manifest.media_type == DOCKER_MANIFEST {
            "is Docker schema 2, which has no zstd layer type".to_owned()
        } else {
            format!("lists a layer of Docker's type {media_type}")
        }
    ))
}

/// Compresses `layers` into `spool` on `threads` worker threads, largest first; after
/// the first failure no worker takes another layer, and that failure is the answer.
/// Layers that turn out to be compressed already are left out.
fn compress_in_parallel(
    image: &Image,
    mut layers: Vec<Descriptor>,
    compression: Compression,
    threads: usize,
    spool: &tempfile::TempDir,
) -> Result<HashMap<Digest, Compressed>, Error> {
    // Largest first, so the longest job starts first.
    layers.sort_by_key(|d| std::cmp::Reverse(d.size));
    let queue = Mutex::new(layers.into_iter());
    let done: Mutex<HashMap<Digest, Compressed>> = Mutex::new(HashMap::new());
    let failed: Mutex<Option<Error>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| {
                loop {
                    if failed.lock().map(|f| f.is_some()).unwrap_or(true) {
                        return;
                    }
                    let Some(layer) = queue.lock().ok().and_then(|mut q| q.next()) else {
                        return;
                    };
                    match compress_one(image, &layer, compression, spool) {
                        Ok(Some(compressed)) => {
                            if let Ok(mut done) = done.lock() {
                                done.insert(layer.digest.clone(), compressed);
                            }
                        }
                        Ok(None) => {}
                        Err(e) => {
                            if let Ok(mut failed) = failed.lock() {
                                failed.get_or_insert(e);
                            }
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = failed.into_inner().ok().flatten() {
        return Err(e);
    }
    Ok(done.into_inner().unwrap_or_default())
}

/// One line for the log: how many layers, how many bytes before and after, how long.
fn log_compressed(
    image: &Image,
    done: &HashMap<Digest, Compressed>,
    compression: Compression,
    started: std::time::Instant,
) {
    let raw: u64 = done
        .keys()
        .filter_map(|d| image.blobs.iter().find(|b| &b.digest == d))
        .map(|b| b.size)
        .sum();
    let packed: u64 = done.values().map(|c| c.descriptor.size).sum();
    tracing::info!(
        "compressed {} layers with {}: {} to {} in {:.1} s",
        done.len(),
        compression.name(),
        crate::units::human_bytes(raw),
        crate::units::human_bytes(packed),
        started.elapsed().as_secs_f64()
    );
}

/// The manifests with their entries pointed at the compressed layers, rewritten
/// bottom-up: children come before the indexes that list them, so an index sees its
/// children's new digests. With them, what each renamed blob and manifest became.
fn rewrite_manifests(
    manifests: Vec<&Manifest>,
    done: &HashMap<Digest, Compressed>,
) -> Result<(Vec<Manifest>, HashMap<String, Descriptor>), Error> {
    let mut renamed: HashMap<String, Descriptor> = done
        .iter()
        .map(|(old, c)| (old.to_string(), c.descriptor.clone()))
        .collect();
    let mut new_manifests = Vec::new();
    for manifest in manifests {
        let Some(new) = rewrite_manifest(manifest, &renamed)? else {
            new_manifests.push(manifest.clone());
            continue;
        };
        renamed.insert(
            manifest.digest.to_string(),
            Descriptor {
                media_type: new.media_type.clone(),
                digest: new.digest.clone(),
                size: new.bytes.len() as u64,
            },
        );
        new_manifests.push(new);
    }
    Ok((new_manifests, renamed))
}

/// One manifest with its layers or child manifests, and its subject, pointed at what
/// was renamed; `None` when nothing in it was.
fn rewrite_manifest(
    manifest: &Manifest,
    renamed: &HashMap<String, Descriptor>,
) -> Result<Option<Manifest>, Error> {
    let mut value = json(manifest)?;
    let key = if super::is_index(&manifest.media_type) {
        "manifests"
    } else {
        "layers"
    };
    let mut changed = false;
    let entries = value
        .get_mut(key)
        .and_then(|e| e.as_array_mut())
        .into_iter()
        .flatten()
        .filter_map(|e| e.as_object_mut());
    for entry in entries {
        changed |= rename(entry, renamed, key == "layers");
    }
    // An OCI 1.1 referrer follows the manifest it is about.
    if let Some(subject) = value.get_mut("subject").and_then(|s| s.as_object_mut()) {
        changed |= rename(subject, renamed, false);
    }
    if !changed {
        return Ok(None);
    }
    let bytes = serde_json::to_vec(&value).map_err(|source| Error::Json {
        path: PathBuf::from(manifest.digest.as_str()),
        what: "the rewritten manifest".into(),
        source,
    })?;
    Ok(Some(Manifest {
        digest: Digest::of(&bytes),
        media_type: manifest.media_type.clone(),
        bytes,
    }))
}

/// The image again, with the rewritten manifests (the top one last), the compressed
/// layers' descriptors, and a store that reads those layers from the spool.
fn with_compressed_layers(
    image: Image,
    mut manifests: Vec<Manifest>,
    done: HashMap<Digest, Compressed>,
    spool: tempfile::TempDir,
) -> Result<Image, Error> {
    let top = manifests
        .pop()
        .ok_or_else(|| Error::Compression("no manifest".into()))?;
    let blobs = image
        .blobs
        .iter()
        .map(|b| {
            done.get(&b.digest)
                .map_or_else(|| b.clone(), |c| c.descriptor.clone())
        })
        .collect();
    let files = done
        .into_values()
        .map(|c| (c.descriptor.digest, c.path))
        .collect();
    let original = image
        .original_digest
        .unwrap_or_else(|| image.manifest.digest.clone());
    Ok(Image {
        original_digest: (top.digest != original).then_some(original),
        manifest: top,
        children: manifests,
        tag: image.tag,
        referrers: image.referrers,
        attestations_taken: image.attestations_taken,
        blobs,
        store: Arc::new(Spooled {
            inner: image.store,
            files,
            _dir: spool,
        }),
    })
}

/// Points a descriptor (an object with `digest`, `size`, maybe `mediaType` and
/// annotations) at the renamed blob or manifest; whether it changed.
fn rename(
    entry: &mut serde_json::Map<String, serde_json::Value>,
    renamed: &HashMap<String, Descriptor>,
    with_media_type: bool,
) -> bool {
    let mut changed = false;
    let new = entry
        .get("digest")
        .and_then(|d| d.as_str())
        .and_then(|d| renamed.get(d));
    if let Some(new) = new {
        entry.insert("digest".into(), new.digest.as_str().into());
        entry.insert("size".into(), new.size.into());
        if with_media_type {
            entry.insert("mediaType".into(), new.media_type.clone().into());
        }
        changed = true;
    }
    let annotations = entry.get_mut("annotations").and_then(|a| a.as_object_mut());
    if let Some(annotations) = annotations {
        let new = annotations
            .get(REFERENCE_DIGEST)
            .and_then(|d| d.as_str())
            .and_then(|d| renamed.get(d));
        if let Some(new) = new.map(|n| n.digest.to_string()) {
            annotations.insert(REFERENCE_DIGEST.into(), new.into());
            changed = true;
        }
    }
    changed
}

fn json(manifest: &Manifest) -> Result<serde_json::Value, Error> {
    serde_json::from_slice(&manifest.bytes).map_err(|source| Error::Json {
        path: PathBuf::from(manifest.digest.as_str()),
        what: "the manifest".into(),
        source,
    })
}

/// Compresses one layer into the spool folder, verifying the source as it reads;
/// `None` when it is compressed already.
fn compress_one(
    image: &Image,
    layer: &Descriptor,
    compression: Compression,
    spool: &tempfile::TempDir,
) -> Result<Option<Compressed>, Error> {
    let mut reader = image.read_blob(layer)?;
    let first = reader.read_part(4.min(layer.size as usize))?;
    if first.starts_with(&[0x1f, 0x8b]) || first.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return Ok(None);
    }
    let path = spool.path().join(layer.digest.as_str().replace(':', "-"));
    let io_err = |source| Error::Io {
        path: path.clone(),
        source,
    };
    let file = File::create(&path).map_err(io_err)?;
    let mut out = HashingWriter {
        inner: BufWriter::with_capacity(1 << 20, file),
        hasher: Sha256::new(),
        written: 0,
    };
    {
        let mut encoder: Box<dyn FinishWrite + '_> = match compression {
            Compression::Gzip { level } => Box::new(
                flate2::GzBuilder::new()
                    .mtime(0)
                    .write(&mut out, flate2::Compression::new(level)),
            ),
            Compression::Zstd { level } => {
                Box::new(zstd::stream::write::Encoder::new(&mut out, level).map_err(io_err)?)
            }
            Compression::Keep => return Ok(None),
        };
        encoder.write_all(&first).map_err(io_err)?;
        copy_verified(&mut reader, &mut *encoder)?;
        encoder.finish_write().map_err(io_err)?;
    }
    out.inner.flush().map_err(io_err)?;
    Ok(Some(Compressed {
        descriptor: Descriptor {
            media_type: match layer.media_type.as_str() {
                OCI_LAYER => compression.oci_media_type().to_owned(),
                _ => DOCKER_LAYER.to_owned(),
            },
            digest: Digest::from_hasher(out.hasher),
            size: out.written,
        },
        path,
    }))
}

/// Feeds the rest of a verified blob into `out`, a MiB at a time.
fn copy_verified(reader: &mut BlobReader, out: &mut dyn Write) -> Result<(), Error> {
    while reader.remaining() > 0 {
        let part = reader.read_part(1 << 20)?;
        out.write_all(&part).map_err(|source| Error::Read {
            digest: reader.descriptor().digest.clone(),
            source,
        })?;
    }
    Ok(())
}

/// An encoder that has to be told the stream is over.
trait FinishWrite: Write {
    fn finish_write(self: Box<Self>) -> io::Result<()>;
}

impl<W: Write> FinishWrite for flate2::write::GzEncoder<W> {
    fn finish_write(self: Box<Self>) -> io::Result<()> {
        self.finish().map(drop)
    }
}

impl<W: Write> FinishWrite for zstd::stream::write::Encoder<'_, W> {
    fn finish_write(self: Box<Self>) -> io::Result<()> {
        self.finish().map(drop)
    }
}

struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The source's blobs, with the compressed layers in front.
struct Spooled {
    inner: Arc<dyn Blobs>,
    files: HashMap<Digest, PathBuf>,
    _dir: tempfile::TempDir,
}

impl Blobs for Spooled {
    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + Send>, Error> {
        match self.files.get(digest) {
            Some(path) => File::open(path)
                .map(|f| Box::new(f) as Box<dyn Read + Send>)
                .map_err(|source| Error::Io {
                    path: path.clone(),
                    source,
                }),
            None => self.inner.open(digest),
        }
    }

    fn open_manifest(&self, descriptor: &Descriptor) -> Result<Box<dyn Read + Send>, Error> {
        self.inner.open_manifest(descriptor)
    }
}
