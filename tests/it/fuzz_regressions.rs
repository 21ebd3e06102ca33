//! What the fuzz targets (fuzz/, `cargo fuzz run TARGET`) found, replayed on every test
//! run: each file under fuzz/regressions/TARGET/ goes through the same entry point, and
//! must return without a panic. The seeds there are also checked to be images the
//! parsers accept, so the fuzzers start from inputs that reach deep.

use std::path::PathBuf;

/// A fuzz target's entry point.
type Target = fn(&[u8]);

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no input", dir.display());
    files
}

#[test]
fn every_input_the_fuzzers_kept_is_handled_without_a_panic() {
    let targets: [(&str, Target); 4] = [
        ("archive", ecr_push::fuzzing::archive),
        ("manifest", ecr_push::fuzzing::manifest),
        ("reference", ecr_push::fuzzing::reference),
        ("inputs", ecr_push::fuzzing::inputs),
    ];
    for (target, run) in targets {
        for (path, bytes) in inputs(target) {
            eprintln!("{target}: {}", path.display());
            run(&bytes);
        }
    }
}

#[test]
fn the_seeds_are_images_the_parsers_accept() {
    for (path, bytes) in inputs("archive") {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &bytes).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("docker-save") || name.starts_with("oci-layout") {
            let transport = if name.starts_with("oci") {
                "oci-archive"
            } else {
                "docker-archive"
            };
            let image =
                ecr_push::image::open_local(&format!("{transport}:{}", file.path().display()))
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(image.blobs().len(), 2, "{name}");
        }
    }
    for (path, bytes) in inputs("manifest") {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("oci-") {
            continue;
        }
        let mut parts = bytes.splitn(2, |b| *b == 0);
        let top = parts.next().unwrap();
        let blobs = parts
            .next()
            .unwrap()
            .split(|b| *b == 0xff)
            .map(|b| (ecr_push::image::Digest::of(b), b.to_vec()))
            .collect();
        let image = ecr_push::image::load_from_memory(blobs, top, "")
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(image.blobs().len(), 2, "{name}");
    }
}
