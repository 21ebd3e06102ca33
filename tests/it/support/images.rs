//! Test images as OCI layouts, written by the test with random (seeded) layers: one
//! image, or a multi-platform index with attestations as buildx writes it; and umoci,
//! the independent OCI tool, to check or change them.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::sha256;

/// Runs umoci, the independent OCI tool, and expects it to succeed.
pub fn umoci(args: &[&str]) {
    let status = Command::new("umoci")
        .args(args)
        .status()
        .expect("umoci runs");
    assert!(status.success(), "umoci {args:?}");
}

/// Reproducible pseudo-random bytes (xorshift64*), so layers differ without a
/// random-number crate and a failing case can be re-run.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

pub struct Blob {
    pub digest: String,
    pub size: usize,
}

/// Every blob of `layout` is in the OCI layout at `dir` (a copy read back from where it
/// was pushed), hashing to its digest.
pub fn assert_blobs_in(dir: &Path, layout: &Layout) {
    for digest in layout.blob_digests() {
        let bytes = std::fs::read(
            dir.join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:")),
        )
        .unwrap();
        assert_eq!(sha256(&bytes), digest);
    }
}

/// An OCI image layout written by the test.
pub struct Layout {
    pub dir: PathBuf,
    pub manifest: Vec<u8>,
    pub digest: String,
    pub config: Blob,
    pub layers: Vec<Blob>,
}

impl Layout {
    pub fn blob_digests(&self) -> Vec<String> {
        std::iter::once(&self.config)
            .chain(&self.layers)
            .map(|b| b.digest.clone())
            .collect()
    }

    pub fn blob_path(&self, digest: &str) -> PathBuf {
        self.dir
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    }

    pub fn reference(&self, tag: &str) -> String {
        format!("oci:{}:{tag}", self.dir.display())
    }
}

/// Writes an OCI layout at `dir` holding one image with these layers, named `tag`.
pub fn write_layout(dir: &Path, tag: &str, layers: &[Vec<u8>]) -> Layout {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("create layout");
    let put = |bytes: &[u8]| {
        let digest = sha256(bytes);
        std::fs::write(blobs.join(digest.trim_start_matches("sha256:")), bytes)
            .expect("write blob");
        Blob {
            digest,
            size: bytes.len(),
        }
    };
    let layer_blobs: Vec<Blob> = layers.iter().map(|l| put(l)).collect();
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/app"]},
        "rootfs": {
            "type": "layers",
            "diff_ids": layer_blobs.iter().map(|b| b.digest.clone()).collect::<Vec<_>>()
        }
    });
    let config = put(config.to_string().as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config.digest,
            "size": config.size,
        },
        "layers": layer_blobs.iter().map(|b| serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": b.digest,
            "size": b.size,
        })).collect::<Vec<_>>(),
    });
    // Pretty-printed on purpose: a tool that re-serialised it would change the digest.
    let manifest = serde_json::to_vec_pretty(&manifest).expect("manifest JSON");
    let manifest_blob = put(&manifest);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_blob.digest,
            "size": manifest_blob.size,
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    std::fs::write(dir.join("index.json"), index.to_string()).expect("index.json");
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)
        .expect("oci-layout");
    Layout {
        dir: dir.to_owned(),
        manifest,
        digest: manifest_blob.digest,
        config,
        layers: layer_blobs,
    }
}

/// A manifest in a multi-platform layout: its digest and exact bytes, and for an
/// image its platform.
pub struct Stored {
    pub digest: String,
    pub bytes: Vec<u8>,
    pub platform: Option<&'static str>,
}

/// A multi-platform OCI layout as `docker buildx build --platform … --output type=oci`
/// writes it: index.json names an image index that lists one image per platform (all
/// sharing a base layer) and, after them, one attestation manifest per image.
pub struct IndexLayout {
    pub dir: PathBuf,
    pub index: Stored,
    pub images: Vec<Stored>,
    pub attestations: Vec<Stored>,
    /// Every blob of every manifest, each once: digest and size.
    pub blobs: Vec<(String, usize)>,
}

impl IndexLayout {
    pub fn reference(&self, tag: &str) -> String {
        format!("oci:{}:{tag}", self.dir.display())
    }
}

