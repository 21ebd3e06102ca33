//! Docker archives (`docker-archive:FILE[:NAME[:TAG]]` or `…:@N`): the tar `docker save`
//! writes, read in place, in both layouts in use.
//!
//! - Docker 25 and later write an OCI layout inside (`oci-layout`, `index.json`,
//!   `blobs/sha256/…`) next to `manifest.json`. The manifests in it are pushed as they
//!   are, so the image keeps the digest Docker gave it.
//! - Earlier versions, and skopeo, write the classic layout: `manifest.json` naming a
//!   config file and one tar per layer. There is no manifest to keep, so one is built the
//!   way skopeo builds it (Docker schema 2, compact, the layers as they are in the tar),
//!   which gives the digest `skopeo copy docker-archive:… docker://…` gives.
//!
//! NAME is matched as Docker matches it (`app` is `docker.io/library/app:latest`); `@N`
//! picks the Nth image of `manifest.json`, from 0.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use super::oci::{self, Files, Opened};
use super::tarball::Tarball;
use super::{Blobs, Descriptor, Digest, Error};

const KIND: &str = "a docker-archive (the tar docker save writes)";
const MANIFEST_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";
const CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker schema 2 has one layer type, whatever the compression; skopeo and Docker
/// label uncompressed layers with it too, and pullers look at the bytes.
const LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// A config with a long history is some hundreds of KiB; this is far beyond.
const MAX_CONFIG_BYTES: u64 = 32 * 1024 * 1024;
/// `manifest.json` and `index.json` list images, a few hundred bytes each.
const MAX_LIST_BYTES: u64 = 4 * 1024 * 1024;
const CONTAINERD_NAME: &str = "io.containerd.image.name";
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Which image of the archive to push.
#[derive(Debug, PartialEq)]
pub(super) enum Select {
    /// The only one.
    Only,
    /// By name, normalised (`docker.io/library/app:v1`).
    Name(String),
    /// The Nth of the archive's list, from 0.
    Position(usize),
}

