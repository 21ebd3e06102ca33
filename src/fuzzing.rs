//! Entry points for the fuzz targets (fuzz/fuzz_targets) and for the regression tests
//! that replay what they found (tests/it/fuzz_regressions.rs). Each takes arbitrary
//! bytes and must return, never panic, whatever they hold.

use std::collections::HashMap;
use std::io::Write as _;

use crate::image;

/// `data` as a tar file, opened as `docker-archive:` and as `oci-archive:`.
pub fn archive(data: &[u8]) {
    let Ok(mut file) = tempfile::NamedTempFile::new() else {
        return;
    };
    if file.write_all(data).is_err() {
        return;
    }
    let path = file.path().display().to_string();
    let _ = image::open_local(&format!("docker-archive:{path}"));
    let _ = image::open_local(&format!("oci-archive:{path}"));
}

/// `data` as a top manifest or index, split at the first 0 byte: before it the top,
/// after it blobs separated by 0xff that it may reference by digest.
pub fn manifest(data: &[u8]) {
    let mut parts = data.splitn(2, |b| *b == 0);
    let top = parts.next().unwrap_or_default();
    let blobs: HashMap<image::Digest, Vec<u8>> = parts
        .next()
        .unwrap_or_default()
        .split(|b| *b == 0xff)
        .map(|blob| (image::Digest::of(blob), blob.to_vec()))
        .collect();
    for media_type in [
        "",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ] {
        let _ = image::load_from_memory(blobs.clone(), top, media_type);
    }
}

/// `data` as an image reference in skopeo's syntax.
pub fn reference(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        image::parse_reference(text);
    }
}

/// `data` as the command line of `ecr-push push`, one argument per line, parsed and
/// checked as the inputs are.
pub fn inputs(data: &[u8]) {
    use clap::Parser as _;
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let args = ["ecr-push", "push"]
        .into_iter()
        .map(str::to_owned)
        .chain(text.lines().map(str::to_owned));
    if let Ok(cli) = crate::cli::Cli::try_parse_from(args)
        && let crate::cli::Command::Push(push) = cli.command
    {
        let _ = push.validate();
    }
}
