//! Pushing an [`Image`] to a destination: find the blobs it lacks, upload those (several
//! at once, largest first so the longest upload starts early, with small blobs in a
//! lane of their own beside them), then point each tag at
//! the manifest. Tags are written only after every blob is in place and verified, so a
//! failure at any step leaves no tag on a broken image.
//!
//! A destination is three operations behind [`Destination`]: ECR's own layer-upload API
//! (`ecr`), or any OCI registry's distribution API (`registry`). The flow here knows nothing of where the image came from.

mod ecr;
mod pace;
mod referrers;
mod registry;

use std::collections::HashSet;
use std::time::Instant;

use futures_util::stream::{self, StreamExt, TryStreamExt};

pub use ecr::{Ecr, Environment as EcrEnvironment, source_login as ecr_source_login};
pub use referrers::{held_referrer_tags, referrer_tag_conflicts};
pub use registry::Registry;

use referrers::{image_tags_free, put_referrers, tag_referrers};

use crate::http::retry;
use crate::image::{self, BlobReader, Descriptor, Digest, Image, Manifest, Referrers};
use crate::progress::Sent;
use crate::report::Report;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("ECR {call} failed for {target}: {reason}{hint}")]
    Api {
        call: &'static str,
        target: String,
        reason: String,
        hint: String,
    },
    #[error("registry {host}: {reason}")]
    Registry { host: String, reason: String },
    /// A blob's streamed upload cut off, or answered 429 or 5xx: the bytes are spent,
    /// and the blob may be sent again from its start.
    #[error("registry {host}: {reason}")]
    Interrupted { host: String, reason: String },
    #[error(transparent)]
    Image(#[from] image::Error),
    #[error(
        "ECR PutImage: tag `{tag}` of immutable repository {repository} already points at {existing}, not at {digest}; push under a new tag"
    )]
    TagImmutable {
        tag: String,
        repository: String,
        existing: String,
        digest: Digest,
    },
    #[error(
        "ECR {call}: ECR computed {actual} where {expected} was sent; the bytes changed on the way, nothing was tagged"
    )]
    DigestMismatch {
        call: &'static str,
        expected: Digest,
        actual: String,
    },
    #[error("image: blob {0} is empty, and ECR's layer-upload API cannot store a 0-byte blob")]
    EmptyBlob(Digest),
    #[error(
        "image: blob {digest} declares {size} bytes; ECR's layer-upload API takes at most {limit} (4,200 parts of 20 MiB)"
    )]
    BlobTooLarge {
        digest: Digest,
        size: u64,
        limit: u64,
    },
    #[error("{source} (tags already set on {digest}: {set})")]
    PartlyTagged {
        source: Box<Error>,
        digest: Digest,
        set: String,
    },
    #[error(
        "referrers: {artifact_type} {digest} (referring to {subject}) was not stored: {source}; no tag was written. With referrers: true the image is pushed without it"
    )]
    Referrer {
        artifact_type: String,
        digest: Digest,
        subject: Digest,
        source: Box<Error>,
    },
    #[error(
        "referrers: the tag {tag} of {artifact_type} {digest} could not be written: {source}; no tag of the image was written here. With referrers: true the image is tagged without it"
    )]
    ReferrerTag {
        tag: String,
        artifact_type: String,
        digest: Digest,
        source: Box<Error>,
    },
    #[error(
        "referrers: required, and {0}; no tag was moved. With referrers: true the image is tagged without them"
    )]
    ReferrerTagsHeld(String),
    #[error(
        "{0}; no tag was moved (the image and its referrers are stored by digest): push under a new tag"
    )]
    ImageTagsHeld(String),
    #[error("image: manifest {0} is not UTF-8 text, which PutImage requires")]
    ManifestNotText(Digest),
    #[error("internal error in a blob reader: {0}")]
    Task(String),
    #[error(
        "scan-fail-on: ECR could not scan {subject} in {target} ({status}{reason}); no tag was moved. Push an image ECR can scan, or leave scan-fail-on empty"
    )]
    ScanFailed {
        subject: String,
        target: String,
        status: String,
        reason: String,
    },
    #[error(
        "{input}: the scan of {subject} in {target} was not complete {when} ({status}); no tag was moved. Raise {input}, and check that the registry's scanning configuration covers the repository"
    )]
    ScanTimeout {
        input: &'static str,
        subject: String,
        target: String,
        when: String,
        status: String,
    },
}

