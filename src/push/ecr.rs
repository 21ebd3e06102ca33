//! The ECR API destination: BatchCheckLayerAvailability, then per missing blob
//! InitiateLayerUpload → UploadLayerPart (in order) → CompleteLayerUpload, then PutImage
//! per tag. This needs only repository-scoped `ecr:` actions, no registry login and so
//! no `ecr:GetAuthorizationToken` on `*`.
//!
//! Parts have the size InitiateLayerUpload returns, kept within ECR's bounds; while one
//! part is in flight the next is read, hashed and encoded into its request body off the
//! reactor (`part_body`), so memory per blob is two part bodies.

mod part_body;

use std::collections::HashSet;
use std::sync::Arc;

use aws_sdk_ecr::config::http::HttpResponse;
use aws_sdk_ecr::error::ProvideErrorMetadata;
use aws_sdk_ecr::operation::batch_get_image::{BatchGetImageError, BatchGetImageOutput};
use aws_sdk_ecr::operation::complete_layer_upload::CompleteLayerUploadError;
use aws_sdk_ecr::operation::initiate_layer_upload::InitiateLayerUploadError;
use aws_sdk_ecr::operation::put_image::PutImageError;
use aws_sdk_ecr::operation::upload_layer_part::UploadLayerPartError;
use aws_sdk_ecr::types::{ImageIdentifier, LayerAvailability};
use base64::Engine as _;

use part_body::{Bodies, Body, Fields};

use super::pace::Pace;
use super::{Destination, Error, Tagged};
use crate::ecr_host::EcrHost;
use crate::image::{self, BlobReader, Digest, Manifest};
use crate::sdk::describe;

/// Attempts per call. ECR's write quotas are shared by every job of the account, so a
/// throttled call waits (exponential backoff with jitter, at most [`MAX_BACKOFF`]
/// between attempts) and tries again rather than fail the push; errors that are not
/// transient (access denied) are never retried.
const MAX_ATTEMPTS: u32 = 8;
const MAX_BACKOFF: std::time::Duration = std::time::Duration::from_secs(20);
/// BatchCheckLayerAvailability takes 1 to 100 digests a call.
const MAX_DIGESTS_PER_BATCH: usize = 100;
/// BatchGetImage takes 1 to 100 image ids a call.
const MAX_IMAGE_IDS_PER_GET: usize = 100;
/// UploadLayerPart: every part but the last must be at least 5 MiB…
const MIN_PART_BYTES: i64 = 5 * 1024 * 1024;
/// …and no part may exceed 20,971,520 bytes (`layerPartBlob`'s limit).
const MAX_PART_BYTES: i64 = 20 * 1024 * 1024;
/// …and a layer has at most 4,200 parts.
const MAX_PARTS: u64 = 4200;
/// What ECR returns as `partSize` in practice, used if it returns none.
const DEFAULT_PART_BYTES: i64 = 10 * 1024 * 1024;
/// The slowest upload a part's timeout allows for, on top of a small request's: a
/// 10 MiB part gets 160 s more. Past it the part is sent again.
const SLOWEST_BYTES_PER_SECOND: f64 = 64.0 * 1024.0;

pub struct Ecr {
    /// BatchCheckLayerAvailability, CreateRepository, GetAuthorizationToken.
    client: aws_sdk_ecr::Client,
    /// UploadLayerPart (500 requests a second per account and region).
    parts: aws_sdk_ecr::Client,
    /// InitiateLayerUpload and CompleteLayerUpload (100 a second).
    uploads: aws_sdk_ecr::Client,
    /// PutImage (10 a second) and BatchGetImage.
    images: aws_sdk_ecr::Client,
    calls: super::Calls,
    /// Where the calls go, for a call that got no answer.
    endpoint: crate::sdk::Endpoint,
    /// The registry as its users name it (the FIPS or dual-stack host when given so).
    host: EcrHost,
    registry_id: String,
    region: String,
    repository: String,
    create_repository: bool,
    /// The identity making the calls, for messages about permissions.
    principal: String,
    /// One attempt of a small call; parts add time for their bytes.
    request_timeout: std::time::Duration,
    /// How many calls of each write action may be in flight at once.
    paces: Paces,
    /// Part bodies for reuse, as many as were ever in flight at once.
    bodies: Bodies,
}

struct Paces {
    initiate: Arc<Pace>,
    part: Arc<Pace>,
    complete: Arc<Pace>,
    put: Arc<Pace>,
}

