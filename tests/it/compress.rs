//! `compression`: uncompressed layers are compressed on the way, reproducibly; what ECR
//! receives decompresses to the source's layers, and the manifests that list them are
//! rewritten (the index above them too, attestations following their images).

use std::io::Read as _;

use crate::support::*;

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("gzip stream");
    out
}

fn layers() -> Vec<Vec<u8>> {
    vec![
        // Compressible: a repeated pattern, and random bytes that are not.
        layer_tar("usr/share/doc", &b"ecr-push ".repeat(200_000)),
        layer_tar("bin/app", &random_bytes(41, 300 * 1024)),
    ]
}

#[test]
fn gzip_compresses_docker_save_layers_reproducibly() {
    let stack = Stack::start();
    stack.moto.create_repository(CI_ACCOUNT, "app", false);
    let dir = tempfile::tempdir().unwrap();
    let layers = layers();
    let archive = write_classic_archive(&dir.path().join("app.tar"), &["app:v1"], &layers);
    let push = || {
        stack
            .action()
            .input("image", &archive.reference("app:v1"))
            .input("repository", "app")
            .input("compression", "gzip")
            .run()
    };

    let first = push();
    assert!(first.ok(), "{}", first.log());
    let (digest, manifest) = stack.moto.manifest(CI_ACCOUNT, "app", "v1").unwrap();
    assert_eq!(first.outputs["digest"], digest);
    let manifest: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(manifest["config"]["digest"], archive.config.as_str());
    let uploaded = stack.recorder.uploaded_layers();
    let listed = manifest["layers"].as_array().unwrap();
    assert_eq!(listed.len(), layers.len());
    for (entry, source) in listed.iter().zip(&layers) {
        let digest = entry["digest"].as_str().unwrap();
        let sent = &uploaded[digest];
        assert_eq!(sha256(sent), digest);
        assert_eq!(entry["size"].as_u64(), Some(sent.len() as u64));
        assert_eq!(
            entry["mediaType"],
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        );
        assert_eq!(&gunzip(sent), source, "{digest} is not the source layer");
    }
    // The repeated pattern shrank; gzip at level 6 by default.
    assert!(uploaded[listed[0]["digest"].as_str().unwrap()].len() < layers[0].len() / 50);
    assert!(
        first.summary.contains("rewritten for compression"),
        "{}",
        first.summary
    );

    let second = push();
    assert!(second.ok(), "{}", second.log());
    assert_eq!(
        second.outputs["digest"], digest,
        "the same input gave another digest"
    );
    assert_eq!(
        stack.recorder.uploaded_layers().len(),
        uploaded.len(),
        "a layer was sent again"
    );
}

#[test]
fn zstd_rewrites_an_index_and_leaves_attestations_and_docker_manifests_alone() {
    let stack = Stack::start();
    stack.moto.create_repository(CI_ACCOUNT, "multi", false);
    let dir = tempfile::tempdir().unwrap();
    let layout = write_index_layout(dir.path(), "v1", &["linux/amd64", "linux/arm64"]);

    let run = stack
        .action()
        .input("image", &layout.reference("v1"))
        .input("repository", "multi")
        .input("compression", "zstd")
        .input("compression-level", "9")
        .run();

    assert!(run.ok(), "{}", run.log());
    let (digest, index) = stack.moto.manifest(CI_ACCOUNT, "multi", "v1").unwrap();
    assert_ne!(digest, layout.index.digest);
    let index: serde_json::Value = serde_json::from_str(&index).unwrap();
    let entries = index["manifests"].as_array().unwrap();
    let uploaded = stack.recorder.uploaded_layers();
    for (n, image) in layout.images.iter().enumerate() {
        let new_digest = entries[n]["digest"].as_str().unwrap();
        assert_ne!(new_digest, image.digest);
        // The attestation entry names the new image, and is itself unchanged.
        let attestation = &entries[layout.images.len() + n];
        assert_eq!(
            attestation["annotations"]["vnd.docker.reference.digest"],
            new_digest
        );
        assert_eq!(
            attestation["digest"],
            layout.attestations[n].digest.as_str()
        );
        let (_, manifest) = stack
            .moto
            .manifest_by_digest(CI_ACCOUNT, "multi", new_digest)
            .unwrap();
        let manifest: serde_json::Value = serde_json::from_str(&manifest).unwrap();
        let source: serde_json::Value = serde_json::from_slice(&image.bytes).unwrap();
        assert_eq!(manifest["config"], source["config"]);
        for (entry, original) in manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .zip(source["layers"].as_array().unwrap())
        {
            assert_eq!(
                entry["mediaType"],
                "application/vnd.oci.image.layer.v1.tar+zstd"
            );
            let sent = &uploaded[entry["digest"].as_str().unwrap()];
            let plain = zstd::decode_all(sent.as_slice()).expect("zstd stream");
            assert_eq!(sha256(&plain), original["digest"].as_str().unwrap());
        }
    }

    // zstd has no Docker schema 2 layer type: refused before any call.
    let calls = stack.recorder.calls().len();
    let archive = write_classic_archive(&dir.path().join("app.tar"), &["app:v1"], &layers());
    let refused = stack
        .action()
        .input("image", &archive.reference("app:v1"))
        .input("repository", "multi")
        .input("compression", "zstd")
        .run();
    assert!(!refused.ok());
    assert!(
        refused
            .error()
            .starts_with("compression: zstd layers need an OCI manifest, and sha256:"),
        "{}",
        refused.error()
    );
    assert_eq!(stack.recorder.calls().len(), calls);
}