/// One image of `manifest.json`.
#[derive(serde::Deserialize)]
struct Item {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

pub(super) fn open(path: &Path, select: &Select) -> Result<Opened, Error> {
    let tarball = Tarball::open(path, KIND)?;
    open_tarball(tarball, select)
}

/// Opens an archive that is already indexed: a file, or what a daemon exported.
pub(super) fn open_tarball(tarball: Tarball, select: &Select) -> Result<Opened, Error> {
    let archive_err = |reason: String| Error::Archive {
        path: tarball.root().to_owned(),
        kind: KIND,
        reason,
    };
    if tarball.contains("index.json") && tarball.contains("oci-layout") {
        return open_oci(tarball, select);
    }
    let Some(list) = oci::read_small(&tarball, "manifest.json", MAX_LIST_BYTES)? else {
        return Err(archive_err(
            "it has neither manifest.json nor an OCI layout (index.json)".into(),
        ));
    };
    let items: Vec<Item> = serde_json::from_slice(&list).map_err(|source| Error::Json {
        path: tarball.root().join("manifest.json"),
        what: "manifest.json".into(),
        source,
    })?;
    let names: Vec<Vec<String>> = items
        .iter()
        .map(|item| item.repo_tags.clone().unwrap_or_default())
        .collect();
    let chosen = choose(&names, select).map_err(archive_err)?;
    let tag = tag_for(select, &names[chosen]);
    classic(tarball, &items[chosen], tag)
}

/// Which of an archive's images `select` names, each image given with its names as the
/// archive writes them; the reason when none is.
fn choose(names: &[Vec<String>], select: &Select) -> Result<usize, String> {
    let all = || {
        let all: Vec<&str> = names.iter().flatten().map(String::as_str).collect();
        if all.is_empty() {
            "none".to_owned()
        } else {
            all.join(", ")
        }
    };
    match select {
        Select::Only if names.len() == 1 => Ok(0),
        Select::Only if names.is_empty() => Err("it lists no image".into()),
        Select::Only => Err(format!(
            "it holds {} images; name one as FILE:NAME:TAG or FILE:@N (names: {})",
            names.len(),
            all()
        )),
        Select::Position(n) if *n < names.len() => Ok(*n),
        Select::Position(n) => Err(format!("it holds {} images, so @{n} is none", names.len())),
        Select::Name(wanted) => names
            .iter()
            .position(|ns| ns.iter().any(|n| normalize(n).as_ref() == Some(wanted)))
            .ok_or_else(|| format!("no image is named {wanted} (names: {})", all())),
    }
}

/// The default tag: the one the reference names, else that of the image's only name.
fn tag_for(select: &Select, names: &[String]) -> Option<String> {
    match (select, names) {
        (Select::Name(name), _) => tag_of(name),
        (_, [only]) => normalize(only).and_then(|n| tag_of(&n)),
        _ => None,
    }
}

/// Builds the schema 2 manifest of a classic archive's image, byte for byte as skopeo's.
fn classic(tarball: Tarball, item: &Item, tag: Option<String>) -> Result<Opened, Error> {
    let archive_err = |reason: String| Error::Archive {
        path: tarball.root().to_owned(),
        kind: KIND,
        reason,
    };
    let config = oci::read_small(&tarball, &item.config, MAX_CONFIG_BYTES)?.ok_or_else(|| {
        archive_err(format!(
            "manifest.json names the config {}, which it does not hold",
            item.config
        ))
    })?;
    #[derive(serde::Deserialize)]
    struct RootFs {
        #[serde(default)]
        diff_ids: Vec<String>,
    }
    #[derive(serde::Deserialize)]
    struct ConfigRootFs {
        rootfs: RootFs,
    }
    let diff_ids = serde_json::from_slice::<ConfigRootFs>(&config)
        .map_err(|source| Error::Json {
            path: tarball.root().join(&item.config),
            what: "the image config".into(),
            source,
        })?
        .rootfs
        .diff_ids;
    if diff_ids.len() != item.layers.len() {
        return Err(archive_err(format!(
            "the config lists {} layers and manifest.json {}",
            diff_ids.len(),
            item.layers.len()
        )));
    }
    let config_digest = Digest::of(&config);
    let mut blobs: HashMap<Digest, Source> = HashMap::new();
    let mut layers = Vec::new();
    for (path, diff_id) in item.layers.iter().zip(&diff_ids) {
        let io_err = |source| Error::Io {
            path: tarball.root().join(path),
            source,
        };
        let (mut reader, size) = tarball.open(path).map_err(io_err)?.ok_or_else(|| {
            archive_err(format!(
                "manifest.json names the layer {path}, which it does not hold"
            ))
        })?;
        let mut magic = [0u8; 2];
        let peeked = read_up_to(&mut reader, &mut magic).map_err(io_err)?;
        // An uncompressed layer's digest is its diff id, proven while it is uploaded; a
        // compressed one (some tools write them) has to be hashed here.
        let digest = if magic[..peeked] == [0x1f, 0x8b] {
            let (mut reader, _) = tarball
                .open(path)
                .map_err(io_err)?
                .ok_or_else(|| archive_err(format!("the layer {path} went away")))?;
            let mut hasher = sha2::Sha256::default();
            std::io::copy(&mut reader, &mut hasher).map_err(io_err)?;
            Digest::from_hasher(hasher)
        } else {
            Digest::parse(diff_id)?
        };
        blobs.insert(digest.clone(), Source::Entry(path.clone()));
        layers
            .push(serde_json::json!({"mediaType": LAYER, "size": size, "digest": digest.as_str()}));
    }
    // Key order and compact form as Go's encoding/json writes skopeo's manifest.
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_V2,
        "config": {"mediaType": CONFIG, "size": config.len(), "digest": config_digest.as_str()},
        "layers": layers,
    }))
    .map_err(|source| Error::Json {
        path: tarball.root().to_owned(),
        what: "the manifest built".into(),
        source,
    })?;
    let top = Descriptor {
        media_type: MANIFEST_V2.to_owned(),
        digest: Digest::of(&manifest),
        size: manifest.len() as u64,
    };
    blobs.insert(config_digest, Source::Memory(Arc::new(config)));
    blobs.insert(top.digest.clone(), Source::Memory(Arc::new(manifest)));
    Ok((Arc::new(Classic { tarball, blobs }), top, tag))
}

/// An archive with an OCI layout inside: the manifest to push is in its index.json,
/// named by the `io.containerd.image.name` annotation Docker writes.
fn open_oci(tarball: Tarball, select: &Select) -> Result<Opened, Error> {
    let index = oci::read_small(&tarball, "index.json", MAX_LIST_BYTES)?.unwrap_or_default();
    let index: oci_spec::image::ImageIndex =
        serde_json::from_slice(&index).map_err(|source| Error::Json {
            path: tarball.root().join("index.json"),
            what: "index.json".into(),
            source,
        })?;
    let annotation = |d: &oci_spec::image::Descriptor, key: &str| {
        d.annotations().as_ref().and_then(|a| a.get(key)).cloned()
    };
    // One entry per tag: the images are the distinct digests, in the index's order,
    // each with the names of all its entries.
    let mut images: Vec<(&oci_spec::image::Descriptor, Vec<String>)> = Vec::new();
    for entry in index.manifests() {
        let name = annotation(entry, CONTAINERD_NAME);
        match images
            .iter_mut()
            .find(|(d, _)| d.digest() == entry.digest())
        {
            Some((_, names)) => names.extend(name),
            None => images.push((entry, name.into_iter().collect())),
        }
    }
    let names: Vec<Vec<String>> = images.iter().map(|(_, n)| n.clone()).collect();
    let index = choose(&names, select).map_err(|reason| Error::Archive {
        path: tarball.root().to_owned(),
        kind: KIND,
        reason,
    })?;
    let chosen = images[index].0;
    let tag = tag_for(select, &names[index]).or_else(|| annotation(chosen, REF_NAME));
    let top = Descriptor::from_spec(chosen)?;
    Ok((oci::store(tarball), top, tag))
}

