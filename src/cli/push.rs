//! `ecr-push push`: its flags, and their validation into the flow's [`Push`].

use clap::Args;
use clap::builder::BoolValueParser;

use super::values::{
    check_host, parse_compression, parse_platforms, parse_tags, repository_is_not_a_uri,
};
use crate::auth;
use crate::ecr_host::{self, EcrHost};
use crate::flow::{Destination, Push, ScanGate};
use crate::names::{
    EXTERNAL_ID_CHARS, Invalid as Error, check_account, check_chars, check_region,
    check_repository, check_role_arn, invalid,
};
use crate::scan::Severity;

/// STS `RoleSessionName`: 2 to 64 characters of `[\w+=,.@-]`.
const SESSION_NAME_CHARS: std::ops::RangeInclusive<usize> = 2..=64;
/// STS session durations: 15 minutes to 12 hours (the role's own maximum may be lower).
const DURATION_SECONDS: std::ops::RangeInclusive<i32> = 900..=43200;
/// Blobs uploaded at once; ECR's write quotas are shared by the whole account.
const CONCURRENCY: std::ops::RangeInclusive<usize> = 1..=16;

#[derive(Args, Debug)]
#[command(
    after_help = super::PUSH_EXAMPLES,
    after_long_help = concat!(
        "Examples:\n", push_examples!(), "\n\n", "Exit codes:\n", exit_codes!(),
        "\n\nEnvironment:\n", environment!()
    )
)]
pub struct PushArgs {
    /// The image, in skopeo's transport syntax: NAME[:TAG] or docker-daemon:NAME[:TAG]
    /// (the Docker engine's), oci:DIR[:REF] (an OCI layout), oci-archive:FILE[:REF],
    /// docker-archive:FILE[:NAME:TAG] (docker save), docker://HOST/REPO:TAG (a registry)
    #[arg(long, help_heading = "Image", value_name = "REFERENCE")]
    pub image: String,

