//! A tar read in place: indexed once (where each file's bytes start, and how long they
//! are), then each file read with a seek. Nothing is extracted and nothing touches the
//! file system but the tar itself, so a hostile name cannot write anywhere; names and
//! links that would lead out of the archive are refused all the same, because no image
//! tool writes them.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::Error;
use super::oci::Files;

/// Links resolved one after the other before a name is given up on (a loop, or abuse).
const MAX_LINK_HOPS: usize = 16;

enum Entry {
    File {
        offset: u64,
        size: u64,
    },
    /// A symbolic or hard link, its target already resolved to a path in the archive.
    Link(String),
}

pub(super) struct Tarball {
    path: PathBuf,
    /// What messages call it: the path, or what a spooled tar came from.
    shown: PathBuf,
    entries: HashMap<String, Entry>,
    /// A tar spooled to a temporary file, removed when the image is done with.
    _spool: Option<tempfile::TempPath>,
}

/// Why a tar cannot be used.
enum IndexError {
    Io(io::Error),
    /// An entry that leads out of the archive: its name and what is wrong.
    Escapes(String, &'static str),
    /// An entry whose data ends past the end of the file.
    Truncated(String),
}

impl From<io::Error> for IndexError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

impl Tarball {
    /// Indexes the tar at `path`; `kind` names what it should be, for messages.
    pub(super) fn open(path: &Path, kind: &'static str) -> Result<Self, Error> {
        Self::index(path).map_err(|e| match e {
            IndexError::Io(source)
                if matches!(
                    source.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied
                ) =>
            {
                Error::Io {
                    path: path.to_owned(),
                    source,
                }
            }
            // tar's own message quotes header bytes, which say nothing to a user.
            IndexError::Io(_) => Error::Archive {
                path: path.to_owned(),
                kind,
                reason: match compression(path) {
                    Some(kind) => format!("it is {kind}-compressed; decompress it first"),
                    None => "it is not a tar".to_owned(),
                },
            },
            IndexError::Truncated(name) => Error::Archive {
                path: path.to_owned(),
                kind,
                reason: format!(
                    "it is cut short: its entry `{name}` ends past the end of the file (an interrupted download or copy?); write it again"
                ),
            },
            IndexError::Escapes(name, why) => Error::Archive {
                path: path.to_owned(),
                kind,
                reason: format!("its entry `{name}` is refused: {why}"),
            },
        })
    }

    /// Indexes a tar spooled to a temporary file; `shown` is what messages call it.
    pub(super) fn open_spooled(
        spool: tempfile::TempPath,
        shown: PathBuf,
        kind: &'static str,
    ) -> Result<Self, Error> {
        let mut tarball = Self::open(&spool, kind).map_err(|e| match e {
            Error::Archive { kind, reason, .. } => Error::Archive {
                path: shown.clone(),
                kind,
                reason,
            },
            other => other,
        })?;
        tarball.shown = shown;
        tarball._spool = Some(spool);
        Ok(tarball)
    }

    fn index(path: &Path) -> Result<Self, IndexError> {
        let file = File::open(path)?;
        let length = file.metadata()?.len();
        let mut archive = tar::Archive::new(file);
        let mut entries = HashMap::new();
        // Seeking past file data instead of reading it: the index costs one pass over the
        // headers, not over the layers.
        for entry in archive.entries_with_seek()? {
            let entry = entry?;
            let raw = entry.path()?.to_string_lossy().into_owned();
            let kind = entry.header().entry_type();
            if kind.is_dir() {
                continue;
            }
            let name = normalize("", &raw)
                .ok_or_else(|| IndexError::Escapes(raw.clone(), "its name leaves the archive"))?;
            let value = if kind.is_file() {
                Entry::File {
                    offset: entry.raw_file_position(),
                    size: entry.size(),
                }
            } else if kind.is_symlink() || kind.is_hard_link() {
                let target = entry
                    .link_name()?
                    .map(|t| t.to_string_lossy().into_owned())
                    .unwrap_or_default();
                // A symlink is relative to its own folder; a hard link names a path from
                // the archive's root.
                let base = match (kind.is_symlink(), name.rsplit_once('/')) {
                    (true, Some((dir, _))) => dir,
                    _ => "",
                };
                let resolved = normalize(base, &target).ok_or_else(|| {
                    IndexError::Escapes(raw.clone(), "it links out of the archive")
                })?;
                Entry::Link(resolved)
            } else {
                continue;
            };
            entries.insert(name, value);
        }
        // Seeking past the end of a file succeeds, and the next header read then looks
        // like the end of the archive: an entry that ends past the file is how a tar cut
        // short shows.
        if let Some((name, _)) = entries
            .iter()
            .find(|(_, e)| matches!(e, Entry::File { offset, size } if offset + size > length))
        {
            return Err(IndexError::Truncated(name.clone()));
        }
        Ok(Self {
            path: path.to_owned(),
            shown: path.to_owned(),
            entries,
            _spool: None,
        })
    }

    pub(super) fn contains(&self, name: &str) -> bool {
        self.resolve(name).is_some()
    }

    /// The file's offset and size, following links inside the archive.
    fn resolve(&self, name: &str) -> Option<(u64, u64)> {
        let mut name = normalize("", name)?;
        for _ in 0..MAX_LINK_HOPS {
            match self.entries.get(&name)? {
                Entry::File { offset, size } => return Some((*offset, *size)),
                Entry::Link(target) => name = target.clone(),
            }
        }
        None
    }
}

impl Files for Tarball {
    fn open(&self, path: &str) -> io::Result<Option<(Box<dyn Read + Send>, u64)>> {
        let Some((offset, size)) = self.resolve(path) else {
            return Ok(None);
        };
        let mut file = File::open(&self.path)?;
        file.seek(SeekFrom::Start(offset))?;
        Ok(Some((Box::new(file.take(size)), size)))
    }

    fn root(&self) -> &Path {
        &self.shown
    }
}

/// The compression a file starts with, by its magic bytes.
fn compression(path: &Path) -> Option<&'static str> {
    let mut magic = [0u8; 4];
    File::open(path).ok()?.read_exact(&mut magic).ok()?;
    match magic {
        [0x1f, 0x8b, ..] => Some("gzip"),
        [0x28, 0xb5, 0x2f, 0xfd] => Some("zstd"),
        [b'B', b'Z', b'h', _] => Some("bzip2"),
        [0xfd, b'7', b'z', b'X'] => Some("xz"),
        _ => None,
    }
}

/// `name` taken relative to the folder `base`, as a clean relative path (`a/b`), or
/// `None` when it is absolute or climbs above the archive's root.
fn normalize(base: &str, name: &str) -> Option<String> {
    if name.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = base.split('/').filter(|p| !p.is_empty()).collect();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            part => parts.push(part),
        }
    }
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn names_stay_inside_the_archive() {
        assert_eq!(
            normalize("", "./blobs/sha256/ab").as_deref(),
            Some("blobs/sha256/ab")
        );
        assert_eq!(
            normalize("a1", "../b2/layer.tar").as_deref(),
            Some("b2/layer.tar")
        );
        assert_eq!(normalize("", "a//b/./c").as_deref(), Some("a/b/c"));
        assert_eq!(normalize("", "../etc/passwd"), None);
        assert_eq!(normalize("a", "../../x"), None);
        assert_eq!(normalize("", "/etc/passwd"), None);
    }
}