/// The endpoint variant (FIPS, dual-stack) of ECR's API that a registry host asks for:
/// a FIPS host's calls go to ECR's FIPS endpoint, a dual-stack host's to its dual-stack
/// one, unless an endpoint URL is configured. `AWS_USE_FIPS_ENDPOINT` and
/// `AWS_USE_DUALSTACK_ENDPOINT` still turn either on for any host, as in every SDK.
fn endpoint_variant(host: &EcrHost, endpoint_overridden: bool) -> (bool, bool) {
    if endpoint_overridden {
        (false, false)
    } else {
        (host.fips, host.dual_stack)
    }
}

/// Whether an endpoint URL for ECR is configured in the environment, as the SDK reads it.
pub fn endpoint_overridden(env: &impl Fn(&str) -> Option<String>) -> bool {
    let set = |name: &str| env(name).is_some_and(|v| !v.trim().is_empty());
    let ignored =
        env("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    !ignored && (set("AWS_ENDPOINT_URL_ECR") || set("AWS_ENDPOINT_URL"))
}

impl Ecr {
    /// `endpoint_overridden`: an endpoint URL is configured (`AWS_ENDPOINT_URL`,
    /// `AWS_ENDPOINT_URL_ECR`), which the SDK refuses to combine with the FIPS or
    /// dual-stack variant a host asks for; the configured URL then wins.
    pub fn new(
        config: &aws_config::SdkConfig,
        host: EcrHost,
        endpoint_overridden: bool,
        repository: String,
        create_repository: bool,
        principal: String,
        concurrency: usize,
    ) -> Self {
        use aws_sdk_ecr::config::retry::{RetryConfig, RetryPartition};
        let calls = super::Calls::default();
        // One client per group of actions that share a quota, each with its own retry
        // partition (the token bucket that caps retries): throttled parts do not use up
        // PutImage's retries. The SDK's adaptive mode was tried and dropped: after two
        // throttles its client-side limiter held a 4-blob push for 29 s instead of 1.7 s.
        let (fips, dual_stack) = endpoint_variant(&host, endpoint_overridden);
        let endpoint = crate::sdk::Endpoint::default();
        let client_for = |quota: &'static str| {
            let mut builder = aws_sdk_ecr::config::Builder::from(config);
            if fips {
                builder = builder.use_fips(true);
            }
            if dual_stack {
                builder = builder.use_dual_stack(true);
            }
            aws_sdk_ecr::Client::from_conf(
                builder
                    .interceptor(calls.clone())
                    .interceptor(endpoint.clone())
                    .retry_config(
                        RetryConfig::standard()
                            .with_max_attempts(MAX_ATTEMPTS)
                            .with_max_backoff(MAX_BACKOFF),
                    )
                    .retry_partition(RetryPartition::new(quota))
                    .build(),
            )
        };
        Self {
            client: client_for("ecr-push-other"),
            parts: client_for("ecr-push-upload-layer-part"),
            uploads: client_for("ecr-push-initiate-complete"),
            images: client_for("ecr-push-images"),
            calls,
            endpoint,
            registry_id: host.account.clone(),
            region: host.region.clone(),
            host,
            repository,
            create_repository,
            principal,
            request_timeout: crate::auth::attempt_timeout(config),
            paces: Paces {
                initiate: Pace::new("InitiateLayerUpload", concurrency),
                part: Pace::new("UploadLayerPart", concurrency),
                complete: Pace::new("CompleteLayerUpload", concurrency),
                // Tags are written one after another.
                put: Pace::new("PutImage", 1),
            },
            bodies: Bodies::default(),
        }
    }

    /// Reads the next part into its request body off the reactor; the reader travels
    /// with the task, so the next part is read while the previous one is in flight.
    fn read_next(
        &self,
        mut blob: BlobReader,
        part_bytes: usize,
        fields: &std::sync::Arc<Fields>,
        part_first_byte: i64,
    ) -> tokio::task::JoinHandle<(BlobReader, Result<Body, image::Error>)> {
        let bodies = self.bodies.clone();
        let fields = fields.clone();
        tokio::task::spawn_blocking(move || {
            let body = bodies.read_part(&mut blob, part_bytes, &fields, part_first_byte);
            (blob, body)
        })
    }

    /// `config` with the attempt timeout for a part of `bytes`.
    fn part_timeout(
        &self,
        bytes: usize,
        config: aws_sdk_ecr::config::Builder,
    ) -> aws_sdk_ecr::config::Builder {
        let timeout = self.request_timeout
            + std::time::Duration::from_secs_f64(bytes as f64 / SLOWEST_BYTES_PER_SECOND);
        config.timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .operation_attempt_timeout(timeout)
                .build(),
        )
    }

    /// The registry's host name, as `docker pull` uses it.
    pub fn registry_host(&self) -> String {
        self.host.to_string()
    }

    /// A Docker login for the registry: base64 of `AWS:PASSWORD`, as Docker's
    /// config.json stores it. `mask` is called on each secret before it is kept anywhere.
    pub async fn login(&self, mask: impl Fn(&str)) -> Result<String, Error> {
        let output = self
            .client
            .get_authorization_token()
            .send()
            .await
            .map_err(|err| self.api_error("GetAuthorizationToken", &err, err.code()))?;
        let auth = output
            .authorization_data()
            .first()
            .and_then(|d| d.authorization_token())
            .unwrap_or_default()
            .to_owned();
        mask(&auth);
        let Some(password) = Self::password(&auth) else {
            return Err(Error::Api {
                call: "GetAuthorizationToken",
                target: format!("registry {}", self.registry_id),
                reason: "the token is not base64 of USER:PASSWORD".into(),
                hint: String::new(),
            });
        };
        mask(&password);
        Ok(auth)
    }

    /// The login for reading a `docker://` source on another ECR registry (of `account`,
    /// in `region`) with the session's credentials. The token GetAuthorizationToken gives
    /// opens every registry the identity may read (its `registryIds` is deprecated), so
    /// only the region matters. `mask` is called on each secret before it is kept.
    pub async fn source_login(
        session: &crate::auth::Session,
        host: EcrHost,
        endpoint_overridden: bool,
        mask: impl Fn(&str),
    ) -> Result<crate::docker_config::Login, Error> {
        let config = session
            .config
            .to_builder()
            .region(aws_config::Region::new(host.region.clone()))
            .build();
        let source = Self::new(
            &config,
            host,
            endpoint_overridden,
            String::new(),
            false,
            session.principal.clone(),
            1,
        );
        let auth = source.login(mask).await?;
        Ok(crate::docker_config::Login {
            username: "AWS".to_owned(),
            password: Self::password(&auth).unwrap_or_default(),
        })
    }

    /// The password in a login from [`Ecr::login`].
    pub fn password(auth: &str) -> Option<String> {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth)
            .ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        decoded.split_once(':').map(|(_, p)| p.to_owned())
    }

    fn target(&self) -> String {
        format!(
            "repository {} in registry {} ({})",
            self.repository, self.registry_id, self.region
        )
    }

    fn api_error<E>(
        &self,
        call: &'static str,
        err: &aws_sdk_ecr::error::SdkError<E, HttpResponse>,
        code: Option<&str>,
    ) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        // A 403 whose body carries no code (some proxies and emulators answer so) is
        // still a refusal of this identity.
        let forbidden = err.raw_response().map(|r| r.status().as_u16()) == Some(403);
        let code = code.or(forbidden.then_some("AccessDeniedException"));
        let hint = match code {
            Some("RepositoryNotFoundException") => {
                "; create the repository, or set create-repository: true".to_owned()
            }
            Some("AccessDeniedException") if call == "GetAuthorizationToken" => format!(
                "; {} needs ecr:GetAuthorizationToken on \"*\" (the only resource it has) for a registry login (docker-login, transport: registry, a docker:// source on ECR)",
                self.principal
            ),
            Some("AccessDeniedException") => format!(
                "; {} needs ecr:{call} on arn:{}:ecr:{}:{}:repository/{} in its permissions policy{}",
                self.principal,
                crate::ecr_host::partition(&self.region),
                self.region,
                self.registry_id,
                self.repository,
                if crate::names::account_of_arn(&self.principal) == Some(&self.registry_id) {
                    ""
                } else {
                    ", and the repository policy must allow it across accounts"
                }
            ),
            Some("ExpiredTokenException") => {
                "; the role session expired during the push: a chained role lasts at most an hour, a single role as long as role-duration-seconds"
                    .to_owned()
            }
            Some("InvalidLayerException") => {
                "; ECR hashed other bytes than the blob's: nothing was tagged, run the push again"
                    .to_owned()
            }
            Some("ThrottlingException") | Some("LimitExceededException") => {
                "; ECR's request quota for this account and region is exhausted, try again later"
                    .to_owned()
            }
            _ => String::new(),
        };
        Error::Api {
            call,
            target: self.target(),
            reason: crate::sdk::describe_at(err, &self.endpoint),
            hint,
        }
    }

    async fn check_layers(&self, chunk: &[&Digest]) -> Result<HashSet<Digest>, Error> {
        let send = || {
            self.client
                .batch_check_layer_availability()
                .registry_id(&self.registry_id)
                .repository_name(&self.repository)
                .set_layer_digests(Some(chunk.iter().map(|d| d.to_string()).collect()))
                .send()
        };
        let output = match send().await {
            Err(err)
                if self.create_repository && err.code() == Some("RepositoryNotFoundException") =>
            {
                self.create().await?;
                send().await
            }
            other => other,
        }
        .map_err(|err| self.api_error("BatchCheckLayerAvailability", &err, err.code()))?;
        if let Some(failure) = output
            .failures()
            .iter()
            .find(|f| f.failure_code().map(|c| c.as_str()) != Some("MissingLayerDigest"))
        {
            return Err(Error::Api {
                call: "BatchCheckLayerAvailability",
                target: self.target(),
                reason: format!(
                    "{}: {}",
                    failure.layer_digest().unwrap_or_default(),
                    failure.failure_reason().unwrap_or_default()
                ),
                hint: String::new(),
            });
        }
        let available: HashSet<&str> = output
            .layers()
            .iter()
            .filter(|l| l.layer_availability() == Some(&LayerAvailability::Available))
            .filter_map(|l| l.layer_digest())
            .collect();
        Ok(chunk
            .iter()
            .filter(|d| !available.contains(d.as_str()))
            .map(|d| (*d).clone())
            .collect())
    }

    async fn create(&self) -> Result<(), Error> {
        match self
            .client
            .create_repository()
            .registry_id(&self.registry_id)
            .repository_name(&self.repository)
            .send()
            .await
        {
            Ok(_) => {
                tracing::info!("created repository {}", self.repository);
                Ok(())
            }
            // Another job created it in the meantime: what was wanted.
            Err(err) if err.code() == Some("RepositoryAlreadyExistsException") => Ok(()),
            Err(err) => Err(self.api_error("CreateRepository", &err, err.code())),
        }
    }

    /// BatchGetImage of up to [`MAX_IMAGE_IDS_PER_GET`] tags.
    async fn get_tagged(
        &self,
        tags: &[String],
    ) -> Result<BatchGetImageOutput, aws_sdk_ecr::error::SdkError<BatchGetImageError, HttpResponse>>
    {
        self.images
            .batch_get_image()
            .registry_id(&self.registry_id)
            .repository_name(&self.repository)
            .set_image_ids(Some(
                tags.iter()
                    .map(|tag| ImageIdentifier::builder().image_tag(tag).build())
                    .collect(),
            ))
            .set_accepted_media_types(Some(
                // Without them BatchGetImage converts an OCI manifest to Docker's format.
                image::MANIFEST_MEDIA_TYPES
                    .iter()
                    .map(|t| (*t).to_owned())
                    .collect(),
            ))
            .send()
            .await
    }

    /// What `tag` points at now.
    async fn tagged_digest(&self, tag: &str) -> Result<TagLookup, Error> {
        let output = match self.get_tagged(&[tag.to_owned()]).await {
            Ok(output) => output,
            Err(err) if err.code() == Some("AccessDeniedException") => {
                return Ok(TagLookup::NotAllowed);
            }
            Err(err) => return Err(self.api_error("BatchGetImage", &err, err.code())),
        };
        Ok(output
            .images()
            .first()
            .and_then(|i| i.image_id())
            .and_then(|id| id.image_digest())
            .map_or(TagLookup::Absent, |d| TagLookup::Points(d.to_owned())))
    }

    /// Decides a PutImage conflict by what the tag points at now. Without
    /// ecr:BatchGetImage (optional in the push policy) the conflict still fails, without
    /// naming the other image.
    async fn resolve_conflict(&self, manifest: &Manifest, tag: &str) -> Result<Tagged, Error> {
        let existing = match self.tagged_digest(tag).await? {
            TagLookup::Points(digest) if digest == manifest.digest.as_str() => {
                return Ok(Tagged::AlreadySet);
            }
            TagLookup::Points(digest) => digest,
            TagLookup::Absent => "another image".into(),
            TagLookup::NotAllowed => {
                "another image (ecr:BatchGetImage is not allowed, so which one is unknown)".into()
            }
        };
        Err(Error::TagImmutable {
            tag: tag.to_owned(),
            repository: self.repository.clone(),
            existing,
            digest: manifest.digest.clone(),
        })
    }
}