    /// The ECR repository name, e.g. team/app
    #[arg(
        long,
        help_heading = "Destination",
        value_name = "NAME",
        required_unless_present = "targets"
    )]
    pub repository: Option<String>,

    /// Several destinations, one per line (repeatable): HOST/REPOSITORY[,role=ROLE_ARN]
    /// [,external-id=ID]. Each role= is assumed with role-to-assume's credentials; no tag
    /// is written anywhere unless the image is on every target. Replaces repository,
    /// registry, registry-id and cross-account-role
    #[arg(long, help_heading = "Destination", value_name = "LINES")]
    pub targets: Vec<String>,

    /// Tags to set, separated by commas or newlines (when empty: the REF of the image,
    /// else latest)
    #[arg(long, help_heading = "Image", value_name = "TAGS")]
    pub tags: Option<String>,

    /// For a multi-platform image: the platforms to keep, as OS/ARCH[/VARIANT] separated
    /// by commas or newlines (when empty: the whole index, as it is)
    #[arg(long, help_heading = "Image", value_name = "PLATFORMS")]
    pub platforms: Option<String>,

    /// Layers as they are in the source (keep), or uncompressed layers compressed on the
    /// way (gzip, zstd), which rewrites the manifests that list them
    #[arg(
        long,
        help_heading = "Image",
        value_name = "KEEP|GZIP|ZSTD",
        default_value = "keep"
    )]
    pub compression: String,

    /// The level of compression: gzip 1-9 (when empty: 6), zstd 1-19 (when empty: 3)
    #[arg(long, help_heading = "Image", value_name = "N")]
    pub compression_level: Option<String>,

    /// What refers to the image in the source (signatures, SBOMs, attestations: OCI 1.1
    /// referrers and cosign's sha256-<hex>.sig/.att/.sbom tags) goes along: true (what
    /// the destination refuses is a warning), false, or required (a refusal fails)
    #[arg(
        long,
        help_heading = "Image",
        value_name = "TRUE|FALSE|REQUIRED",
        default_value = "true"
    )]
    pub referrers: String,

    /// BuildKit's attestation manifests in an index: keep (as they are), referrers (out
    /// of the index, each pushed as an OCI 1.1 referrer of its platform's manifest), drop
    #[arg(
        long,
        help_heading = "Image",
        value_name = "KEEP|REFERRERS|DROP",
        default_value = "keep"
    )]
    pub attestations: String,

    /// AWS region of the registry (when empty: AWS_REGION, AWS_DEFAULT_REGION or the
    /// profile's)
    #[arg(long, help_heading = "Credentials", value_name = "REGION")]
    pub aws_region: Option<String>,

    /// IAM role to assume with the job's GitHub OIDC token. Without it, the default AWS
    /// credential chain is used (environment, profile, SSO, instance role).
    #[arg(long, help_heading = "Credentials", value_name = "ARN")]
    pub role_to_assume: Option<String>,

    /// Audience of the OIDC token; the role's trust policy checks it as
    /// token.actions.githubusercontent.com:aud
    #[arg(
        long,
        help_heading = "Credentials",
        value_name = "AUD",
        default_value = "sts.amazonaws.com"
    )]
    pub audience: String,

    /// Session name of the assumed roles, seen in CloudTrail
    #[arg(
        long,
        help_heading = "Credentials",
        value_name = "NAME",
        default_value = "GitHubActions"
    )]
    pub role_session_name: String,

    /// Lifetime of the role session in seconds (a chained second role is capped at 3600)
    #[arg(
        long,
        help_heading = "Credentials",
        allow_negative_numbers = true,
        value_name = "SECONDS",
        default_value_t = 3600
    )]
    pub role_duration_seconds: i32,

    /// A second role to assume with the first role's credentials, typically in the
    /// account that owns the registry (role chaining)
    #[arg(long, help_heading = "Credentials", value_name = "ARN")]
    pub cross_account_role: Option<String>,

    /// The sts:ExternalId the second role's trust policy requires
    #[arg(long, help_heading = "Credentials", value_name = "ID")]
    pub cross_account_external_id: Option<String>,

    /// Send session tags (Repository, Workflow, Actor, Commit, Branch, RunId) on the
    /// cross-account hop; its trust policy must then allow sts:TagSession
    #[arg(long, help_heading = "Credentials", value_name = "BOOL", num_args = 0..=1, default_value = "false",
          default_missing_value = "true", value_parser = BoolValueParser::new())]
    pub session_tags: bool,

    /// Account id of the registry (when empty: the account of the final credentials)
    #[arg(long, help_heading = "Destination", value_name = "ACCOUNT")]
    pub registry_id: Option<String>,

    /// Create the repository when it does not exist
    #[arg(long, help_heading = "Destination", value_name = "BOOL", num_args = 0..=1, default_value = "false",
          default_missing_value = "true", value_parser = BoolValueParser::new())]
    pub create_repository: bool,

    /// Write the registry's credentials into $DOCKER_CONFIG/config.json (default
    /// ~/.docker) so later steps can docker pull; needs ecr:GetAuthorizationToken
    #[arg(long, help_heading = "Destination", value_name = "BOOL", num_args = 0..=1, default_value = "false",
          default_missing_value = "true", value_parser = BoolValueParser::new())]
    pub docker_login: bool,

    /// How the image travels: api (ECR's layer-upload API, repository-scoped permissions
    /// only) or registry (the OCI distribution API, with a registry login); when empty,
    /// api for ECR and registry for any other registry
    #[arg(long, help_heading = "Destination", value_name = "API|REGISTRY")]
    pub transport: Option<String>,

    /// The registry to push to, as a host: ECR's ACCOUNT.dkr.ecr.REGION.amazonaws.com (or
    /// its FIPS, dual-stack or China form), or any OCI registry (no AWS then; the login
    /// comes from the Docker config). When empty: the ECR registry of registry-id, else of
    /// the final credentials' account
    #[arg(long, help_heading = "Destination", value_name = "HOST")]
    pub registry: Option<String>,

    /// How many blobs to upload at once (1-16)
    #[arg(
        long,
        help_heading = "Limits",
        allow_negative_numbers = true,
        value_name = "N",
        default_value_t = 4
    )]
    pub concurrency: i64,

    /// Give up after this many minutes (decimals allowed): the push stops with an error,
    /// and a tag is only ever moved to a complete image
    #[arg(
        long,
        help_heading = "Limits",
        allow_negative_numbers = true,
        value_name = "MINUTES",
        default_value_t = 60.0
    )]
    pub timeout_minutes: f64,

    /// Scan each pushed image with ECR before any tag is written, and fail when a finding
    /// is at or above this severity: critical, high, medium or low (when empty: no scan).
    /// Needs ecr:StartImageScan and ecr:DescribeImageScanFindings
    #[arg(long, help_heading = "Scan", value_name = "SEVERITY")]
    pub scan_fail_on: Option<String>,

    /// How long to wait for ECR's scans, in minutes (decimals allowed)
    #[arg(
        long,
        help_heading = "Scan",
        allow_negative_numbers = true,
        value_name = "MINUTES",
        default_value_t = 10.0
    )]
    pub scan_timeout_minutes: f64,

    /// Write the pushed manifest's digest to FILE, for scripts (skopeo's --digestfile)
    #[arg(long, help_heading = "Output", value_name = "FILE")]
    pub digest_file: Option<std::path::PathBuf>,

    /// Log each API call and part (RUNNER_DEBUG=1 turns it on in Actions)
    #[arg(long, help_heading = "Output", short, value_name = "BOOL", num_args = 0..=1, default_value = "false",
          default_missing_value = "true", value_parser = BoolValueParser::new())]
    pub verbose: bool,
}

