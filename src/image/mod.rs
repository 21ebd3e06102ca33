//! The image model: what a push needs from a source, whatever the source is.
//!
//! An image is its top manifest's exact bytes (the digest is over those bytes, so they
//! are never re-serialised), for an index the child manifests it lists, every blob of
//! every manifest once, and a way to open each blob. Every source format is one adapter
//! in this folder that hands [`load`] a blob store and the top descriptor; the
//! destination side sees only this model. Blob and manifest bytes are read through
//! [`BlobReader`], which checks size and digest as it reads, so a corrupt blob stops the
//! push before any manifest is written.

mod compress;
mod docker_archive;
mod docker_daemon;
mod oci;
mod oci_archive;
mod registry;
mod tarball;

pub use crate::digest::Digest;
pub use compress::Compression;

use std::collections::HashSet;
use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest as _, Sha256};

/// ECR's PutImage refuses manifests over 4 MiB; so does the OCI distribution spec's
/// recommended limit, so nothing larger is worth reading into memory.
pub const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;

/// An index of indexes is legal and rare; deeper nesting is a mistake or an attack.
const MAX_INDEX_DEPTH: usize = 4;

/// buildx marks its provenance and SBOM manifests so, naming the image they describe.
const REFERENCE_TYPE: &str = "vnd.docker.reference.type";
const REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";

const INDEX_MEDIA_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// Every manifest type this tool pushes and reads back, image manifests first: what to
/// accept from a registry, so it answers with the manifest as stored, unconverted.
pub const MANIFEST_MEDIA_TYPES: [&str; 4] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    INDEX_MEDIA_TYPES[0],
    INDEX_MEDIA_TYPES[1],
];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// With a reason, the transport is known and the reason says what it takes; without
    /// one, every form is listed.
    #[error(
        "image: `{reference}` is not {}",
        match .reason {
            Some(reason) => format!("a valid image reference: {reason}"),
            None => "a supported image reference; use oci:DIR[:REF], oci-archive:FILE[:REF], docker-archive:FILE[:NAME:TAG], docker://HOST/REPO[:TAG] or NAME[:TAG] (an image in the Docker engine)".to_owned(),
        }
    )]
    Reference {
        reference: String,
        reason: Option<String>,
    },
    #[error("image: nothing is at {path}{}; check the path", .cwd.as_ref().map(|c| format!(" (relative to {c})")).unwrap_or_default())]
    Missing { path: String, cwd: Option<String> },
    #[error("image: `{given}` reads {wants}, and {path} is {found}; write {fix}")]
    WrongTransport {
        given: String,
        wants: &'static str,
        path: String,
        found: &'static str,
        fix: String,
    },
    #[error(
        "image: the {transport}: transport is not supported yet; export the image with docker save (docker-archive:FILE) or as an OCI layout (oci:DIR)"
    )]
    UnsupportedTransport { transport: String },
    #[error("image: {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "image: `{0}` is a path; write oci:{0} for an OCI layout folder, oci-archive:{0} or docker-archive:{0} for a tar, or docker-daemon:{0} for an image in the Docker engine"
    )]
    Path(String),
    #[error("compression: {0}")]
    Compression(String),
    #[error("image: {image}: {reason}")]
    Registry { image: String, reason: String },
    #[error("image: the Docker daemon at {host} {reason}")]
    Daemon { host: String, reason: String },
    #[error("image: the Docker daemon at {host} has no image {name}{}", listed(.close))]
    NotInDaemon {
        host: String,
        name: String,
        close: Vec<String>,
    },
    #[error("image: {path} is {size} bytes, more than the {limit} such a file may be")]
    TooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    #[error("image: {path} is not {kind}: {reason}")]
    Archive {
        path: PathBuf,
        kind: &'static str,
        reason: String,
    },
    #[error("image: {path} is not an OCI image layout: {reason}")]
    Layout { path: PathBuf, reason: String },
    #[error("image: {path}: {what} is not valid JSON: {source}")]
    Json {
        path: PathBuf,
        what: String,
        source: serde_json::Error,
    },
    #[error("image: {0}")]
    Digest(#[from] crate::digest::Invalid),
    #[error("image: blob {digest} is missing from {path}")]
    MissingBlob { path: PathBuf, digest: Digest },
    #[error("image: manifest {digest} is {size} bytes; ECR accepts at most {MAX_MANIFEST_BYTES}")]
    ManifestTooLarge { digest: Digest, size: u64 },
    #[error("image: index {digest} lists itself or an index above it")]
    IndexCycle { digest: Digest },
    #[error("image: indexes are nested more than {MAX_INDEX_DEPTH} deep under {digest}")]
    IndexTooDeep { digest: Digest },
    #[error(
        "platforms: {digest} is a single-platform manifest, not an index; leave platforms empty"
    )]
    NotAnIndex { digest: Digest },
    #[error("platforms: index {digest} has none of {wanted}; it has {available}")]
    NoPlatform {
        digest: Digest,
        wanted: String,
        available: String,
    },
    #[error("platforms: `{0}` is not OS/ARCH[/VARIANT], e.g. linux/amd64 or linux/arm64/v8")]
    Platform(String),
    #[error(
        "image: manifest {digest} declares media type {in_manifest} but its descriptor says {in_descriptor}"
    )]
    MediaTypeConflict {
        digest: Digest,
        in_manifest: String,
        in_descriptor: String,
    },
    #[error("image: manifest {digest} has no media type, neither in itself nor in its descriptor")]
    NoMediaType { digest: Digest },
    #[error("image: blob {digest} is corrupt: {reason}; nothing was tagged")]
    Corrupt { digest: Digest, reason: String },
    #[error("image: reading blob {digest}: {source}")]
    Read { digest: Digest, source: io::Error },
}