pub fn write_index_layout(dir: &Path, tag: &str, platforms: &[&'static str]) -> IndexLayout {
    let blob_dir = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blob_dir).expect("create layout");
    let mut blobs: Vec<(String, usize)> = Vec::new();
    let mut put = |bytes: &[u8]| {
        let digest = sha256(bytes);
        std::fs::write(blob_dir.join(digest.trim_start_matches("sha256:")), bytes)
            .expect("write blob");
        if !blobs.iter().any(|(d, _)| *d == digest) {
            blobs.push((digest.clone(), bytes.len()));
        }
        serde_json::json!({"digest": digest, "size": bytes.len()})
    };
    let with_type = |mut descriptor: serde_json::Value, media_type: &str| {
        descriptor["mediaType"] = media_type.into();
        descriptor
    };
    let base = put(&random_bytes(90, 200 * 1024));
    let mut images = Vec::new();
    let mut attestations = Vec::new();
    for (n, platform) in platforms.iter().enumerate() {
        let mut parts = platform.split('/');
        let (os, arch) = (parts.next().unwrap(), parts.next().unwrap());
        let variant = parts.next();
        let own = put(&random_bytes(91 + n as u64, 50 * 1024 + n));
        let config = put(
            serde_json::json!({"architecture": arch, "os": os, "variant": variant,
                "rootfs": {"type": "layers", "diff_ids": [base["digest"], own["digest"]]}})
            .to_string()
            .as_bytes(),
        );
        let manifest = serde_json::to_vec_pretty(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": with_type(config, "application/vnd.oci.image.config.v1+json"),
            "layers": [
                with_type(base.clone(), "application/vnd.oci.image.layer.v1.tar"),
                with_type(own, "application/vnd.oci.image.layer.v1.tar"),
            ],
        }))
        .unwrap();
        put(&manifest);
        images.push(Stored {
            digest: sha256(&manifest),
            bytes: manifest,
            platform: Some(platform),
        });
    }
    for image in &images {
        let statement = put(
            serde_json::json!({"_type": "https://in-toto.io/Statement/v0.1",
                "subject": [{"digest": {"sha256": image.digest.trim_start_matches("sha256:")}}]})
            .to_string()
            .as_bytes(),
        );
        let config = put(br#"{"architecture":"unknown","os":"unknown","config":{},"rootfs":{"type":"layers","diff_ids":[]}}"#);
        let mut layer = with_type(statement, "application/vnd.in-toto+json");
        layer["annotations"] =
            serde_json::json!({"in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2"});
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": with_type(config, "application/vnd.oci.image.config.v1+json"),
            "layers": [layer],
        }))
        .unwrap();
        put(&manifest);
        attestations.push(Stored {
            digest: sha256(&manifest),
            bytes: manifest,
            platform: None,
        });
    }
    let mut entries: Vec<serde_json::Value> = images
        .iter()
        .map(|image| {
            let mut parts = image.platform.unwrap().split('/');
            let mut platform = serde_json::json!({"architecture": "", "os": parts.next()});
            platform["architecture"] = parts.next().into();
            if let Some(variant) = parts.next() {
                platform["variant"] = variant.into();
            }
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": image.digest, "size": image.bytes.len(), "platform": platform,
            })
        })
        .collect();
    entries.extend(
        images
            .iter()
            .zip(&attestations)
            .map(|(image, attestation)| {
                serde_json::json!({
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": attestation.digest, "size": attestation.bytes.len(),
                    "annotations": {
                        "vnd.docker.reference.digest": image.digest,
                        "vnd.docker.reference.type": "attestation-manifest",
                    },
                    "platform": {"architecture": "unknown", "os": "unknown"},
                })
            }),
    );
    let index = serde_json::to_vec_pretty(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": entries,
    }))
    .unwrap();
    put(&index);
    let top = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": sha256(&index),
            "size": index.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    std::fs::write(dir.join("index.json"), top.to_string()).expect("index.json");
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)
        .expect("oci-layout");
    let manifests: Vec<&String> = images
        .iter()
        .chain(&attestations)
        .map(|m| &m.digest)
        .collect();
    blobs.retain(|(digest, _)| !manifests.contains(&digest) && *digest != sha256(&index));
    IndexLayout {
        dir: dir.to_owned(),
        index: Stored {
            digest: sha256(&index),
            bytes: index,
            platform: None,
        },
        images,
        attestations,
        blobs,
    }
}

/// An uncompressed tar with no entries: what an empty layer is.
pub fn empty_layer() -> Vec<u8> {
    vec![0; 1024]
}