impl PushArgs {
    /// Every input checked, in the order the help lists them, into the flow's [`Push`]:
    /// the first input that is wrong is the one named.
    pub fn validate(self) -> Result<Push, Error> {
        if self.image.trim().is_empty() {
            return Err(invalid("image", "must not be empty"));
        }
        let targets = self.targets()?;
        let repository = match (&self.repository, targets.first()) {
            (Some(repository), None) => {
                repository_is_not_a_uri(repository)?;
                check_repository(repository)?;
                repository.clone()
            }
            (_, Some(first)) => first.repository.clone(),
            (None, None) => return Err(invalid("repository", "must not be empty")),
        };
        // An empty `tags` is the default, as the help says (the runner passes every input,
        // set or not, so an empty INPUT_TAGS never arrives here).
        let tags = self
            .tags
            .as_deref()
            .filter(|t| !t.trim().is_empty())
            .map(parse_tags)
            .transpose()?;
        let platforms = self.platforms.as_deref().map(parse_platforms).transpose()?;
        let compression = parse_compression(&self.compression, self.compression_level.as_deref())?;
        let referrers = match self.referrers.trim() {
            "" => Some(crate::image::Referrers::default()),
            text => crate::image::Referrers::parse(text),
        }
        .ok_or_else(|| {
            let given = self.referrers.trim();
            invalid(
                "referrers",
                format!("`{given}` is not true, false or required"),
            )
        })?;
        let attestations = match self.attestations.trim() {
            "" => Some(crate::image::Attestations::default()),
            text => crate::image::Attestations::parse(text),
        }
        .ok_or_else(|| {
            let given = self.attestations.trim();
            invalid(
                "attestations",
                format!("`{given}` is not keep, referrers or drop"),
            )
        })?;
        let region = self.aws_region.clone().filter(|r| !r.is_empty());
        if let Some(region) = &region {
            check_region(region)?;
        }
        // With targets, STS is called in the first ECR target's region unless told.
        let region = region.or_else(|| {
            targets.iter().find_map(|t| match &t.host {
                crate::targets::Host::Ecr(host) => Some(host.region.clone()),
                crate::targets::Host::Registry(_) => None,
            })
        });
        let auth = self.credentials(region.as_deref())?;
        let target = if targets.is_empty() {
            self.target(region, auth.cross_account.is_some())?
        } else {
            self.release_transport(region, &targets)?
        };
        let concurrency = self.concurrency()?;
        let deadline = self.deadline()?;
        let scan = self.scan_gate(&targets, &target.destination)?;
        Ok(Push {
            image: self.image,
            repository,
            tags,
            platforms: platforms.unwrap_or_default(),
            referrers,
            attestations,
            compression,
            region: target.region,
            auth,
            registry_id: target.registry_id,
            ecr_host: target.ecr_host,
            create_repository: self.create_repository,
            docker_login: self.docker_login,
            concurrency,
            destination: target.destination,
            deadline,
            targets,
            session_tags: self.session_tags,
            digest_file: self.digest_file,
            scan,
        })
    }