enum Source {
    Entry(String),
    Memory(Arc<Vec<u8>>),
}

/// A classic archive's blobs: the layers in the tar, the config and built manifest in
/// memory.
struct Classic {
    tarball: Tarball,
    blobs: HashMap<Digest, Source>,
}

impl Blobs for Classic {
    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + Send>, Error> {
        let missing = || Error::MissingBlob {
            path: self.tarball.root().to_owned(),
            digest: digest.clone(),
        };
        match self.blobs.get(digest).ok_or_else(missing)? {
            Source::Memory(bytes) => Ok(Box::new(std::io::Cursor::new(ArcBytes(bytes.clone())))),
            Source::Entry(path) => match self.tarball.open(path) {
                Ok(Some((reader, _))) => Ok(reader),
                Ok(None) => Err(missing()),
                Err(source) => Err(Error::Io {
                    path: self.tarball.root().join(path),
                    source,
                }),
            },
        }
    }
}

struct ArcBytes(Arc<Vec<u8>>);

impl AsRef<[u8]> for ArcBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// A Docker image name in full, as Docker compares them: `app` is
/// `docker.io/library/app:latest`, `ghcr.io/o/app:v1` stays as it is. `None` for
/// what is not `NAME[:TAG]` (a digest, an empty part, upper case).
pub(super) fn normalize(name: &str) -> Option<String> {
    if name.contains('@') || name.is_empty() {
        return None;
    }
    let (path, tag) = match name.rsplit_once(':') {
        Some((path, tag)) if !tag.contains('/') => (path, tag),
        _ => (name, "latest"),
    };
    let (domain, remainder) = match path.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
            (first, rest.to_owned())
        }
        Some(_) => ("docker.io", path.to_owned()),
        None => ("docker.io", format!("library/{path}")),
    };
    let domain = if domain == "index.docker.io" {
        "docker.io"
    } else {
        domain
    };
    let (host, port) = domain.split_once(':').unwrap_or((domain, "0"));
    let valid_domain = host.starts_with(|c: char| c.is_ascii_alphanumeric())
        && host.ends_with(|c: char| c.is_ascii_alphanumeric())
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-".contains(&b))
        && !port.is_empty()
        && port.bytes().all(|b| b.is_ascii_digit());
    let valid_path = remainder.split('/').all(|part| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
    });
    let valid_tag = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    (valid_domain && valid_path && valid_tag).then(|| format!("{domain}/{remainder}:{tag}"))
}

/// The tag of a normalised name.
fn tag_of(normalized: &str) -> Option<String> {
    normalized.rsplit_once(':').map(|(_, tag)| tag.to_owned())
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn names_are_compared_as_docker_compares_them() {
        let n = |s| normalize(s);
        assert_eq!(n("app").as_deref(), Some("docker.io/library/app:latest"));
        assert_eq!(n("app:v1").as_deref(), Some("docker.io/library/app:v1"));
        assert_eq!(n("org/app:v1").as_deref(), Some("docker.io/org/app:v1"));
        assert_eq!(n("index.docker.io/library/app:v1"), n("app:v1"));
        assert_eq!(n("localhost/app").as_deref(), Some("localhost/app:latest"));
        assert_eq!(
            n("localhost:5000/a/b:v2").as_deref(),
            Some("localhost:5000/a/b:v2")
        );
        assert_eq!(n("ghcr.io/o/app:1.0").as_deref(), Some("ghcr.io/o/app:1.0"));
        assert_eq!(n("App:v1"), None);
        assert_eq!(n("app@sha256:abc"), None);
        assert_eq!(n("app:"), None);
        assert_eq!(n("a//b"), None);
        assert_eq!(n("oci-archve:./build/image.tar"), None);
        assert_eq!(n("host:port/app"), None);
        assert_eq!(n("./build/image"), None);
    }
}