impl Error {
    pub(crate) fn reference(reference: &str, reason: Option<&str>) -> Self {
        Self::Reference {
            reference: reference.to_owned(),
            reason: reason.map(str::to_owned),
        }
    }

    /// Whether the inputs named the image wrongly (exit 2), rather than the image or
    /// where it is failing (exit 1): a reference that does not parse or names nothing,
    /// a path another transport reads, platforms or a compression the image cannot have.
    pub fn is_input(&self) -> bool {
        match self {
            Self::Reference { .. }
            | Self::WrongTransport { .. }
            | Self::Missing { .. }
            | Self::UnsupportedTransport { .. }
            | Self::Path(_)
            | Self::Compression(_)
            | Self::Platform(_)
            | Self::NotAnIndex { .. }
            | Self::NoPlatform { .. }
            | Self::NotInDaemon { .. } => true,
            Self::Io { source, .. } => source.kind() == io::ErrorKind::NotFound,
            _ => false,
        }
    }
}

fn listed(close: &[String]) -> String {
    if close.is_empty() {
        "; build or pull it first, or check the name".to_owned()
    } else {
        format!("; it has {}", close.join(", "))
    }
}

/// What a manifest says of one blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
}

impl Descriptor {
    fn from_spec(spec: &oci_spec::image::Descriptor) -> Result<Self, Error> {
        Ok(Self {
            media_type: spec.media_type().to_string(),
            digest: Digest::parse(spec.digest().as_ref())?,
            size: spec.size(),
        })
    }
}

/// A manifest exactly as the source holds it.
#[derive(Clone, Debug)]
pub struct Manifest {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub digest: Digest,
}

/// Where blob bytes come from; each source format implements it.
pub trait Blobs: Send + Sync {
    /// Opens the blob's bytes, unverified: callers read it through [`BlobReader`].
    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + Send>, Error>;

    /// Opens a manifest's bytes; only registries keep manifests apart from blobs.
    fn open_manifest(&self, descriptor: &Descriptor) -> Result<Box<dyn Read + Send>, Error> {
        self.open(&descriptor.digest)
    }
}

/// An image ready to push: the top manifest (what tags point at), for an index its
/// child manifests, every blob once, and the tag its reference named, if any.
pub struct Image {
    pub manifest: Manifest,
    /// For an index: the manifests it lists, each after those it lists itself, so
    /// pushing them in order never references a manifest not yet there.
    pub children: Vec<Manifest>,
    /// The digest the source had, when `platforms` rewrote the index.
    pub original_digest: Option<Digest>,
    pub tag: Option<String>,
    blobs: Vec<Descriptor>,
    store: Arc<dyn Blobs>,
}

/// The registry host of a `docker://` reference, for logins fetched before it is opened.
pub fn registry_host(reference: &str) -> Option<String> {
    let rest = reference.strip_prefix("docker:")?;
    registry::parse(rest).ok().map(|name| registry::host(&name))
}

