//! OCI archives (`oci-archive:FILE[:REF]`): an OCI image layout inside a plain tar, as
//! `skopeo copy … oci-archive:` and `buildx --output type=oci` write it, read in place.

use std::path::PathBuf;

use super::oci::{Opened, open_layout};
use super::tarball::Tarball;
use super::{Error, split_path_ref};

pub(super) fn open(rest: &str) -> Result<Opened, Error> {
    let (path, reference) = split_path_ref(rest);
    let tarball = Tarball::open(
        &PathBuf::from(path),
        "an OCI archive (a plain tar of an OCI layout)",
    )?;
    open_layout(tarball, reference)
}
