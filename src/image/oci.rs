//! OCI image layouts: a directory (`oci:DIR[:REF]`), and the shared logic that reads any
//! layout, whatever holds its files (a directory here, a tar in `oci_archive`).
//!
//! REF selects a manifest by its `org.opencontainers.image.ref.name` annotation, as skopeo
//! does; without REF the layout must hold exactly one manifest.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::referrers::{cosign_subject, subject_of};
use super::{Blobs, Descriptor, Digest, Error, Found, MANIFEST_MEDIA_TYPES, MAX_MANIFEST_BYTES};

/// What a layout adapter hands to [`super::load`]: the blob store, the descriptor of
/// the manifest to push, and the tag its reference named.
pub(super) type Opened = (Arc<dyn Blobs>, Descriptor, Option<String>);

const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// `index.json` and `oci-layout` are small; anything near this is not a layout.
const MAX_INDEX_BYTES: u64 = 4 * 1024 * 1024;

/// The files of a layout, by their path inside it (`index.json`, `blobs/sha256/…`).
pub(super) trait Files: Send + Sync + 'static {
    /// The file and its size, or `None` when the layout has no such file.
    fn open(&self, path: &str) -> io::Result<Option<(Box<dyn Read + Send>, u64)>>;
    /// What the user named, for messages.
    fn root(&self) -> &Path;
}

/// A layout's files, and the entries of its `index.json` that refer to another
/// manifest: by their `subject`, or by a tag of cosign's scheme as their name.
struct Layout<F> {
    files: F,
    referrers: Vec<(Digest, Found)>,
}

impl<F: Files> Blobs for Layout<F> {
    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + Send>, Error> {
        let path = format!("blobs/sha256/{}", digest.hex());
        match self.files.open(&path) {
            Ok(Some((reader, _))) => Ok(reader),
            Ok(None) => Err(Error::MissingBlob {
                path: self.files.root().to_owned(),
                digest: digest.clone(),
            }),
            Err(source) => Err(Error::Io {
                path: self.files.root().join(path),
                source,
            }),
        }
    }

    fn referrers(&self, subject: &Descriptor) -> Result<Vec<Found>, Error> {
        Ok(self
            .referrers
            .iter()
            .filter(|(of, _)| *of == subject.digest)
            .map(|(_, found)| found.clone())
            .collect())
    }
}

/// The entries of `index.json` that refer to another manifest, and which: an entry
/// named by a tag of cosign's scheme, or one whose manifest has a `subject` (each
/// manifest read, as small as a manifest must be; one not there is not a referrer).
fn referrers_in<F: Files>(
    files: &F,
    entries: &[oci_spec::image::Descriptor],
) -> Result<Vec<(Digest, Found)>, Error> {
    let mut found = Vec::new();
    for entry in entries {
        let descriptor = Descriptor::from_spec(entry)?;
        let tag = name_of(entry).filter(|name| cosign_subject(name).is_some());
        let subject = match &tag {
            Some(name) => cosign_subject(name),
            None if MANIFEST_MEDIA_TYPES.contains(&descriptor.media_type.as_str()) => {
                let path = format!("blobs/sha256/{}", descriptor.digest.hex());
                read_small(files, &path, MAX_MANIFEST_BYTES)?.and_then(|bytes| subject_of(&bytes))
            }
            None => None,
        };
        if let Some(subject) = subject {
            found.push((subject, Found { descriptor, tag }));
        }
    }
    Ok(found)
}

fn name_of(d: &oci_spec::image::Descriptor) -> Option<String> {
    d.annotations()
        .as_ref()
        .and_then(|a| a.get(REF_NAME))
        .cloned()
}

struct Dir(PathBuf);

impl Files for Dir {
    fn open(&self, path: &str) -> io::Result<Option<(Box<dyn Read + Send>, u64)>> {
        match File::open(self.0.join(path)) {
            Ok(file) => {
                let size = file.metadata()?.len();
                Ok(Some((Box::new(file), size)))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn root(&self) -> &Path {
        &self.0
    }
}

pub(super) fn open_dir(path: &Path, reference: Option<&str>) -> Result<Opened, Error> {
    let root = path.to_owned();
    if !root.is_dir() {
        return Err(Error::Layout {
            path: root,
            reason: "no such directory".into(),
        });
    }
    open_layout(Dir(root), reference)
}

pub(super) fn open_layout<F: Files>(files: F, reference: Option<&str>) -> Result<Opened, Error> {
    let root = files.root().to_owned();
    let layout_err = |reason: String| Error::Layout {
        path: root.clone(),
        reason,
    };
    read_small(&files, "oci-layout", MAX_INDEX_BYTES)?
        .ok_or_else(|| layout_err("it has no oci-layout file".into()))?;
    let index_bytes = read_small(&files, "index.json", MAX_INDEX_BYTES)?
        .ok_or_else(|| layout_err("it has no index.json".into()))?;
    let index: oci_spec::image::ImageIndex =
        serde_json::from_slice(&index_bytes).map_err(|source| Error::Json {
            path: root.clone(),
            what: "index.json".into(),
            source,
        })?;

    // One entry is the image; with more, those that refer to another are not
    // candidates for it (a layout of an image and its signature holds one image).
    let referrers = match index.manifests().len() {
        0 | 1 => Vec::new(),
        _ => referrers_in(&files, index.manifests())?,
    };
    let candidates: Vec<_> = index
        .manifests()
        .iter()
        .filter(|d| match reference {
            Some(reference) => name_of(d).as_deref() == Some(reference),
            None => !referrers
                .iter()
                .any(|(_, f)| f.descriptor.digest.as_str() == d.digest().as_ref()),
        })
        .collect();
    let descriptor = match (candidates.as_slice(), reference) {
        ([one], _) => *one,
        (many, reference) => {
            let names: Vec<String> = index.manifests().iter().filter_map(name_of).collect();
            let names = if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            };
            let reason = match reference {
                Some(r) if many.is_empty() => {
                    format!("no manifest is named `{r}` (names: {names})")
                }
                Some(r) => format!("{} manifests are named `{r}`", many.len()),
                None if many.is_empty() => "its index.json lists no manifest".to_owned(),
                None => format!(
                    "it holds {} manifests; name one as {}:REF (names: {names})",
                    many.len(),
                    root.display()
                ),
            };
            return Err(layout_err(reason));
        }
    };

    let top = Descriptor::from_spec(descriptor)?;
    let tag = reference.map(str::to_owned);
    Ok((Arc::new(Layout { files, referrers }), top, tag))
}

/// The blob store of a layout, whatever holds its files.
pub(super) fn store<F: Files>(files: F) -> Arc<dyn Blobs> {
    Arc::new(Layout {
        files,
        referrers: Vec::new(),
    })
}

/// Reads a whole file that must stay small; `None` when it does not exist.
pub(super) fn read_small<F: Files>(
    files: &F,
    path: &str,
    limit: u64,
) -> Result<Option<Vec<u8>>, Error> {
    let io_err = |source| Error::Io {
        path: files.root().join(path),
        source,
    };
    let Some((reader, size)) = files.open(path).map_err(io_err)? else {
        return Ok(None);
    };
    if size > limit {
        return Err(Error::TooLarge {
            path: files.root().join(path),
            size,
            limit,
        });
    }
    let mut bytes = Vec::with_capacity(size as usize);
    reader
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err)?;
    Ok(Some(bytes))
}