impl Image {
    /// Opens an image from a reference in skopeo's transport syntax. `docker_host` is
    /// `DOCKER_HOST`, for daemon images; `login` gives the login for a registry host;
    /// `mask` hides a token a registry hands out before it is used.
    pub async fn open(
        reference: &str,
        platforms: &[Platform],
        docker_host: Option<&str>,
        login: impl Fn(&str) -> Option<crate::docker_config::Login>,
        mask: impl Fn(&str) + Send + Sync + 'static,
        compression: Compression,
    ) -> Result<Self, Error> {
        let platforms = platforms.to_vec();
        let looks_like_path = reference.starts_with(['.', '/']) || reference.contains('/');
        if !reference.contains(':') && looks_like_path && std::path::Path::new(reference).exists() {
            return Err(Error::Path(reference.to_owned()));
        }
        let opened = match docker_daemon::parse(reference) {
            _ if reference.starts_with("docker:") => {
                let name = registry::parse(&reference["docker:".len()..])?;
                let login = login(&registry::host(&name));
                Source::Opened(registry::open(name, login, mask).await?)
            }
            Some(daemon_ref) => {
                let spooled = docker_daemon::export(&daemon_ref?, docker_host).await?;
                Source::Daemon(spooled)
            }
            None => Source::Local(reference.to_owned()),
        };
        // Reading and indexing files blocks: off the reactor.
        tokio::task::spawn_blocking(move || {
            let (store, top, tag) = match opened {
                Source::Daemon(spooled) => spooled.open()?,
                Source::Opened(opened) => opened,
                Source::Local(reference) => Self::open_local(&reference)?,
            };
            let image = load(store, &top, tag, &platforms)?;
            let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
            compress::compress(image, compression, threads)
        })
        .await
        .map_err(|e| Error::Io {
            path: PathBuf::from(reference),
            source: io::Error::other(e),
        })?
    }

    fn open_local(reference: &str) -> Result<oci::Opened, Error> {
        let (transport, rest) = reference
            .split_once(':')
            .ok_or_else(|| Error::reference(reference, None))?;
        let wants = match transport {
            "oci" => "an OCI layout folder",
            "oci-archive" => "an OCI archive (a tar of an OCI layout)",
            "docker-archive" => "a docker save tar",
            "containers-storage" | "dir" => {
                return Err(Error::UnsupportedTransport {
                    transport: transport.to_owned(),
                });
            }
            _ => return Err(Error::reference(reference, None)),
        };
        let path = split_path_ref(rest).0;
        if path.is_empty() {
            return Err(Error::reference(
                reference,
                Some(&format!(
                    "it names no path; write {transport}:{}",
                    if transport == "oci" {
                        "DIR[:REF]"
                    } else {
                        "FILE"
                    }
                )),
            ));
        }
        if !Path::new(path).exists() {
            // A relative path is read from the working folder, which in a container action
            // is the workspace: say which.
            let cwd = Path::new(path)
                .is_relative()
                .then(|| std::env::current_dir().ok())
                .flatten()
                .map(|d| d.display().to_string());
            return Err(Error::Missing {
                path: path.to_owned(),
                cwd,
            });
        }
        let opened = match transport {
            "oci" => oci::open_dir(rest),
            "oci-archive" => oci_archive::open(rest),
            _ => docker_archive::open(rest),
        };
        match opened {
            // Not what the transport reads: say which one does, from what is there.
            Err(Error::Layout { .. } | Error::Archive { .. }) => {
                match sniff(Path::new(path)).filter(|(_, fits)| !fits.contains(&transport)) {
                    Some((found, fits)) => Err(Error::WrongTransport {
                        given: reference.to_owned(),
                        wants,
                        path: path.to_owned(),
                        found,
                        fix: fits
                            .iter()
                            .map(|t| format!("{t}:{rest}"))
                            .collect::<Vec<_>>()
                            .join(" or "),
                    }),
                    None => opened,
                }
            }
            other => other,
        }
    }

    /// Every blob of every manifest, each digest once: a blob listed twice is pushed once.
    pub fn blobs(&self) -> &[Descriptor] {
        &self.blobs
    }

    pub fn read_blob(&self, descriptor: &Descriptor) -> Result<BlobReader, Error> {
        Ok(BlobReader::new(
            self.store.open(&descriptor.digest)?,
            descriptor.clone(),
        ))
    }
}

enum Source {
    Opened(oci::Opened),
    Daemon(docker_daemon::Spooled),
    Local(String),
}

/// A platform as `platforms` names it: `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    os: String,
    architecture: String,
    variant: Option<String>,
}