impl From<crate::registry::Error> for Error {
    fn from(e: crate::registry::Error) -> Self {
        if e.interrupted {
            Error::Interrupted {
                host: e.host,
                reason: e.reason,
            }
        } else {
            Error::Registry {
                host: e.host,
                reason: e.reason,
            }
        }
    }
}

/// The sum of the blobs' declared sizes; manifests are input, so it must not overflow.
pub fn total_size<'a>(blobs: impl IntoIterator<Item = &'a Descriptor>) -> u64 {
    blobs
        .into_iter()
        .fold(0, |sum, d| sum.saturating_add(d.size))
}

/// Whether a tag had to be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tagged {
    Set,
    AlreadySet,
}

/// What a tag points at on a destination, read before any tag of a release moves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagState {
    Absent,
    /// At this image already.
    Ours,
    /// At another image; `movable` is false when the repository keeps it there
    /// (immutable tags).
    Other {
        digest: String,
        movable: bool,
    },
}

/// Where images go.
// Implemented and awaited only in this crate, on one runtime; the lib is public for the
// fuzz targets, not for other implementations, so no Send bound is promised.
#[allow(async_fn_in_trait)]
pub trait Destination {
    /// Of `digests`, the ones the destination does not hold yet.
    async fn missing(&self, digests: &[&Digest]) -> Result<HashSet<Digest>, Error>;
    /// Of `tags`, the ones that already point at `manifest`: asked only when every blob
    /// is there already, so an unchanged image costs no manifest write. A destination
    /// that cannot tell says none.
    async fn tagged(&self, _manifest: &Manifest, _tags: &[String]) -> HashSet<String> {
        HashSet::new()
    }
    /// Every tag's state, in the order of `tags`, for a release that checks every
    /// target before any tag moves: a refusal to tell is an error.
    async fn tag_states(
        &self,
        manifest: &Manifest,
        tags: &[String],
    ) -> Result<Vec<TagState>, Error>;
    /// Uploads one blob; the reader proves its bytes before the upload completes.
    /// Each part is added to `sent` once it is sent.
    async fn upload(&self, blob: BlobReader, sent: &Sent) -> Result<(), Error>;
    /// Stores the manifest, under `tag` or, for the children of an index, by digest only.
    async fn put_manifest(&self, manifest: &Manifest, tag: Option<&str>) -> Result<Tagged, Error>;
    /// The requests made so far, by API action, retries included.
    fn calls(&self) -> Vec<(String, u64)>;
    /// Of those, the ones the destination throttled, by API action.
    fn throttled(&self) -> Vec<(String, u64)> {
        Vec::new()
    }
    /// Whether this is ECR, which refuses a referrer whose subject is an image index
    /// (aws/containers-roadmap#2783, #2306): said when it does.
    fn is_ecr(&self) -> bool {
        false
    }
    /// Makes a referrer stored by digest findable from its subject where the
    /// destination does not do so itself: on a registry without the referrers API, an
    /// entry in the index under its subject's fallback tag (`sha256-<hex>`). A tag
    /// write, so it happens with the image's tags, never while staging.
    async fn list_referrer(&self, _referrer: &Manifest) -> Result<(), Error> {
        Ok(())
    }
}

use crate::calls::Calls;

/// Counts every attempt the AWS SDK sends (retries too), by operation name.
impl aws_sdk_ecr::config::Intercept for Calls {
    fn name(&self) -> &'static str {
        "ecr-push call counter"
    }

    fn read_before_attempt(
        &self,
        _context: &aws_sdk_ecr::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _components: &aws_sdk_ecr::config::RuntimeComponents,
        cfg: &mut aws_sdk_ecr::config::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        if let Some(metadata) = cfg.load::<aws_smithy_runtime_api::client::orchestrator::Metadata>()
        {
            self.count(metadata.name());
        }
        Ok(())
    }
}

/// Reads the next part off the reactor; the reader travels with the task, so the next
/// part is read while the previous one is in flight.
fn read_next(
    mut reader: BlobReader,
    part_bytes: usize,
) -> tokio::task::JoinHandle<(BlobReader, Result<Vec<u8>, image::Error>)> {
    tokio::task::spawn_blocking(move || {
        let part = reader.read_part(part_bytes);
        (reader, part)
    })
}

