//! Images as Docker writes them: `docker save` archives (the classic layout, and Docker
//! 25's OCI layout inside), and the config folder `docker login` leaves.

use std::path::{Path, PathBuf};

use super::sha256;

/// A tar written entry by entry, with fixed metadata so archives are reproducible.
pub struct TarWriter(tar::Builder<Vec<u8>>);

impl TarWriter {
    pub fn new() -> Self {
        Self(tar::Builder::new(Vec::new()))
    }

    pub fn file(&mut self, name: &str, bytes: &[u8]) -> &mut Self {
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        self.0
            .append_data(&mut header, name, bytes)
            .expect("tar entry");
        self
    }

    pub fn link(&mut self, kind: tar::EntryType, name: &str, target: &str) -> &mut Self {
        let mut header = tar::Header::new_gnu();
        header.set_size(0);
        header.set_mode(0o777);
        header.set_mtime(0);
        header.set_entry_type(kind);
        self.0
            .append_link(&mut header, name, target)
            .expect("tar link");
        self
    }

    pub fn finish(self) -> Vec<u8> {
        self.0.into_inner().expect("tar")
    }
}

/// A layer: a tar holding one file of these bytes.
pub fn layer_tar(name: &str, bytes: &[u8]) -> Vec<u8> {
    let mut tar = TarWriter::new();
    tar.file(name, bytes);
    tar.finish()
}

pub struct DockerArchive {
    pub path: PathBuf,
    pub config: String,
    /// Docker 25+ archives: the manifest in the OCI layout inside.
    pub manifest: Option<(String, Vec<u8>)>,
}

impl DockerArchive {
    pub fn reference(&self, name: &str) -> String {
        if name.is_empty() {
            format!("docker-archive:{}", self.path.display())
        } else {
            format!("docker-archive:{}:{name}", self.path.display())
        }
    }
}

fn config_for(layers: &[Vec<u8>]) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| sha256(l)).collect();
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/app"], "Env": ["PATH=/usr/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": "test"}],
    }))
    .unwrap()
}

/// The classic layout, as Docker before 25 saves: `<id>/layer.tar` per layer (a layer
/// equal to an earlier one is a symlink to it, as Docker writes), `<config>.json`,
/// `manifest.json` and `repositories`.
pub fn write_classic_archive(path: &Path, repo_tags: &[&str], layers: &[Vec<u8>]) -> DockerArchive {
    let config = config_for(layers);
    let config_hex = sha256(&config).trim_start_matches("sha256:").to_owned();
    let mut tar = TarWriter::new();
    let mut ids: Vec<(String, String)> = Vec::new();
    let mut paths = Vec::new();
    for (n, layer) in layers.iter().enumerate() {
        let digest = sha256(layer);
        // Docker's layer ids are chain hashes; any distinct hex works for a reader.
        let id = sha256(format!("{n}{digest}").as_bytes())
            .trim_start_matches("sha256:")
            .to_owned();
        tar.file(&format!("{id}/VERSION"), b"1.0");
        tar.file(&format!("{id}/json"), br#"{"id":"x"}"#);
        match ids.iter().find(|(d, _)| *d == digest) {
            Some((_, first)) => {
                tar.link(
                    tar::EntryType::Symlink,
                    &format!("{id}/layer.tar"),
                    &format!("../{first}/layer.tar"),
                );
            }
            None => {
                tar.file(&format!("{id}/layer.tar"), layer);
                ids.push((digest, id.clone()));
            }
        }
        paths.push(format!("{id}/layer.tar"));
    }
    tar.file(&format!("{config_hex}.json"), &config);
    let manifest = serde_json::json!([{
        "Config": format!("{config_hex}.json"),
        "RepoTags": repo_tags,
        "Layers": paths,
    }]);
    tar.file("manifest.json", manifest.to_string().as_bytes());
    tar.file("repositories", b"{}");
    std::fs::write(path, tar.finish()).expect("write archive");
    DockerArchive {
        path: path.to_owned(),
        config: sha256(&config),
        manifest: None,
    }
}

/// Docker 25+'s layout: an OCI layout inside (its index naming the image with
/// containerd's annotations), plus `manifest.json` pointing into `blobs/`.
pub fn write_oci_docker_archive(path: &Path, name: &str, layers: &[Vec<u8>]) -> DockerArchive {
    let config = config_for(layers);
    let mut tar = TarWriter::new();
    let blob = |tar: &mut TarWriter, bytes: &[u8]| {
        let digest = sha256(bytes);
        tar.file(
            &format!("blobs/sha256/{}", digest.trim_start_matches("sha256:")),
            bytes,
        );
        digest
    };
    let mut written: Vec<String> = Vec::new();
    for layer in layers {
        if !written.contains(&sha256(layer)) {
            written.push(blob(&mut tar, layer));
        }
    }
    let config_digest = blob(&mut tar, &config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config.len()},
        "layers": layers.iter().map(|l| serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": sha256(l), "size": l.len()})).collect::<Vec<_>>(),
    }))
    .unwrap();
    let manifest_digest = blob(&mut tar, &manifest);
    let tag = name.rsplit_once(':').map_or("latest", |(_, t)| t);
    tar.file(
        "index.json",
        serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest, "size": manifest.len(),
                "annotations": {
                    "io.containerd.image.name": format!("docker.io/library/{name}"),
                    "org.opencontainers.image.ref.name": tag,
                },
            }],
        })
        .to_string()
        .as_bytes(),
    );
    tar.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    tar.file(
        "manifest.json",
        serde_json::json!([{
            "Config": format!("blobs/sha256/{}", config_digest.trim_start_matches("sha256:")),
            "RepoTags": [name],
            "Layers": layers.iter().map(|l| format!("blobs/sha256/{}",
                sha256(l).trim_start_matches("sha256:"))).collect::<Vec<_>>(),
        }])
        .to_string()
        .as_bytes(),
    );
    std::fs::write(path, tar.finish()).expect("write archive");
    DockerArchive {
        path: path.to_owned(),
        config: config_digest,
        manifest: Some((manifest_digest, manifest)),
    }
}

/// A Docker config folder (for DOCKER_CONFIG) holding a login for `host` in `auths`, as
/// `docker login` writes it.
pub fn docker_config_with_login(host: &str, username: &str, password: &str) -> tempfile::TempDir {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    std::fs::write(
        dir.path().join("config.json"),
        serde_json::json!({"auths": {host: {"auth": auth}}}).to_string(),
    )
    .unwrap();
    dir
}
