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
mod platform;
mod reader;
mod reference;
mod referrers;
mod registry;
mod spool;
mod tarball;
mod walk;

pub use crate::digest::Digest;
pub use compress::Compression;
pub use platform::Platform;
pub use reader::BlobReader;
pub use referrers::{Attestations, Referrer, Referrers, referrer_descriptor, subject_of};
pub(crate) use walk::load;

use reference::Reference;

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
    #[error(
        "referrers: required, and {referrer} refers to {subject}, which {why} rewrote, so it would hold for nothing pushed; nothing was sent. Push the image as the source has it (without {why}), or set referrers: true to push it without this referrer"
    )]
    OrphanedReferrer {
        referrer: String,
        subject: Digest,
        why: String,
    },
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
    /// a path another transport reads, platforms or a compression the image cannot have,
    /// required referrers that a rewrite the inputs ask for would leave behind.
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
            | Self::OrphanedReferrer { .. }
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

/// A manifest a source holds that refers to another: an OCI 1.1 referrer (its
/// `subject` names the other), or an artifact of cosign's tag scheme, kept under `tag`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub descriptor: Descriptor,
    pub tag: Option<String>,
}

/// Where blob bytes come from; each source format implements it.
pub trait Blobs: Send + Sync {
    /// Opens the blob's bytes, unverified: callers read it through [`BlobReader`].
    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + Send>, Error>;

    /// Opens a manifest's bytes; only registries keep manifests apart from blobs.
    fn open_manifest(&self, descriptor: &Descriptor) -> Result<Box<dyn Read + Send>, Error> {
        self.open(&descriptor.digest)
    }

    /// The manifests that refer to `subject`, unverified: the walk reads each and keeps
    /// it only if it does. Sources that cannot hold any (archives of `docker save`, the
    /// engine) have none.
    fn referrers(&self, _subject: &Descriptor) -> Result<Vec<Found>, Error> {
        Ok(Vec::new())
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
    /// What refers to the image's manifests (signatures, SBOMs, attestations), each
    /// after its subject, pushed after the image and before its tags.
    pub referrers: Vec<Referrer>,
    /// BuildKit attestation manifests taken out of the index (`attestations`).
    pub attestations_taken: usize,
    blobs: Vec<Descriptor>,
    store: Arc<dyn Blobs>,
}

/// The registry host of a `docker://` reference, for logins fetched before it is opened.
pub fn registry_host(reference: &str) -> Option<String> {
    match Reference::parse(reference) {
        Ok(Reference::Registry(name)) => Some(name.registry),
        _ => None,
    }
}

/// What of the source goes: the platforms of an index (all when empty), whether the
/// manifests that refer to the image go along, and what becomes of BuildKit's
/// attestation manifests.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    pub platforms: Vec<Platform>,
    pub referrers: Referrers,
    pub attestations: Attestations,
}

impl Image {
    /// Opens an image from a reference in skopeo's transport syntax. `docker_host` is
    /// `DOCKER_HOST`, for daemon images; `login` gives the login for a registry host;
    /// `mask` hides a token a registry hands out before it is used.
    pub async fn open(
        reference: &str,
        scope: &Scope,
        docker_host: Option<&str>,
        login: impl Fn(&str) -> Option<crate::docker_config::Login>,
        mask: impl Fn(&str) + Send + Sync + 'static,
        compression: Compression,
    ) -> Result<Self, Error> {
        let scope = scope.clone();
        let looks_like_path = reference.starts_with(['.', '/']) || reference.contains('/');
        if !reference.contains(':') && looks_like_path && std::path::Path::new(reference).exists() {
            return Err(Error::Path(reference.to_owned()));
        }
        let opened = match Reference::parse(reference)? {
            Reference::Registry(name) => {
                let login = login(&name.registry);
                Source::Opened(registry::open(name, login, mask).await?)
            }
            Reference::Daemon(image) => {
                Source::Daemon(docker_daemon::export(&image, docker_host).await?)
            }
            local => Source::Local(local),
        };
        let text = reference.to_owned();
        // Reading and indexing files blocks: off the reactor.
        tokio::task::spawn_blocking(move || {
            let (store, top, tag) = match opened {
                Source::Daemon(spooled) => spooled.open()?,
                Source::Opened(opened) => opened,
                Source::Local(local) => Self::open_local(&text, local)?,
            };
            let image = load(store, &top, tag, &scope)?;
            let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
            let image = compress::compress(image, compression, threads)?;
            image.without_orphaned_referrers(scope.referrers)
        })
        .await
        .map_err(|e| Error::Io {
            path: PathBuf::from(reference),
            source: io::Error::other(e),
        })?
    }