/// Uploads `blobs`, `concurrency` at once, in the order given.
async fn lane<D: Destination>(
    destination: &D,
    image: &Image,
    blobs: Vec<&Descriptor>,
    sent: &Sent,
    concurrency: usize,
) -> Result<(), Error> {
    stream::iter(blobs)
        .map(|descriptor| upload(destination, image, descriptor, sent))
        .buffer_unordered(concurrency)
        .try_collect::<Vec<()>>()
        .await
        .map(drop)
}

/// Uploads one blob and logs a line when it has landed.
async fn upload<D: Destination>(
    destination: &D,
    image: &Image,
    descriptor: &Descriptor,
    sent: &Sent,
) -> Result<(), Error> {
    let started = Instant::now();
    let mut attempt = 1;
    loop {
        let this = sent.attempt();
        match destination
            .upload(image.read_blob(descriptor)?, &this)
            .await
        {
            Ok(()) => break,
            // A streamed upload cut off cannot be resumed: the blob starts over, under
            // the HTTP retry rule's attempts and backoff.
            Err(Error::Interrupted { host, reason }) if attempt < retry::MAX_ATTEMPTS => {
                this.take_back();
                let wait = retry::backoff(attempt);
                tracing::debug!(
                    "{}: {host}: {reason}; the blob again in {:.1} s",
                    descriptor.digest.short(),
                    wait.as_secs_f64()
                );
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            Err(Error::Interrupted { host, reason }) => {
                return Err(Error::Registry {
                    host,
                    reason: format!("{reason} ({attempt} attempts at the blob)"),
                });
            }
            Err(e) => return Err(e),
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    // A rate over a few KiB measures round trips, not throughput.
    let rate = if descriptor.size >= 1 << 20 {
        format!(
            " ({:.1} MB/s)",
            descriptor.size as f64 / 1e6 / seconds.max(1e-3)
        )
    } else {
        String::new()
    };
    tracing::info!(
        "pushed {} {} in {seconds:.1} s{rate}",
        descriptor.digest.short(),
        crate::units::human_bytes(descriptor.size),
    );
    Ok(())
}

/// How a push goes: blobs at once, how progress is shown, whether referrers must land.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub concurrency: usize,
    pub progress: crate::progress::Style,
    pub referrers: Referrers,
}

/// At most this size, a blob is one request of bytes (ECR's smallest part is 5 MiB)
/// and goes in the lane of small blobs.
const SMALL_BLOB: u64 = 5 * 1024 * 1024;

pub async fn push<D: Destination>(
    destination: &D,
    image: &Image,
    tags: &[String],
    options: Options,
) -> Result<Report, Error> {
    let Options {
        concurrency,
        progress,
        referrers,
    } = options;
    let started = Instant::now();
    let mut report = upload_missing(destination, image, concurrency, progress).await?;
    // A tag can point at this image only if every blob was there already.
    let already = if report.blobs_uploaded == 0 {
        destination.tagged(&image.manifest, tags).await
    } else {
        HashSet::new()
    };
    // An index's children go first, by digest: ECR refuses an index whose manifests
    // it does not hold (ReferencedImagesNotFoundException). A tag already on the index
    // proves they are there.
    if already.is_empty() {
        for child in &image.children {
            destination.put_manifest(child, None).await?;
        }
    }
    report.manifests = image.children.len() + 1;
    // A referrer's subject is there before it: ECR and the OCI spec do not promise to
    // take one that refers to nothing yet.
    if !image.referrers.is_empty() {
        if already.is_empty() {
            destination.put_manifest(&image.manifest, None).await?;
        }
        put_referrers(
            destination,
            image,
            referrers == Referrers::Required,
            &mut report,
        )
        .await?;
        if referrers == Referrers::Required {
            held_referrer_tags(destination, image).await?;
        }
        tag_referrers(
            destination,
            image,
            referrers == Referrers::Required,
            &mut report,
        )
        .await?;
    }
    for tag in tags {
        if already.contains(tag) {
            report.tags_unchanged.push(tag.clone());
            continue;
        }
        let tagged = destination
            .put_manifest(&image.manifest, Some(tag))
            .await
            .map_err(|source| {
                let set: Vec<&str> = report
                    .tags_set
                    .iter()
                    .chain(&report.tags_unchanged)
                    .map(String::as_str)
                    .collect();
                if set.is_empty() {
                    source
                } else {
                    // Tags cannot be set atomically; say which ones did land.
                    Error::PartlyTagged {
                        source: Box::new(source),
                        digest: image.manifest.digest.clone(),
                        set: set.join(", "),
                    }
                }
            })?;
        match tagged {
            Tagged::Set => report.tags_set.push(tag.clone()),
            Tagged::AlreadySet => report.tags_unchanged.push(tag.clone()),
        }
    }
    finish(destination, &mut report, started);
    Ok(report)
}

/// Phase 1 of a release to several targets, or of a push behind the scan gate:
/// everything but its tags. The blobs the destination lacks, an index's children, the
/// image itself and its referrers by digest (untagged: cosign's tags wait too), so
/// phase 2 only moves tags onto an image every target already holds.
pub async fn stage<D: Destination>(
    destination: &D,
    image: &Image,
    options: Options,
) -> Result<Report, Error> {
    let started = Instant::now();
    let mut report =
        upload_missing(destination, image, options.concurrency, options.progress).await?;
    for manifest in image.children.iter().chain([&image.manifest]) {
        destination.put_manifest(manifest, None).await?;
    }
    report.manifests = image.children.len() + 1;
    put_referrers(
        destination,
        image,
        options.referrers == Referrers::Required,
        &mut report,
    )
    .await?;
    finish(destination, &mut report, started);
    Ok(report)
}

/// Phase 2 on one target: the referrers' tags (cosign's, a registry's fallback tag),
/// then each tag not on the image yet (`states`, from [`Destination::tag_states`], read
/// on every target before this). On an error, `report` holds the tags that did land.
pub async fn tag<D: Destination>(
    destination: &D,
    image: &Image,
    tags: &[String],
    states: &[TagState],
    referrers: Referrers,
    report: &mut Report,
) -> Result<(), Error> {
    let started = Instant::now();
    let result = async {
        // A tag the image cannot have stops the tags before any moves, its referrers'
        // included (a release's check found these already; a gated push's did not).
        image_tags_free(image, tags, states)?;
        tag_referrers(destination, image, referrers == Referrers::Required, report).await?;
        for (tag, state) in tags.iter().zip(states) {
            let tagged = match state {
                TagState::Ours => Tagged::AlreadySet,
                _ => destination.put_manifest(&image.manifest, Some(tag)).await?,
            };
            match tagged {
                Tagged::Set => report.tags_set.push(tag.clone()),
                Tagged::AlreadySet => report.tags_unchanged.push(tag.clone()),
            }
        }
        Ok(())
    }
    .await;
    let staged = report.elapsed;
    finish(destination, report, started);
    report.elapsed += staged;
    result
}

/// The calls made and the time taken, into the report.
fn finish<D: Destination>(destination: &D, report: &mut Report, started: Instant) {
    report.calls = destination.calls();
    report.throttled = destination.throttled();
    report.elapsed = started.elapsed();
}

/// The blobs the destination lacks, uploaded (small ones in a lane of their own);
/// what was sent and skipped.
async fn upload_missing<D: Destination>(
    destination: &D,
    image: &Image,
    concurrency: usize,
    progress: crate::progress::Style,
) -> Result<Report, Error> {
    let blobs: Vec<&Descriptor> = image.blobs().iter().collect();
    let digests: Vec<&Digest> = blobs.iter().map(|d| &d.digest).collect();
    let missing = destination.missing(&digests).await?;
    let (mut to_upload, present): (Vec<_>, Vec<_>) =
        blobs.into_iter().partition(|d| missing.contains(&d.digest));
    to_upload.sort_by_key(|d| std::cmp::Reverse(d.size));
    let report = Report {
        blobs_uploaded: to_upload.len(),
        bytes_uploaded: total_size(to_upload.iter().copied()),
        blobs_skipped: present.len(),
        bytes_skipped: total_size(present.iter().copied()),
        ..Report::default()
    };
    if !present.is_empty() {
        tracing::info!(
            "{} of {} blobs already in the repository ({}), skipped",
            present.len(),
            digests.len(),
            crate::units::human_bytes(report.bytes_skipped)
        );
    }

    let sent = Sent::default();
    let shown = progress.show(sent.clone(), report.bytes_uploaded);
    // Small blobs (the config, small layers) go in a lane of their own beside the
    // large ones, largest first: they would otherwise wait until a large one is done.
    // Calls of one API action still share the destination's pacing, so a small blob
    // waits for a part at most.
    let (small, large): (Vec<&Descriptor>, Vec<&Descriptor>) =
        to_upload.iter().partition(|d| d.size <= SMALL_BLOB);
    let uploads = futures_util::future::try_join(
        lane(destination, image, large, &sent, concurrency),
        lane(destination, image, small, &sent, concurrency),
    )
    .await;
    drop(shown);
    uploads?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// Holds nothing; cuts the first `cuts` uploads off after their first byte, as a
    /// connection reset in the middle of a streamed PATCH does; records what it stored.
    struct Cutting {
        cuts: AtomicU32,
        attempts: AtomicU32,
        stored: Mutex<Vec<(Digest, u64)>>,
    }

    impl Destination for Cutting {
        async fn missing(&self, digests: &[&Digest]) -> Result<HashSet<Digest>, Error> {
            Ok(digests.iter().map(|d| (*d).clone()).collect())
        }

        async fn upload(&self, mut blob: BlobReader, sent: &Sent) -> Result<(), Error> {
            self.attempts.fetch_add(1, Ordering::Relaxed);
            let mut bytes = blob.read_part(1)?.len() as u64;
            sent.add(1);
            if self
                .cuts
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(Error::Interrupted {
                    host: "registry.test".into(),
                    reason: "sending a blob of app: connection reset".into(),
                });
            }
            // The reader proves the whole blob, from its first byte, on its last part.
            while blob.remaining() > 0 {
                let part = blob.read_part(64 * 1024)?;
                sent.add(part.len());
                bytes += part.len() as u64;
            }
            let digest = blob.descriptor().digest.clone();
            self.stored.lock().unwrap().push((digest, bytes));
            Ok(())
        }

        async fn tag_states(&self, _: &Manifest, tags: &[String]) -> Result<Vec<TagState>, Error> {
            Ok(vec![TagState::Absent; tags.len()])
        }

        async fn put_manifest(&self, _: &Manifest, _: Option<&str>) -> Result<Tagged, Error> {
            Ok(Tagged::Set)
        }

        fn calls(&self) -> Vec<(String, u64)> {
            Vec::new()
        }
    }

    fn options() -> Options {
        Options {
            concurrency: 1,
            progress: crate::progress::Style::Lines,
            referrers: Referrers::Carry,
        }
    }

    /// An image of one layer of `layer` bytes, in memory.
    fn image(layer: &[u8]) -> Image {
        let config = br#"{"architecture":"amd64","os":"linux"}"#;
        let descriptor = |media_type: &str, bytes: &[u8]| {
            serde_json::json!({
                "mediaType": media_type,
                "digest": Digest::of(bytes).to_string(),
                "size": bytes.len(),
            })
        };
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": descriptor("application/vnd.oci.image.config.v1+json", config),
            "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", layer)],
        });
        let blobs = [config.to_vec(), layer.to_vec()]
            .into_iter()
            .map(|b| (Digest::of(&b), b))
            .collect();
        image::load_from_memory(
            blobs,
            manifest.to_string().as_bytes(),
            "application/vnd.oci.image.manifest.v1+json",
        )
        .unwrap()
    }

    #[tokio::test]
    async fn a_cut_upload_sends_its_blob_again_from_the_first_byte() {
        let layer: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let image = image(&layer);
        let destination = Cutting {
            cuts: AtomicU32::new(2),
            attempts: AtomicU32::new(0),
            stored: Mutex::new(Vec::new()),
        };
        let tags = ["v1".to_owned()];
        let report = push(&destination, &image, &tags, options()).await.unwrap();
        // Two blobs, one upload each, and the two cut ones again.
        assert_eq!(destination.attempts.load(Ordering::Relaxed), 4);
        let mut stored = destination.stored.into_inner().unwrap();
        stored.sort_by_key(|(_, bytes)| *bytes);
        assert_eq!(stored.len(), 2, "{stored:?}");
        assert_eq!(stored[1], (Digest::of(&layer), layer.len() as u64));
        assert_eq!(report.tags_set, tags);
    }

    #[tokio::test]
    async fn an_upload_cut_every_time_fails_naming_the_attempts() {
        let image = image(b"layer bytes");
        let destination = Cutting {
            cuts: AtomicU32::new(u32::MAX),
            attempts: AtomicU32::new(0),
            stored: Mutex::new(Vec::new()),
        };
        let error = push(&destination, &image, &[], options())
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            format!(
                "registry registry.test: sending a blob of app: connection reset ({} attempts at the blob)",
                retry::MAX_ATTEMPTS
            )
        );
        assert!(destination.stored.into_inner().unwrap().is_empty());
    }
}