impl Platform {
    pub fn parse(text: &str) -> Result<Self, Error> {
        let parts: Vec<&str> = text.split('/').collect();
        let valid =
            |p: &&str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        match parts.as_slice() {
            [os, arch] if [os, arch].iter().all(|p| valid(p)) => Ok(Self {
                os: (*os).to_owned(),
                architecture: (*arch).to_owned(),
                variant: None,
            }),
            [os, arch, variant] if [os, arch, variant].iter().all(|p| valid(p)) => Ok(Self {
                os: (*os).to_owned(),
                architecture: (*arch).to_owned(),
                variant: Some((*variant).to_owned()),
            }),
            _ => Err(Error::Platform(text.to_owned())),
        }
    }

    /// Whether an index entry's `platform` object is this one; a platform named without
    /// a variant takes any variant. An arm64 entry without a variant is v8, as
    /// containerd reads it (buildx writes linux/arm64 with none).
    fn matches(&self, platform: &serde_json::Value) -> bool {
        let field = |name: &str| platform.get(name).and_then(|v| v.as_str());
        let variant = match (field("architecture"), field("variant")) {
            (Some("arm64"), None) => Some("v8"),
            (_, variant) => variant,
        };
        field("os") == Some(self.os.as_str())
            && field("architecture") == Some(self.architecture.as_str())
            && (self.variant.is_none() || variant == self.variant.as_deref())
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

/// What is at `path`, and the transports that read it: a folder with `oci-layout` (oci:),
/// a tar with `oci-layout` and `index.json` (oci-archive:), a tar with `manifest.json`
/// (docker-archive:; `docker save` since Docker 25 writes both).
fn sniff(path: &Path) -> Option<(&'static str, Vec<&'static str>)> {
    if path.is_dir() {
        return path
            .join("oci-layout")
            .is_file()
            .then(|| ("a folder with an OCI layout", vec!["oci"]));
    }
    let tarball = tarball::Tarball::open(path, "a tar").ok()?;
    let layout = tarball.contains("oci-layout") && tarball.contains("index.json");
    match (layout, tarball.contains("manifest.json")) {
        (true, true) => Some((
            "a tar with an OCI layout and a manifest.json (docker save)",
            vec!["oci-archive", "docker-archive"],
        )),
        (true, false) => Some((
            "an OCI archive (a tar of an OCI layout)",
            vec!["oci-archive"],
        )),
        (false, true) => Some(("a docker save tar (manifest.json)", vec!["docker-archive"])),
        (false, false) => None,
    }
}

/// Splits `PATH[:REF]` the way skopeo does for oci: and oci-archive: (first colon).
fn split_path_ref(rest: &str) -> (&str, Option<&str>) {
    match rest.split_once(':') {
        Some((path, reference)) if !reference.is_empty() => (path, Some(reference)),
        Some((path, _)) => (path, None),
        None => (rest, None),
    }
}

/// Builds an [`Image`] from a blob store and the descriptor of its top manifest: reads
/// and verifies every manifest below it, and gathers their blobs.
pub(crate) fn load(
    store: Arc<dyn Blobs>,
    top: &Descriptor,
    tag: Option<String>,
    platforms: &[Platform],
) -> Result<Image, Error> {
    let mut manifest = read_manifest(&*store, top)?;
    let mut original_digest = None;
    if !platforms.is_empty() {
        if !is_index(&manifest.media_type) {
            return Err(Error::NotAnIndex {
                digest: manifest.digest,
            });
        }
        if let Some(bytes) = keep_platforms(&manifest, platforms)? {
            original_digest = Some(manifest.digest);
            manifest = Manifest {
                digest: Digest::of(&bytes),
                bytes,
                media_type: manifest.media_type,
            };
        }
    }
    let mut walk = Walk {
        store: &*store,
        children: Vec::new(),
        blobs: Vec::new(),
        seen: HashSet::new(),
    };
    walk.manifest(&manifest, &mut vec![manifest.digest.clone()])?;
    Ok(Image {
        children: walk.children,
        blobs: walk.blobs,
        manifest,
        original_digest,
        tag,
        store,
    })
}

fn is_index(media_type: &str) -> bool {
    INDEX_MEDIA_TYPES.contains(&media_type)
}

/// Reads one manifest whole, verified against its descriptor, with its media type from
/// itself or, where it has none (umoci writes it so), from the descriptor.
fn read_manifest(store: &dyn Blobs, descriptor: &Descriptor) -> Result<Manifest, Error> {
    if descriptor.size > MAX_MANIFEST_BYTES {
        return Err(Error::ManifestTooLarge {
            digest: descriptor.digest.clone(),
            size: descriptor.size,
        });
    }
    let mut reader = BlobReader::new(store.open_manifest(descriptor)?, descriptor.clone());
    let bytes = reader.read_part(descriptor.size as usize)?;
    #[derive(serde::Deserialize)]
    struct MediaTypeOnly {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
    }
    strict_json(&bytes).map_err(|source| Error::Json {
        path: PathBuf::from(descriptor.digest.as_str()),
        what: "the manifest".into(),
        source,
    })?;
    let declared = serde_json::from_slice::<MediaTypeOnly>(&bytes)
        .map_err(|source| Error::Json {
            path: PathBuf::from(descriptor.digest.as_str()),
            what: "the manifest".into(),
            source,
        })?
        .media_type;
    let media_type = match declared {
        Some(in_manifest)
            if !descriptor.media_type.is_empty() && in_manifest != descriptor.media_type =>
        {
            return Err(Error::MediaTypeConflict {
                digest: descriptor.digest.clone(),
                in_manifest,
                in_descriptor: descriptor.media_type.clone(),
            });
        }
        Some(in_manifest) => in_manifest,
        None if !descriptor.media_type.is_empty() => descriptor.media_type.clone(),
        None => {
            return Err(Error::NoMediaType {
                digest: descriptor.digest.clone(),
            });
        }
    };
    Ok(Manifest {
        bytes,
        media_type,
        digest: descriptor.digest.clone(),
    })
}

/// Every parse a reference goes through before any file or network is touched: the
/// transport, a daemon name, a registry reference, a path and its REF, a platform.
#[doc(hidden)]
pub fn parse_reference(reference: &str) {
    let _ = docker_daemon::parse(reference);
    if let Some(rest) = reference.strip_prefix("docker:") {
        let _ = registry::parse(rest);
    }
    if let Some((_, rest)) = reference.split_once(':') {
        let _ = split_path_ref(rest);
    }
    let _ = Platform::parse(reference);
    let _ = Digest::parse(reference);
}

/// Opens and walks a local image (`oci:`, `oci-archive:`, `docker-archive:`) as a push
/// does before its first network call.
#[doc(hidden)]
pub fn open_local(reference: &str) -> Result<Image, Error> {
    let (store, top, tag) = Image::open_local(reference)?;
    load(store, &top, tag, &[])
}

/// Reads `top` from these blobs and walks everything it lists, as a push does.
#[doc(hidden)]
pub fn load_from_memory(
    blobs: std::collections::HashMap<Digest, Vec<u8>>,
    top: &[u8],
    media_type: &str,
) -> Result<Image, Error> {
    struct Memory(std::collections::HashMap<Digest, Vec<u8>>);
    impl Blobs for Memory {
        fn open(&self, digest: &Digest) -> Result<Box<dyn Read + Send>, Error> {
            match self.0.get(digest) {
                Some(bytes) => Ok(Box::new(io::Cursor::new(bytes.clone()))),
                None => Err(Error::Io {
                    path: PathBuf::from(digest.as_str()),
                    source: io::Error::from(io::ErrorKind::NotFound),
                }),
            }
        }
    }
    let descriptor = Descriptor {
        media_type: media_type.to_owned(),
        digest: Digest::of(top),
        size: top.len() as u64,
    };
    let mut blobs = blobs;
    blobs.insert(descriptor.digest.clone(), top.to_vec());
    load(Arc::new(Memory(blobs)), &descriptor, None, &[])
}

/// Where spooled files go (daemon exports, compressed layers): `$RUNNER_TEMP`, which
/// the runner empties after each job, when it is a folder here (in a container action
/// it names the host's folder, which is not mounted), else the system's temp folder.
pub fn spool_dir() -> PathBuf {
    std::env::var_os("RUNNER_TEMP")
        .map(PathBuf::from)
        .filter(|dir| dir.is_dir())
        .unwrap_or_else(std::env::temp_dir)
}

/// How deep a manifest may nest: an index of manifests with annotations is 4 levels.
const MAX_JSON_DEPTH: usize = 32;

/// Refuses JSON that parsers may read differently: an object with a key twice (one
/// parser takes the first, another the last, and they see two different images), or
/// nesting deeper than [`MAX_JSON_DEPTH`] (a stack exhausted elsewhere, or here).
fn strict_json(bytes: &[u8]) -> Result<(), serde_json::Error> {
    use serde::de::{DeserializeSeed, Error as _, MapAccess, SeqAccess, Visitor};

    #[derive(Clone, Copy)]
    struct Strict(usize);

    impl Strict {
        /// The seed for what this array or object holds, if it may nest one deeper.
        fn inner<E: serde::de::Error>(&self) -> Result<Strict, E> {
            if self.0 >= MAX_JSON_DEPTH {
                return Err(E::custom(format!(
                    "it nests deeper than {MAX_JSON_DEPTH} levels"
                )));
            }
            Ok(Strict(self.0 + 1))
        }
    }

    impl<'de> DeserializeSeed<'de> for Strict {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Strict {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let inner = self.inner()?;
            while seq.next_element_seed(inner)?.is_some() {}
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let inner = self.inner()?;
            let mut keys = HashSet::new();
            while let Some(key) = map.next_key::<String>()? {
                if !keys.insert(key.clone()) {
                    return Err(A::Error::custom(format!(
                        "the key `{key}` appears twice in one object"
                    )));
                }
                map.next_value_seed(inner)?;
            }
            Ok(())
        }
    }

    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    Strict(0).deserialize(&mut deserializer)?;
    deserializer.end()
}

/// The walk down from the top manifest.
struct Walk<'a> {
    store: &'a dyn Blobs,
    children: Vec<Manifest>,
    blobs: Vec<Descriptor>,
    seen: HashSet<Digest>,
}

impl Walk<'_> {
    /// `path`: the digests from the top down to this manifest, to refuse cycles.
    fn manifest(&mut self, manifest: &Manifest, path: &mut Vec<Digest>) -> Result<(), Error> {
        let json_err = |source| Error::Json {
            path: PathBuf::from(manifest.digest.as_str()),
            what: "the manifest".into(),
            source,
        };
        if !is_index(&manifest.media_type) {
            let parsed: oci_spec::image::ImageManifest =
                serde_json::from_slice(&manifest.bytes).map_err(json_err)?;
            for spec in std::iter::once(parsed.config()).chain(parsed.layers()) {
                let descriptor = Descriptor::from_spec(spec)?;
                if self.seen.insert(descriptor.digest.clone()) {
                    self.blobs.push(descriptor);
                }
            }
            return Ok(());
        }
        if path.len() > MAX_INDEX_DEPTH {
            return Err(Error::IndexTooDeep {
                digest: manifest.digest.clone(),
            });
        }
        let index: oci_spec::image::ImageIndex =
            serde_json::from_slice(&manifest.bytes).map_err(json_err)?;
        for spec in index.manifests() {
            let descriptor = Descriptor::from_spec(spec)?;
            if path.contains(&descriptor.digest) {
                return Err(Error::IndexCycle {
                    digest: descriptor.digest,
                });
            }
            if self.children.iter().any(|c| c.digest == descriptor.digest) {
                continue;
            }
            let child = read_manifest(self.store, &descriptor)?;
            path.push(child.digest.clone());
            self.manifest(&child, path)?;
            path.pop();
            self.children.push(child);
        }
        Ok(())
    }
}

