//! Multi-platform images: an index and its children land in moto byte for byte, children
//! first; `platforms` keeps some and writes a new index, attestations following the
//! images they describe.

use crate::support::*;

const PLATFORMS: [&str; 2] = ["linux/amd64", "linux/arm64/v8"];

/// Every manifest is in moto under its digest with the source's exact bytes.
fn assert_stored(stack: &Stack, repository: &str, manifest: &Stored, media_type: &str) {
    let (stored_type, bytes) = stack
        .moto
        .manifest_by_digest(CI_ACCOUNT, repository, &manifest.digest)
        .unwrap_or_else(|| panic!("{} not in {repository}", manifest.digest));
    assert_eq!(stored_type, media_type, "{}", manifest.digest);
    assert_eq!(
        bytes.as_bytes(),
        manifest.bytes.as_slice(),
        "{}",
        manifest.digest
    );
}

#[test]
fn index_is_pushed_whole_children_first_with_original_bytes() {
    let stack = Stack::start();
    stack.moto.create_repository(CI_ACCOUNT, "multi", false);
    let dir = tempfile::tempdir().unwrap();
    let layout = write_index_layout(dir.path(), "v1", &PLATFORMS);

    let run = stack
        .action()
        .input("image", &layout.reference("v1"))
        .input("repository", "multi")
        .input("tags", "v1,latest")
        .run();

    assert!(run.ok(), "{}", run.log());
    let index_type = "application/vnd.oci.image.index.v1+json";
    for tag in ["v1", "latest"] {
        let (digest, bytes) = stack.moto.manifest(CI_ACCOUNT, "multi", tag).unwrap();
        assert_eq!(digest, layout.index.digest);
        assert_eq!(bytes.as_bytes(), layout.index.bytes.as_slice());
    }
    assert_stored(&stack, "multi", &layout.index, index_type);
    for manifest in layout.images.iter().chain(&layout.attestations) {
        assert_stored(
            &stack,
            "multi",
            manifest,
            "application/vnd.oci.image.manifest.v1+json",
        );
    }
    let digests: Vec<String> = layout.blobs.iter().map(|(d, _)| d.clone()).collect();
    let available = stack.moto.available_blobs(CI_ACCOUNT, "multi", &digests);
    for (digest, size) in &layout.blobs {
        assert_eq!(available.get(digest), Some(&(*size as i64)), "{digest}");
    }
    // The shared base layer went up once.
    assert_eq!(
        stack.recorder.calls_to("InitiateLayerUpload").len(),
        layout.blobs.len()
    );

    // Four children by digest only, then the index under each tag.
    let puts = stack.recorder.put_images();
    assert_eq!(puts.len(), 6, "{puts:?}");
    let mut children: Vec<&str> = puts[..4]
        .iter()
        .map(|(digest, tag)| {
            assert_eq!(*tag, None, "a child was tagged: {puts:?}");
            digest.as_str()
        })
        .collect();
    children.sort_unstable();
    let mut expected: Vec<&str> = layout
        .images
        .iter()
        .chain(&layout.attestations)
        .map(|m| m.digest.as_str())
        .collect();
    expected.sort_unstable();
    assert_eq!(children, expected);
    for (put, tag) in puts[4..].iter().zip(["v1", "latest"]) {
        assert_eq!(*put, (layout.index.digest.clone(), Some(tag.to_owned())));
    }

    assert_eq!(run.outputs["digest"], layout.index.digest);
    assert!(
        run.summary
            .contains("| Manifests | 5 (an index and its children) |"),
        "{}",
        run.summary
    );
    assert!(!run.summary.contains("Source digest"), "{}", run.summary);
}