enum TagLookup {
    Points(String),
    Absent,
    NotAllowed,
}

/// The part size for a blob of `size` bytes: ECR's `partSize`, raised when the blob
/// would otherwise need more than [`MAX_PARTS`], within ECR's bounds.
fn part_bytes(part_size: Option<i64>, size: u64) -> usize {
    let needed = size.div_ceil(MAX_PARTS).min(MAX_PART_BYTES as u64) as i64;
    part_size
        .unwrap_or(DEFAULT_PART_BYTES)
        .max(needed)
        .clamp(MIN_PART_BYTES, MAX_PART_BYTES) as usize
}

impl Destination for Ecr {
    fn calls(&self) -> Vec<(String, u64)> {
        self.calls.snapshot()
    }

    fn throttled(&self) -> Vec<(String, u64)> {
        let p = &self.paces;
        [&p.initiate, &p.part, &p.complete, &p.put]
            .into_iter()
            .map(|pace| (pace.action().to_owned(), pace.throttles()))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    async fn missing(&self, digests: &[&Digest]) -> Result<HashSet<Digest>, Error> {
        let mut missing = HashSet::new();
        for chunk in digests.chunks(MAX_DIGESTS_PER_BATCH) {
            missing.extend(self.check_layers(chunk).await?);
        }
        Ok(missing)
    }

    /// One BatchGetImage per 100 tags. Without ecr:BatchGetImage, or when it fails, no
    /// tag counts as set: each gets its PutImage, which is still correct.
    async fn tagged(&self, manifest: &Manifest, tags: &[String]) -> HashSet<String> {
        let mut set = HashSet::new();
        for chunk in tags.chunks(MAX_IMAGE_IDS_PER_GET) {
            let output = match self.get_tagged(chunk).await {
                Ok(output) => output,
                Err(err) => {
                    tracing::debug!(
                        "BatchGetImage: {}; every tag gets its PutImage",
                        describe(&err)
                    );
                    return HashSet::new();
                }
            };
            let ours = |id: &ImageIdentifier| id.image_digest() == Some(manifest.digest.as_str());
            let found: Vec<&ImageIdentifier> = output
                .images()
                .iter()
                .filter_map(|i| i.image_id())
                .collect();
            let missing: HashSet<&str> = output
                .failures()
                .iter()
                .filter_map(|f| f.image_id()?.image_tag())
                .collect();
            for tag in chunk.iter().filter(|t| !missing.contains(t.as_str())) {
                // ECR names each image by the tag asked for; should an answer name it
                // otherwise (moto gives an image's latest tag), the tag still resolved
                // to one of the images found, so all of them being ours is enough.
                let set_here = match found.iter().find(|id| id.image_tag() == Some(tag)) {
                    Some(id) => ours(id),
                    None => !found.is_empty() && found.iter().all(|id| ours(id)),
                };
                if set_here {
                    set.insert(tag.clone());
                }
            }
        }
        set
    }

    async fn upload(&self, blob: BlobReader, sent: &crate::progress::Sent) -> Result<(), Error> {
        let digest = blob.descriptor().digest.clone();
        let size = blob.descriptor().size;
        if size == 0 {
            return Err(Error::EmptyBlob(digest));
        }
        if size > MAX_PARTS * MAX_PART_BYTES as u64 {
            return Err(Error::BlobTooLarge {
                digest,
                size,
                limit: MAX_PARTS * MAX_PART_BYTES as u64,
            });
        }
        let admitted = self.paces.initiate.admit().await;
        let initiated = self
            .uploads
            .initiate_layer_upload()
            .registry_id(&self.registry_id)
            .repository_name(&self.repository)
            .customize()
            .config_override(
                self.paces
                    .initiate
                    .watch::<InitiateLayerUploadError>(&admitted),
            )
            .send()
            .await
            .map_err(|err| self.api_error("InitiateLayerUpload", &err, err.code()))?;
        admitted.succeeded();
        let upload_id = initiated.upload_id().unwrap_or_default().to_owned();
        let part_bytes = part_bytes(initiated.part_size(), size);

        let fields = std::sync::Arc::new(Fields {
            registry_id: self.registry_id.clone(),
            repository_name: self.repository.clone(),
            upload_id: upload_id.clone(),
        });
        let mut part_first_byte: i64 = 0;
        let mut pending = Some(self.read_next(blob, part_bytes, &fields, part_first_byte));
        while let Some(reading) = pending.take() {
            let (reader, body) = reading.await.map_err(|e| Error::Task(e.to_string()))?;
            let body = body?;
            let part_last_byte = part_first_byte + body.part_bytes as i64 - 1;
            if reader.remaining() > 0 {
                pending = Some(self.read_next(reader, part_bytes, &fields, part_last_byte + 1));
            }
            let part_len = body.part_bytes;
            tracing::debug!(
                "UploadLayerPart {} bytes {part_first_byte}-{part_last_byte}",
                digest.short()
            );
            let admitted = self.paces.part.admit().await;
            let config = self.part_timeout(
                part_len,
                self.paces.part.watch::<UploadLayerPartError>(&admitted),
            );
            let answer = self
                .parts
                .upload_layer_part()
                .registry_id(&self.registry_id)
                .repository_name(&self.repository)
                .upload_id(&upload_id)
                .part_first_byte(part_first_byte)
                .part_last_byte(part_last_byte)
                .customize()
                .config_override(config)
                // The SDK serialises the fields above; `body` has them and the part.
                .mutate_request(move |request| body.replace(request))
                .send()
                .await;
            match answer {
                Ok(_) => admitted.succeeded(),
                // The SDK retried a part whose answer was lost though ECR had stored it:
                // ECR says how far it got, and that is exactly this part's end.
                Err(err)
                    if matches!(
                        err.as_service_error(),
                        Some(UploadLayerPartError::InvalidLayerPartException(e))
                            if e.last_valid_byte_received() == Some(part_last_byte)
                    ) =>
                {
                    tracing::debug!(
                        "UploadLayerPart {} bytes {part_first_byte}-{part_last_byte} had reached ECR before its answer was lost",
                        digest.short()
                    );
                }
                Err(err) => return Err(self.api_error("UploadLayerPart", &err, err.code())),
            }
            sent.add(part_len);
            part_first_byte = part_last_byte + 1;
        }

        let admitted = self.paces.complete.admit().await;
        let completed = self
            .uploads
            .complete_layer_upload()
            .registry_id(&self.registry_id)
            .repository_name(&self.repository)
            .upload_id(&upload_id)
            .layer_digests(digest.as_str())
            .customize()
            .config_override(
                self.paces
                    .complete
                    .watch::<CompleteLayerUploadError>(&admitted),
            )
            .send()
            .await;
        if completed.is_ok() {
            admitted.succeeded();
        } else {
            drop(admitted);
        }
        match completed {
            Ok(output) => match output.layer_digest() {
                Some(actual) if actual == digest.as_str() => Ok(()),
                actual => Err(Error::DigestMismatch {
                    call: "CompleteLayerUpload",
                    expected: digest,
                    actual: actual.unwrap_or("no digest").to_owned(),
                }),
            },
            // Another job pushed the same layer meanwhile; ECR keeps one copy.
            Err(err) if err.code() == Some("LayerAlreadyExistsException") => Ok(()),
            // The SDK retried a completion whose answer was lost: the upload is gone
            // because it completed. The layer being there (ECR hashed its bytes to that
            // digest) is the proof.
            Err(err)
                if err.code() == Some("UploadNotFoundException")
                    && self
                        .check_layers(&[&digest])
                        .await
                        .is_ok_and(|m| m.is_empty()) =>
            {
                tracing::debug!(
                    "CompleteLayerUpload {} had completed before its answer was lost",
                    digest.short()
                );
                Ok(())
            }
            Err(err) => Err(self.api_error("CompleteLayerUpload", &err, err.code())),
        }
    }

    async fn put_manifest(&self, manifest: &Manifest, tag: Option<&str>) -> Result<Tagged, Error> {
        let text = std::str::from_utf8(&manifest.bytes)
            .map_err(|_| Error::ManifestNotText(manifest.digest.clone()))?;
        let admitted = self.paces.put.admit().await;
        let result = self
            .images
            .put_image()
            .registry_id(&self.registry_id)
            .repository_name(&self.repository)
            .image_manifest(text)
            .image_manifest_media_type(&manifest.media_type)
            .image_digest(manifest.digest.as_str())
            .set_image_tag(tag.map(str::to_owned))
            .customize()
            .config_override(self.paces.put.watch::<PutImageError>(&admitted))
            .send()
            .await;
        drop(admitted);
        match result {
            Ok(output) => {
                let stored = output
                    .image()
                    .and_then(|i| i.image_id())
                    .and_then(|id| id.image_digest());
                match stored {
                    Some(actual) if actual != manifest.digest.as_str() => {
                        Err(Error::DigestMismatch {
                            call: "PutImage",
                            expected: manifest.digest.clone(),
                            actual: actual.to_owned(),
                        })
                    }
                    _ => Ok(Tagged::Set),
                }
            }
            // ECR names the digest the tag already has; when it is ours, re-pushing the
            // same image is a success without another call.
            Err(err)
                if err.code() == Some("ImageAlreadyExistsException")
                    && err
                        .message()
                        .is_some_and(|m| m.contains(manifest.digest.as_str())) =>
            {
                Ok(Tagged::AlreadySet)
            }
            Err(err)
                if matches!(
                    err.code(),
                    Some("ImageAlreadyExistsException" | "ImageTagAlreadyExistsException")
                ) =>
            {
                match tag {
                    Some(tag) => self.resolve_conflict(manifest, tag).await,
                    // By digest, the manifest there is this one.
                    None => Ok(Tagged::AlreadySet),
                }
            }
            Err(err) => Err(self.api_error("PutImage", &err, err.code())),
        }
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_ecr::config::endpoint::{Params, ResolveEndpoint};

    /// Which endpoint ECR's own resolver picks for each host form, without an endpoint
    /// override: what a real run talks to. With an override the host form is set aside.
    #[test]
    fn the_api_endpoint_follows_the_host() {
        let resolve = |host: &str, overridden: bool| {
            let host = EcrHost::parse(host).unwrap();
            let (fips, dual_stack) = endpoint_variant(&host, overridden);
            let params = Params::builder()
                .region(host.region.clone())
                .use_fips(fips)
                .use_dual_stack(dual_stack)
                .build()
                .unwrap();
            let resolver = aws_sdk_ecr::config::endpoint::DefaultResolver::new();
            let endpoint = resolver.resolve_endpoint(&params);
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap()
                .block_on(endpoint)
                .unwrap()
                .url()
                .to_owned()
        };
        let cases = [
            (
                "111111111111.dkr.ecr.us-east-1.amazonaws.com",
                "https://api.ecr.us-east-1.amazonaws.com",
            ),
            (
                "111111111111.dkr.ecr-fips.us-east-1.amazonaws.com",
                "https://api.ecr-fips.us-east-1.amazonaws.com",
            ),
            (
                "111111111111.dkr-ecr.us-east-1.on.aws",
                "https://ecr.us-east-1.api.aws",
            ),
            (
                "111111111111.dkr-ecr-fips.us-east-1.on.aws",
                "https://ecr-fips.us-east-1.api.aws",
            ),
            (
                "111111111111.dkr.ecr.cn-north-1.amazonaws.com.cn",
                "https://api.ecr.cn-north-1.amazonaws.com.cn",
            ),
        ];
        for (host, endpoint) in cases {
            assert_eq!(resolve(host, false), endpoint, "{host}");
        }
        assert_eq!(
            resolve("111111111111.dkr.ecr-fips.us-east-1.amazonaws.com", true),
            "https://api.ecr.us-east-1.amazonaws.com",
            "an endpoint override sets the variant aside"
        );
    }

    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn part_size_follows_ecr_within_its_bounds() {
        assert_eq!(
            part_bytes(Some(10 * MIB as i64), 100 * MIB),
            10 * MIB as usize
        );
        assert_eq!(part_bytes(None, 100 * MIB), 10 * MIB as usize);
        assert_eq!(part_bytes(Some(1024), 100 * MIB), 5 * MIB as usize);
        assert_eq!(
            part_bytes(Some(64 * MIB as i64), 100 * MIB),
            20 * MIB as usize
        );
    }

    #[test]
    fn part_size_grows_to_stay_within_4200_parts() {
        let size = 50_000 * MIB;
        let bytes = part_bytes(Some(10 * MIB as i64), size) as u64;
        assert!(size.div_ceil(bytes) <= MAX_PARTS, "{bytes}");
        assert!(bytes <= MAX_PART_BYTES as u64);
    }
}