/// A new index with only the entries for `platforms`, and the attestation manifests
/// that describe them. Everything else in the index is kept as it was. `None` when the
/// platforms asked for are all the index has.
fn keep_platforms(index: &Manifest, platforms: &[Platform]) -> Result<Option<Vec<u8>>, Error> {
    let json_err = |source| Error::Json {
        path: PathBuf::from(index.digest.as_str()),
        what: "the index".into(),
        source,
    };
    let mut value: serde_json::Value = serde_json::from_slice(&index.bytes).map_err(json_err)?;
    let entries = value
        .get("manifests")
        .and_then(|m| m.as_array())
        .cloned()
        .unwrap_or_default();
    let annotation = |entry: &serde_json::Value, key: &str| {
        entry
            .get("annotations")
            .and_then(|a| a.get(key))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    let kept_images: Vec<String> = entries
        .iter()
        .filter(|e| annotation(e, REFERENCE_TYPE).is_none())
        .filter(|e| {
            e.get("platform")
                .is_some_and(|p| platforms.iter().any(|wanted| wanted.matches(p)))
        })
        .filter_map(|e| e.get("digest").and_then(|d| d.as_str()).map(str::to_owned))
        .collect();
    if kept_images.is_empty() {
        let available: Vec<String> = entries
            .iter()
            .filter_map(|e| e.get("platform"))
            .map(|p| {
                let field = |n: &str| p.get(n).and_then(|v| v.as_str()).unwrap_or("?");
                match p.get("variant").and_then(|v| v.as_str()) {
                    Some(v) => format!("{}/{}/{v}", field("os"), field("architecture")),
                    None => format!("{}/{}", field("os"), field("architecture")),
                }
            })
            .filter(|p| p != "unknown/unknown")
            .collect();
        return Err(Error::NoPlatform {
            digest: index.digest.clone(),
            wanted: platforms
                .iter()
                .map(Platform::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            available: available.join(", "),
        });
    }
    let count = entries.len();
    let kept: Vec<serde_json::Value> = entries
        .into_iter()
        .filter(|e| {
            let digest = e.get("digest").and_then(|d| d.as_str()).unwrap_or_default();
            kept_images.iter().any(|k| k == digest)
                || annotation(e, REFERENCE_DIGEST).is_some_and(|d| kept_images.contains(&d))
        })
        .collect();
    // Every entry kept: the index is the source's, bytes and digest.
    if kept.len() == count {
        return Ok(None);
    }
    if let Some(object) = value.as_object_mut() {
        object.insert("manifests".into(), serde_json::Value::Array(kept));
    }
    serde_json::to_vec(&value).map(Some).map_err(json_err)
}

/// Reads a blob part by part, hashing as it goes; the part that ends the blob is only
/// returned once the size and digest are proven, so a destination never completes an
/// upload of bytes that are not the blob.
pub struct BlobReader {
    inner: Box<dyn Read + Send>,
    descriptor: Descriptor,
    hasher: Sha256,
    read: u64,
}

impl BlobReader {
    pub(crate) fn new(inner: Box<dyn Read + Send>, descriptor: Descriptor) -> Self {
        Self {
            inner,
            descriptor,
            hasher: Sha256::new(),
            read: 0,
        }
    }

    pub fn descriptor(&self) -> &Descriptor {
        &self.descriptor
    }

    pub fn remaining(&self) -> u64 {
        self.descriptor.size - self.read
    }

    /// Reads the next part of at most `max` bytes. Blocking: call it off the reactor.
    pub fn read_part(&mut self, max: usize) -> Result<Vec<u8>, Error> {
        let mut part = vec![0; self.remaining().min(max as u64) as usize];
        self.fill(&mut part)?;
        self.consume(&part)?;
        Ok(part)
    }

    /// Reads the next part of at most `max` bytes through `piece`, handing `sink` each
    /// piece once hashed (while it is still in the CPU's cache), and returns the part's
    /// length. Every piece but the part's last fills `piece`, so a sink that encodes in
    /// blocks (base64's 3 bytes) sees whole blocks. What the sink made is to be used only
    /// if this returns `Ok`. Blocking: call it off the reactor.
    pub fn read_part_through(
        &mut self,
        max: usize,
        piece: &mut [u8],
        mut sink: impl FnMut(&[u8]),
    ) -> Result<usize, Error> {
        let want = self.remaining().min(max as u64) as usize;
        let mut done = 0;
        while done < want {
            let len = (want - done).min(piece.len());
            let piece = &mut piece[..len];
            self.fill(piece)?;
            self.consume(piece)?;
            sink(piece);
            done += piece.len();
        }
        Ok(want)
    }

    /// Fills `buf` from the blob, which must hold that many more bytes.
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), Error> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.inner.read(&mut buf[filled..]) {
                Ok(0) => {
                    return Err(self.corrupt(format!(
                        "it ends after {} bytes where the descriptor says {}",
                        self.read + filled as u64,
                        self.descriptor.size
                    )));
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(Error::Read {
                        digest: self.descriptor.digest.clone(),
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    /// Hashes and counts bytes just filled; at the blob's end, proves size and digest.
    fn consume(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.hasher.update(bytes);
        self.read += bytes.len() as u64;
        if self.remaining() == 0 {
            self.finish()?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), Error> {
        let mut extra = [0u8; 1];
        let more = loop {
            match self.inner.read(&mut extra) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => break other,
            }
        };
        match more {
            Ok(0) => {}
            Ok(_) => {
                return Err(self.corrupt(format!(
                    "it is longer than the {} bytes its descriptor says",
                    self.descriptor.size
                )));
            }
            Err(source) => {
                return Err(Error::Read {
                    digest: self.descriptor.digest.clone(),
                    source,
                });
            }
        }
        let actual = Digest::from_hasher(std::mem::take(&mut self.hasher));
        if actual != self.descriptor.digest {
            return Err(self.corrupt(format!("its bytes hash to {actual}")));
        }
        Ok(())
    }

    fn corrupt(&self, reason: String) -> Error {
        Error::Corrupt {
            digest: self.descriptor.digest.clone(),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arm64_without_a_variant_is_v8() {
        let buildx = serde_json::json!({"os": "linux", "architecture": "arm64"});
        let v7 = serde_json::json!({"os": "linux", "architecture": "arm", "variant": "v7"});
        let wanted = |p: &str| Platform::parse(p).unwrap();
        assert!(wanted("linux/arm64/v8").matches(&buildx));
        assert!(wanted("linux/arm64").matches(&buildx));
        assert!(!wanted("linux/arm64/v9").matches(&buildx));
        assert!(wanted("linux/arm").matches(&v7));
        assert!(!wanted("linux/arm/v6").matches(&v7));
        assert!(!wanted("linux/amd64").matches(&buildx));
    }

    fn reader(bytes: &'static [u8], descriptor: Descriptor) -> BlobReader {
        BlobReader::new(Box::new(bytes), descriptor)
    }

    fn descriptor_of(bytes: &[u8]) -> Descriptor {
        Descriptor {
            media_type: "application/octet-stream".into(),
            digest: Digest::of(bytes),
            size: bytes.len() as u64,
        }
    }

    #[test]
    fn manifests_with_a_key_twice_or_deep_nesting_are_refused() {
        assert!(strict_json(br#"{"a":[1,{"b":null}],"c":"d"}"#).is_ok());
        let twice = strict_json(br#"{"a":{"b":1,"b":2}}"#).unwrap_err();
        assert!(twice.to_string().contains("`b` appears twice"), "{twice}");
        let deep = format!("{}{}", "[".repeat(33), "]".repeat(33));
        let error = strict_json(deep.as_bytes()).unwrap_err();
        assert!(error.to_string().contains("deeper than 32"), "{error}");
        let fine = format!("{}{}", "[".repeat(32), "]".repeat(32));
        assert!(strict_json(fine.as_bytes()).is_ok());
        assert!(strict_json(b"{} trailing").is_err());
    }

    #[test]
    fn reader_returns_parts_and_verifies_the_last() {
        let bytes: &'static [u8] = b"hello, world";
        let mut r = reader(bytes, descriptor_of(bytes));
        assert_eq!(r.read_part(5).unwrap(), b"hello");
        assert_eq!(r.read_part(5).unwrap(), b", wor");
        assert_eq!(r.read_part(5).unwrap(), b"ld");
        assert_eq!(r.remaining(), 0);
    }

    #[test]
    fn reader_hands_full_pieces_but_the_last() {
        let bytes: &'static [u8] = b"hello, world";
        let mut r = reader(bytes, descriptor_of(bytes));
        let mut pieces = Vec::new();
        let mut piece = [0; 3];
        let n = r
            .read_part_through(8, &mut piece, |p| pieces.push(p.to_vec()))
            .unwrap();
        assert_eq!((n, pieces.concat()), (8, b"hello, w".to_vec()));
        assert_eq!(pieces.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 2]);
        pieces.clear();
        assert_eq!(
            r.read_part_through(8, &mut piece, |p| pieces.push(p.to_vec()))
                .unwrap(),
            4
        );
        assert_eq!(pieces.concat(), b"orld");
        assert_eq!(r.remaining(), 0);
    }

    #[test]
    fn reader_rejects_wrong_bytes_on_the_last_part() {
        let mut d = descriptor_of(b"hello");
        d.digest = Digest::of(b"HELLO");
        let mut r = reader(b"hello", d);
        let err = r.read_part(10).unwrap_err().to_string();
        assert!(err.contains("corrupt") && err.contains("hash to"), "{err}");
    }

    #[test]
    fn reader_rejects_short_and_long_blobs() {
        let mut d = descriptor_of(b"hello");
        d.size = 6;
        let err = reader(b"hello", d).read_part(10).unwrap_err().to_string();
        assert!(err.contains("ends after 5 bytes"), "{err}");
        let mut d = descriptor_of(b"hell");
        d.size = 4;
        let err = reader(b"hello", d).read_part(10).unwrap_err().to_string();
        assert!(err.contains("longer than the 4 bytes"), "{err}");
    }

    #[test]
    fn split_path_ref_uses_the_first_colon() {
        assert_eq!(split_path_ref("dir"), ("dir", None));
        assert_eq!(split_path_ref("dir:v1"), ("dir", Some("v1")));
        assert_eq!(split_path_ref("dir:"), ("dir", None));
        assert_eq!(split_path_ref("dir:a:b"), ("dir", Some("a:b")));
    }
}
