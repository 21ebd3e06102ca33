//! OCI archives (`oci-archive:FILE[:REF]`): an OCI image layout inside a plain tar, as
//! `skopeo copy … oci-archive:` and `buildx --output type=oci` write it, read in place.

use std::path::Path;

use super::Error;
use super::oci::{Opened, open_layout};
use super::tarball::Tarball;

pub(super) fn open(path: &Path, reference: Option<&str>) -> Result<Opened, Error> {
    let tarball = Tarball::open(path, "an OCI archive (a plain tar of an OCI layout)")?;
    open_layout(tarball, reference)
}
