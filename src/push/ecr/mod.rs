//! The ECR API destination: BatchCheckLayerAvailability, then per missing blob
//! InitiateLayerUpload → UploadLayerPart (in order) → CompleteLayerUpload, then PutImage
//! per tag. This needs only repository-scoped `ecr:` actions, no registry login and so
//! no `ecr:GetAuthorizationToken` on `*`.
//!
//! The parts are split by what they talk to: `clients` (the SDK clients, one per quota
//! with its own retry partition, and the pacing of the write calls), `layers` (the
//! layer upload), `images` (BatchGetImage and PutImage), `login`
//! (GetAuthorizationToken) and `scan` (the scan gate's StartImageScan and
//! DescribeImageScanFindings). This file holds the destination they share, and the
//! `Target` every call's error names.

mod clients;
mod images;
mod layers;
mod login;
mod part_body;
mod scan;

use std::collections::HashSet;

use aws_sdk_ecr::config::http::HttpResponse;
use aws_sdk_ecr::error::ProvideErrorMetadata;

pub use clients::Environment;
pub use login::source_login;

use clients::{Clients, Paces};
use part_body::Bodies;

use super::{Destination, Error, Tagged};
use crate::ecr_host::EcrHost;
use crate::image::{BlobReader, Digest, Manifest};

pub struct Ecr {
    clients: Clients,
    target: Target,
    /// The registry as its users name it (the FIPS or dual-stack host when given so).
    host: EcrHost,
    create_repository: bool,
    /// One attempt of a small call; parts add time for their bytes.
    request_timeout: std::time::Duration,
    paces: Paces,
    /// Part bodies for reuse, from the process's one pool (every target's).
    bodies: Bodies,
}

impl Ecr {
    /// `environment`: what the environment variables say of the API calls (an endpoint
    /// URL, the pace).
    pub fn new(
        config: &aws_config::SdkConfig,
        host: EcrHost,
        environment: Environment,
        repository: String,
        create_repository: bool,
        principal: String,
        concurrency: usize,
    ) -> Self {
        let target = Target::new(&host, repository, principal);
        Self {
            clients: Clients::new(config, &host, environment, &target.endpoint),
            target,
            host,
            create_repository,
            request_timeout: crate::auth::attempt_timeout(config),
            paces: Paces::new(concurrency, environment.paced),
            bodies: Bodies::shared(),
        }
    }

    /// The registry's host name, as `docker pull` uses it.
    pub fn registry_host(&self) -> String {
        self.host.to_string()
    }
}

/// What the calls act on and who makes them: what their errors name.
struct Target {
    registry_id: String,
    region: String,
    /// Empty for a registry login, which acts on no repository.
    repository: String,
    /// The identity making the calls, for messages about permissions.
    principal: String,
    /// Where the calls go, for a call that got no answer.
    endpoint: crate::sdk::Endpoint,
}

impl Target {
    fn new(host: &EcrHost, repository: String, principal: String) -> Self {
        Self {
            registry_id: host.account.clone(),
            region: host.region.clone(),
            repository,
            principal,
            endpoint: crate::sdk::Endpoint::default(),
        }
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
            target: self.to_string(),
            reason: crate::sdk::describe_at(err, &self.endpoint),
            hint,
        }
    }

    /// An answer to `call` without `field`, which ECR always sends: going on with an
    /// empty value would only fail later, and less clearly.
    fn lacking(&self, call: &'static str, field: &str) -> Error {
        Error::Api {
            call,
            target: self.to_string(),
            reason: format!("the answer has no {field}"),
            hint: String::new(),
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "repository {} in registry {} ({})",
            self.repository, self.registry_id, self.region
        )
    }
}

impl Destination for Ecr {
    fn calls(&self) -> Vec<(String, u64)> {
        self.clients.calls.snapshot()
    }

    fn throttled(&self) -> Vec<(String, u64)> {
        self.paces.throttled()
    }

    fn is_ecr(&self) -> bool {
        true
    }

    async fn missing(&self, digests: &[&Digest]) -> Result<HashSet<Digest>, Error> {
        self.missing_layers(digests).await
    }

    async fn tagged(&self, manifest: &Manifest, tags: &[String]) -> HashSet<String> {
        self.tags_on(manifest, tags).await
    }

    async fn tag_states(
        &self,
        manifest: &Manifest,
        tags: &[String],
    ) -> Result<Vec<super::TagState>, Error> {
        self.states_of(manifest, tags).await
    }

    async fn upload(&self, blob: BlobReader, sent: &crate::progress::Sent) -> Result<(), Error> {
        self.upload_layer(blob, sent).await
    }

    async fn put_manifest(&self, manifest: &Manifest, tag: Option<&str>) -> Result<Tagged, Error> {
        self.put_image(manifest, tag).await
    }
}