    /// `scan-fail-on` and `scan-timeout-minutes`: the gate, for ECR through its API
    /// only, since the scan is ECR's API (with `targets`, the first ECR target's).
    fn scan_gate(
        &self,
        targets: &[crate::targets::Target],
        destination: &Destination,
    ) -> Result<Option<ScanGate>, Error> {
        let Some(text) = self
            .scan_fail_on
            .as_deref()
            .filter(|t| !t.trim().is_empty())
        else {
            return Ok(None);
        };
        let fail_on = Severity::threshold(text).ok_or_else(|| {
            invalid(
                "scan-fail-on",
                format!("`{}` is not critical, high, medium or low", text.trim()),
            )
        })?;
        if !targets.is_empty() && targets.iter().all(|t| t.account().is_none()) {
            return Err(invalid(
                "scan-fail-on",
                "scans with ECR's scanning API, and no target is ECR; leave scan-fail-on empty",
            ));
        }
        match destination {
            Destination::Ecr { registry: false } => {}
            Destination::Ecr { registry: true } => {
                return Err(invalid(
                    "scan-fail-on",
                    "needs ECR's API (StartImageScan, DescribeImageScanFindings); with transport: registry, leave scan-fail-on empty",
                ));
            }
            Destination::Registry(host) => {
                return Err(invalid(
                    "scan-fail-on",
                    format!(
                        "scans with ECR's scanning API, and the registry {host} is not ECR; leave scan-fail-on empty"
                    ),
                ));
            }
        }
        let minutes = self.scan_timeout_minutes;
        if !(minutes > 0.0 && minutes <= 360.0) {
            return Err(invalid(
                "scan-timeout-minutes",
                format!("{minutes} is out of range; use more than 0 and at most 360 minutes"),
            ));
        }
        if minutes > self.timeout_minutes {
            return Err(invalid(
                "scan-timeout-minutes",
                format!(
                    "{minutes} is longer than timeout-minutes ({}), which would stop the push first; raise timeout-minutes or lower scan-timeout-minutes",
                    self.timeout_minutes
                ),
            ));
        }
        Ok(Some(ScanGate {
            fail_on,
            minutes,
            push_ends: None,
        }))
    }

    /// `targets`, checked whole, and the inputs it replaces left empty.
    fn targets(&self) -> Result<Vec<crate::targets::Target>, Error> {
        if self.targets.iter().all(|t| t.trim().is_empty()) {
            return Ok(Vec::new());
        }
        for (input, set) in [
            ("repository", self.repository.is_some()),
            ("registry", self.registry.is_some()),
            ("registry-id", self.registry_id.is_some()),
            ("cross-account-role", self.cross_account_role.is_some()),
            (
                "cross-account-external-id",
                self.cross_account_external_id.is_some(),
            ),
        ] {
            if set {
                return Err(invalid(
                    input,
                    format!(
                        "is set beside targets, which names each target's registry, repository and role; remove {input}"
                    ),
                ));
            }
        }
        let targets = crate::targets::parse(self.targets.iter().map(String::as_str))?;
        if self.session_tags && targets.iter().all(|t| t.role.is_none()) {
            return Err(invalid(
                "session-tags",
                "tags are sent on a chained hop only, and no target has role=",
            ));
        }
        Ok(targets)
    }

