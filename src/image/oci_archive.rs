//! OCI archives (`oci-archive:FILE[:REF]`): an OCI image layout inside a plain tar, as
//! `skopeo copy … oci-archive:` and `buildx --output type=oci` write it.
//!
//! The tar is indexed once (the offset and size of each regular file) and blobs are then
//! read in place with a seek, so nothing is extracted and no layer is held in memory.
//! Links and anything but regular files are ignored: a layout's files are plain files,
//! and following a link could read outside the archive.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::oci::{Files, Opened, open_layout};
use super::{Error, split_path_ref};

struct Archive {
    path: PathBuf,
    /// Path inside the archive → (offset of the file's bytes, size).
    entries: HashMap<String, (u64, u64)>,
}

impl Files for Archive {
    fn open(&self, path: &str) -> io::Result<Option<(Box<dyn Read + Send>, u64)>> {
        let Some(&(offset, size)) = self.entries.get(path) else {
            return Ok(None);
        };
        let mut file = File::open(&self.path)?;
        file.seek(SeekFrom::Start(offset))?;
        Ok(Some((Box::new(file.take(size)), size)))
    }

    fn root(&self) -> &Path {
        &self.path
    }
}

pub(super) fn open(rest: &str) -> Result<Opened, Error> {
    let (path, reference) = split_path_ref(rest);
    let path = PathBuf::from(path);
    let entries = index(&path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => Error::Io {
            path: path.clone(),
            source,
        },
        _ => Error::Layout {
            path: path.clone(),
            reason: format!(
                "it is not an uncompressed tar ({source}); an OCI archive is a plain tar of a layout"
            ),
        },
    })?;
    open_layout(Archive { path, entries }, reference)
}

fn index(path: &Path) -> io::Result<HashMap<String, (u64, u64)>> {
    let mut archive = tar::Archive::new(File::open(path)?);
    let mut entries = HashMap::new();
    // Seeking past file data instead of reading it: the index costs one pass over the
    // headers, not over the layers.
    for entry in archive.entries_with_seek()? {
        let entry = entry?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry.path()?.to_string_lossy().into_owned();
        let name = name.trim_start_matches("./").to_owned();
        entries.insert(name, (entry.raw_file_position(), entry.size()));
    }
    Ok(entries)
}