    /// Opens a file or folder `text` names, parsed as `reference`; checks that it is
    /// there first, and when it is not what its transport reads, says which one does.
    fn open_local(text: &str, reference: Reference) -> Result<oci::Opened, Error> {
        let (transport, wants, path, opened) = match &reference {
            Reference::OciLayout { path, reference } => {
                present(path)?;
                let opened = oci::open_dir(path, reference.as_deref());
                ("oci", "an OCI layout folder", path, opened)
            }
            Reference::OciArchive { path, reference } => {
                present(path)?;
                let opened = oci_archive::open(path, reference.as_deref());
                let wants = "an OCI archive (a tar of an OCI layout)";
                ("oci-archive", wants, path, opened)
            }
            Reference::DockerArchive { path, select } => {
                present(path)?;
                let select = select
                    .as_ref()
                    .map_err(|reason| Error::reference(text, Some(reason)))?;
                let opened = docker_archive::open(path, select);
                ("docker-archive", "a docker save tar", path, opened)
            }
            Reference::Registry(_) | Reference::Daemon(_) => {
                return Err(Error::reference(text, None));
            }
        };
        match opened {
            // Not what the transport reads: say which one does, from what is there.
            Err(Error::Layout { .. } | Error::Archive { .. }) => {
                match sniff(path).filter(|(_, fits)| !fits.contains(&transport)) {
                    Some((found, fits)) => {
                        // What the user wrote after the transport, kept as written.
                        let rest = text
                            .strip_prefix(transport)
                            .and_then(|rest| rest.strip_prefix(':'))
                            .unwrap_or(text);
                        Err(Error::WrongTransport {
                            given: text.to_owned(),
                            wants,
                            path: path.display().to_string(),
                            found,
                            fix: fits
                                .iter()
                                .map(|t| format!("{t}:{rest}"))
                                .collect::<Vec<_>>()
                                .join(" or "),
                        })
                    }
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

    /// The same image, its blobs fetched from the source once however many
    /// destinations read them (see `spool.rs`): for a remote source pushed to several
    /// targets.
    pub fn fetch_once(self) -> Result<Self, Error> {
        Ok(Self {
            store: Arc::new(spool::Spool::new(self.store)?),
            ..self
        })
    }

    /// Referrers whose subject is no longer pushed (compression gave it a new digest)
    /// are left out, with one warning, and their blobs with them unless a manifest
    /// pushed lists them too: they would refer to nothing, and a signature over the old
    /// digest does not hold for the new one. With `referrers: required` the first is an
    /// error instead, before anything is sent.
    fn without_orphaned_referrers(mut self, wanted: Referrers) -> Result<Self, Error> {
        let mut pushed: std::collections::HashSet<Digest> = self
            .children
            .iter()
            .chain([&self.manifest])
            .map(|m| m.digest.clone())
            .collect();
        let mut orphans = Vec::new();
        let mut kept = Vec::new();
        for referrer in std::mem::take(&mut self.referrers) {
            if pushed.contains(&referrer.subject.digest) {
                pushed.insert(referrer.manifest.digest.clone());
                kept.push(referrer);
            } else {
                orphans.push(referrer);
            }
        }
        self.referrers = kept;
        let Some(first) = orphans.first() else {
            return Ok(self);
        };
        if wanted == Referrers::Required {
            return Err(Error::OrphanedReferrer {
                referrer: referrers::named(&first.manifest, first.tag.as_deref()),
                subject: first.subject.digest.clone(),
                why: "compression".into(),
            });
        }
        let left_out: Vec<String> = orphans
            .iter()
            .map(|r| format!("{} {}", r.artifact_type, r.manifest.digest.short()))
            .collect();
        tracing::warn!(
            "referrers: {} left out: they refer to manifests this push's compression rewrote, so they would hold for nothing pushed",
            left_out.join(", ")
        );
        let blobs_of = |referrers: &[Referrer]| {
            referrers
                .iter()
                .flat_map(|r| r.children.iter().chain([&r.manifest]))
                .flat_map(|m| blob_digests(&m.bytes))
                .collect::<std::collections::HashSet<Digest>>()
        };
        let orphaned = blobs_of(&orphans);
        let mut used = blobs_of(&self.referrers);
        used.extend(
            self.children
                .iter()
                .chain([&self.manifest])
                .flat_map(|m| blob_digests(&m.bytes)),
        );
        self.blobs
            .retain(|b| !orphaned.contains(&b.digest) || used.contains(&b.digest));
        Ok(self)
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
    Local(Reference),
}

/// Fails with [`Error::Missing`] when nothing is at `path`.
fn present(path: &Path) -> Result<(), Error> {
    if path.exists() {
        return Ok(());
    }
    // A relative path is read from the working folder, which in a container action is
    // the workspace: say which.
    let cwd = path
        .is_relative()
        .then(|| std::env::current_dir().ok())
        .flatten()
        .map(|d| d.display().to_string());
    Err(Error::Missing {
        path: path.display().to_string(),
        cwd,
    })
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

/// The blobs an image manifest lists (its config and layers); none for an index.
fn blob_digests(manifest: &[u8]) -> Vec<Digest> {
    let value: serde_json::Value = serde_json::from_slice(manifest).unwrap_or_default();
    let config = value.get("config").into_iter();
    let layers = value
        .get("layers")
        .and_then(|l| l.as_array())
        .into_iter()
        .flatten();
    config
        .chain(layers)
        .filter_map(|d| d.get("digest")?.as_str())
        .filter_map(|d| Digest::parse(d).ok())
        .collect()
}

pub fn is_index(media_type: &str) -> bool {
    INDEX_MEDIA_TYPES.contains(&media_type)
}

/// Every parse a reference goes through before any file or network is touched: the
/// transport, a daemon name, a registry reference, a path and its REF, a platform.
#[doc(hidden)]
pub fn parse_reference(reference: &str) {
    let _ = Reference::parse(reference);
    let _ = Platform::parse(reference);
    let _ = Digest::parse(reference);
}

/// Opens and walks a local image (`oci:`, `oci-archive:`, `docker-archive:`) as a push
/// does before its first network call.
#[doc(hidden)]
pub fn open_local(reference: &str) -> Result<Image, Error> {
    let (store, top, tag) = Image::open_local(reference, Reference::parse(reference)?)?;
    load(store, &top, tag, &Scope::default())
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
    load(
        Arc::new(Memory(blobs)),
        &descriptor,
        None,
        &Scope::default(),
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_archive_is_named_before_what_picks_its_image() {
        let missing = open_local("docker-archive:no/such.tar:@x").err();
        assert!(
            matches!(missing, Some(Error::Missing { .. })),
            "{missing:?}"
        );
        let file = tempfile::NamedTempFile::new().expect("a temp file");
        let text = format!("docker-archive:{}:@x", file.path().display());
        assert_eq!(
            open_local(&text).err().map(|e| e.to_string()),
            Some(format!(
                "image: `{text}` is not a valid image reference: @N takes a number"
            ))
        );
    }
}