    /// How the targets are pushed to: ECR's API or its registry endpoint; ECR inputs
    /// are refused when no target is ECR.
    fn release_transport(
        &self,
        region: Option<String>,
        targets: &[crate::targets::Target],
    ) -> Result<Target, Error> {
        let transport = self
            .transport
            .as_deref()
            .map(|t| t.trim().to_ascii_lowercase());
        let registry = match transport.as_deref() {
            None | Some("" | "api") => false,
            Some("registry") => true,
            Some(other) => {
                return Err(invalid(
                    "transport",
                    format!("`{other}` is not api or registry"),
                ));
            }
        };
        if registry && self.create_repository {
            return Err(invalid(
                "create-repository",
                "needs ECR's API (CreateRepository); with transport: registry, create the repositories beforehand",
            ));
        }
        if targets.iter().all(|t| t.account().is_none()) {
            for (input, set) in [
                ("role-to-assume", self.role_to_assume.is_some()),
                ("create-repository", self.create_repository),
                ("docker-login", self.docker_login),
            ] {
                if set {
                    return Err(invalid(
                        input,
                        "is for ECR, and no target is ECR; remove it",
                    ));
                }
            }
        }
        Ok(Target {
            destination: Destination::Ecr { registry },
            ecr_host: None,
            registry_id: None,
            region,
        })
    }

    /// The role chain: the first role, the token's audience, the session, and the
    /// cross-account hop with what only it takes (an external id, session tags).
    fn credentials(&self, region: Option<&str>) -> Result<auth::Request, Error> {
        if let Some(arn) = &self.role_to_assume {
            check_role_arn("role-to-assume", arn, region)?;
        }
        if self.audience.trim().is_empty() {
            return Err(invalid("audience", "must not be empty"));
        }
        check_chars(
            "role-session-name",
            &self.role_session_name,
            SESSION_NAME_CHARS,
            "+=,.@-",
        )?;
        if !DURATION_SECONDS.contains(&self.role_duration_seconds) {
            return Err(invalid(
                "role-duration-seconds",
                format!(
                    "{} is out of range; STS accepts {} to {}",
                    self.role_duration_seconds,
                    DURATION_SECONDS.start(),
                    DURATION_SECONDS.end()
                ),
            ));
        }
        Ok(auth::Request {
            role_to_assume: self.role_to_assume.clone(),
            audience: self.audience.trim().to_owned(),
            role_session_name: self.role_session_name.clone(),
            role_duration_seconds: self.role_duration_seconds,
            cross_account: self.cross_account(region)?,
        })
    }

    fn cross_account(&self, region: Option<&str>) -> Result<Option<auth::CrossAccount>, Error> {
        match &self.cross_account_role {
            Some(role) => {
                check_role_arn("cross-account-role", role, region)?;
                if let Some(id) = &self.cross_account_external_id {
                    check_chars(
                        "cross-account-external-id",
                        id,
                        EXTERNAL_ID_CHARS,
                        "+=,.@:/-",
                    )?;
                }
                Ok(Some(auth::CrossAccount {
                    role: role.clone(),
                    external_id: self.cross_account_external_id.clone(),
                    session_tags: self.session_tags,
                }))
            }
            None if self.cross_account_external_id.is_some() => Err(invalid(
                "cross-account-external-id",
                "is set but cross-account-role is not; set both or neither",
            )),
            None if self.session_tags => Err(invalid(
                "session-tags",
                "tags are sent on the cross-account hop only; set cross-account-role",
            )),
            None => Ok(None),
        }
    }