#[test]
fn platforms_keep_those_images_and_their_attestations_in_a_new_index() {
    let stack = Stack::start();
    stack.moto.create_repository(CI_ACCOUNT, "multi", false);
    let dir = tempfile::tempdir().unwrap();
    let layout = write_index_layout(
        dir.path(),
        "v1",
        &["linux/amd64", "linux/arm64/v8", "linux/s390x"],
    );

    let run = stack
        .action()
        .input("image", &layout.reference("v1"))
        .input("repository", "multi")
        .input("platforms", "linux/arm64, linux/s390x")
        .run();

    assert!(run.ok(), "{}", run.log());
    let (digest, bytes) = stack.moto.manifest(CI_ACCOUNT, "multi", "v1").unwrap();
    assert_ne!(digest, layout.index.digest);
    assert_eq!(sha256(bytes.as_bytes()), digest);
    assert_eq!(run.outputs["digest"], digest);
    let index: serde_json::Value = serde_json::from_str(&bytes).unwrap();
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let listed: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["digest"].as_str().unwrap())
        .collect();
    // The source's order, without amd64 and its attestation.
    let kept = [1, 2];
    let expected: Vec<&str> = kept
        .iter()
        .map(|&i| layout.images[i].digest.as_str())
        .chain(kept.iter().map(|&i| layout.attestations[i].digest.as_str()))
        .collect();
    assert_eq!(listed, expected);
    for &i in &kept {
        let manifest_type = "application/vnd.oci.image.manifest.v1+json";
        assert_stored(&stack, "multi", &layout.images[i], manifest_type);
        assert_stored(&stack, "multi", &layout.attestations[i], manifest_type);
    }
    for dropped in [&layout.images[0], &layout.attestations[0]] {
        assert!(
            stack
                .moto
                .manifest_by_digest(CI_ACCOUNT, "multi", &dropped.digest)
                .is_none(),
            "{} was pushed",
            dropped.digest
        );
    }
    assert!(
        run.summary
            .contains(&format!("| Source digest | `{}` |", layout.index.digest)),
        "{}",
        run.summary
    );
    assert!(run.summary.contains(&digest), "{}", run.summary);
    assert!(
        run.log().contains(&format!(
            "manifest {} rewritten for platforms linux/arm64, linux/s390x",
            layout.index.digest
        )),
        "{}",
        run.log()
    );
}

#[test]
fn platforms_naming_every_image_keep_the_index_as_it_is() {
    let stack = Stack::start();
    stack.moto.create_repository(CI_ACCOUNT, "multi", false);
    let dir = tempfile::tempdir().unwrap();
    let layout = write_index_layout(dir.path(), "v1", &PLATFORMS);

    let run = stack
        .action()
        .input("image", &layout.reference("v1"))
        .input("repository", "multi")
        .input("platforms", "linux/amd64,linux/arm64")
        .run();

    assert!(run.ok(), "{}", run.log());
    assert_eq!(run.outputs["digest"], layout.index.digest);
    let (_, bytes) = stack.moto.manifest(CI_ACCOUNT, "multi", "v1").unwrap();
    assert_eq!(bytes.as_bytes(), layout.index.bytes.as_slice());
    assert!(!run.summary.contains("Source digest"), "{}", run.summary);
}

#[test]
fn platforms_the_image_cannot_give_fail_before_any_call() {
    let stack = Stack::start();
    let dir = tempfile::tempdir().unwrap();
    let layout = write_index_layout(dir.path(), "v1", &PLATFORMS);
    let single_dir = tempfile::tempdir().unwrap();
    let single = write_layout(single_dir.path(), "v1", &[random_bytes(5, 1000)]);

    let cases = [
        (
            layout.reference("v1"),
            "windows/amd64",
            format!(
                "platforms: index {} has none of windows/amd64; it has linux/amd64, linux/arm64/v8",
                layout.index.digest
            ),
        ),
        (
            single.reference("v1"),
            "linux/amd64",
            format!(
                "platforms: {} is a single-platform manifest, not an index; leave platforms empty",
                single.digest
            ),
        ),
        (
            layout.reference("v1"),
            "linux",
            "platforms: `linux` is not OS/ARCH[/VARIANT], e.g. linux/amd64 or linux/arm64/v8"
                .to_owned(),
        ),
    ];
    for (image, platforms, message) in cases {
        let run = stack
            .action()
            .input("image", &image)
            .input("repository", "multi")
            .input("platforms", platforms)
            .run();
        assert!(!run.ok(), "{platforms}: {}", run.log());
        assert_eq!(run.error(), message);
    }
    assert!(
        stack.recorder.calls().is_empty(),
        "{:?}",
        stack.recorder.calls()
    );
    assert!(stack.oidc.tokens().is_empty());
}