    /// Where the image goes: `registry` (an ECR host pins the account and the region,
    /// which must then agree with `registry-id` and `aws-region`), and how (`transport`).
    fn target(&self, region: Option<String>, chained: bool) -> Result<Target, Error> {
        if let Some(id) = &self.registry_id {
            check_account("registry-id", id)?;
        }
        let registry = self
            .registry
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty());
        if let Some(host) = registry
            && host.eq_ignore_ascii_case(ecr_host::ECR_PUBLIC)
        {
            return Err(invalid(
                "registry",
                format!(
                    "{host} is ECR Public, whose own API (ecr-public, in us-east-1) ecr-push does not speak yet; push there with docker push or crane after aws ecr-public get-login-password --region us-east-1 | docker login --username AWS --password-stdin {host}"
                ),
            ));
        }
        let ecr_host = registry.and_then(EcrHost::parse);
        let mut registry_id = self.registry_id.clone();
        let mut region = region;
        if let Some(EcrHost {
            account,
            region: host_region,
            ..
        }) = &ecr_host
        {
            if registry_id.as_ref().is_some_and(|id| id != account) {
                return Err(invalid(
                    "registry-id",
                    format!(
                        "is not {account}, the account of registry {}",
                        registry.unwrap_or_default()
                    ),
                ));
            }
            if region.as_ref().is_some_and(|r| r != host_region) {
                return Err(invalid(
                    "aws-region",
                    format!(
                        "is not {host_region}, the region of registry {}",
                        registry.unwrap_or_default()
                    ),
                ));
            }
            registry_id = Some(account.clone());
            region = Some(host_region.clone());
        }
        let destination = self.destination(registry, ecr_host.is_some(), chained, &registry_id)?;
        Ok(Target {
            destination,
            ecr_host,
            registry_id,
            region,
        })
    }

    /// ECR's API, ECR's registry endpoint, or another registry, which takes none of the
    /// inputs that are for ECR.
    fn destination(
        &self,
        registry: Option<&str>,
        is_ecr: bool,
        chained: bool,
        registry_id: &Option<String>,
    ) -> Result<Destination, Error> {
        let transport = self
            .transport
            .as_deref()
            .map(|t| t.trim().to_ascii_lowercase());
        match (registry, is_ecr, transport.as_deref()) {
            (_, _, Some(other)) if !matches!(other, "" | "api" | "registry") => Err(invalid(
                "transport",
                format!("`{other}` is not api or registry"),
            )),
            (Some(host), false, transport) => {
                if transport == Some("api") {
                    return Err(invalid(
                        "transport",
                        format!(
                            "api is ECR's layer-upload API, and {host} is not ECR; leave transport empty or set registry"
                        ),
                    ));
                }
                check_host(host)?;
                for (input, set) in [
                    ("role-to-assume", self.role_to_assume.is_some()),
                    ("cross-account-role", chained),
                    ("registry-id", registry_id.is_some()),
                    ("create-repository", self.create_repository),
                    ("docker-login", self.docker_login),
                ] {
                    if set {
                        return Err(invalid(
                            input,
                            format!("is for ECR, and the registry {host} is not ECR; remove it"),
                        ));
                    }
                }
                Ok(Destination::Registry(host.to_owned()))
            }
            (_, _, transport) => {
                let registry = transport == Some("registry");
                if registry && self.create_repository {
                    return Err(invalid(
                        "create-repository",
                        "needs ECR's API (CreateRepository); with transport: registry, create the repository beforehand",
                    ));
                }
                Ok(Destination::Ecr { registry })
            }
        }
    }

    fn concurrency(&self) -> Result<usize, Error> {
        // Read as a signed number so that `-1` is out of range rather than "unexpected".
        usize::try_from(self.concurrency)
            .ok()
            .filter(|c| CONCURRENCY.contains(c))
            .ok_or_else(|| {
                invalid(
                    "concurrency",
                    format!(
                        "{} is out of range; use {} to {}",
                        self.concurrency,
                        CONCURRENCY.start(),
                        CONCURRENCY.end()
                    ),
                )
            })
    }

    fn deadline(&self) -> Result<std::time::Duration, Error> {
        // GitHub stops any job after 6 hours.
        if !(self.timeout_minutes > 0.0 && self.timeout_minutes <= 360.0) {
            return Err(invalid(
                "timeout-minutes",
                format!(
                    "{} is out of range; use more than 0 and at most 360 minutes",
                    self.timeout_minutes
                ),
            ));
        }
        Ok(std::time::Duration::from_secs_f64(
            self.timeout_minutes * 60.0,
        ))
    }
}

/// Where `registry`, `registry-id` and `aws-region` together send the image.
struct Target {
    destination: Destination,
    ecr_host: Option<EcrHost>,
    registry_id: Option<String>,
    region: Option<String>,
}
