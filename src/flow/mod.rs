//! One push, top to bottom: inputs (validated by the CLI into a [`Push`]) → source
//! image (local, so a bad image fails before any network call) → credentials → push →
//! report. Each step is a module that knows nothing of the ones after it; this is the
//! only place that knows their order; `release.rs` is the same for several targets.

mod release;

use std::process::ExitCode;

use crate::actions::Runtime;
use crate::ecr_host::EcrHost;
use crate::image::{self, Image};
use crate::push::Destination as _;
use crate::{actions, auth, docker_config, push as destination, report};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Inputs(#[from] crate::names::Invalid),
    #[error(transparent)]
    Image(#[from] image::Error),
    #[error(transparent)]
    Auth(#[from] auth::Error),
    #[error(transparent)]
    Push(#[from] destination::Error),
    #[error(transparent)]
    DockerConfig(#[from] docker_config::Error),
    #[error(transparent)]
    Actions(#[from] actions::Error),
    #[error("could not start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error(
        "timeout-minutes: the push did not finish within {0} minutes and was stopped; no tag was moved to an incomplete image. Raise timeout-minutes for a slow link or a large image"
    )]
    Deadline(f64),
    #[error("targets: {0}")]
    Release(String),
    #[error(
        "scan-fail-on: {count} finding{plural} at or above {threshold}, the first {first}{also}; no tag was moved. The job summary lists them: fix the image, or raise scan-fail-on",
        plural = if *count == 1 { "" } else { "s" },
        also = match unscanned {
            0 => String::new(),
            1 => ", and 1 image could not be scanned".to_owned(),
            n => format!(", and {n} images could not be scanned"),
        }
    )]
    ScanRefused {
        count: usize,
        threshold: crate::scan::Severity,
        first: String,
        /// Images whose scan failed or timed out beside these findings.
        unscanned: usize,
    },
    #[error("digest-file: could not write {path}: {source}")]
    DigestFile {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

impl Error {
    /// 2 when the inputs are wrong (nothing was sent), 1 when the push failed.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Inputs(_) => ExitCode::from(2),
            Error::Image(e) if e.is_input() => ExitCode::from(2),
            _ => ExitCode::FAILURE,
        }
    }
}

/// A validated push request.
#[derive(Debug)]
pub struct Push {
    pub image: String,
    pub repository: String,
    /// `None`: the default (the image reference's tag, else `latest`), known once the
    /// image is open.
    pub tags: Option<Vec<String>>,
    /// Empty: push every platform of an index.
    pub platforms: Vec<crate::image::Platform>,
    /// Whether what refers to the image goes along (`referrers`).
    pub referrers: image::Referrers,
    /// What becomes of BuildKit's attestation manifests (`attestations`).
    pub attestations: image::Attestations,
    pub compression: crate::image::Compression,
    pub region: Option<String>,
    pub auth: auth::Request,
    pub registry_id: Option<String>,
    /// The ECR host the `registry` input named, in the form it was given (FIPS,
    /// dual-stack), for the endpoints it asks for and the URIs written out.
    pub ecr_host: Option<EcrHost>,
    pub create_repository: bool,
    pub docker_login: bool,
    pub concurrency: usize,
    pub destination: Destination,
    /// The whole push's deadline (`timeout-minutes`).
    pub deadline: std::time::Duration,
    /// Several destinations (`targets`), which replace `repository`, `registry`,
    /// `registry-id` and the cross-account role; empty for one.
    pub targets: Vec<crate::targets::Target>,
    /// `session-tags`, for each target's chained role.
    pub session_tags: bool,
    /// Where the digest is written for scripts (`digest-file`).
    pub digest_file: Option<std::path::PathBuf>,
    /// The scan gate (`scan-fail-on`), off when `None`.
    pub scan: Option<ScanGate>,
}

/// Scan before tagging, and tag only when no finding is at or above `fail_on`.
#[derive(Debug, Clone, Copy)]
pub struct ScanGate {
    pub fail_on: crate::scan::Severity,
    /// How long the scans may take (`scan-timeout-minutes`).
    pub minutes: f64,
    /// When the push's own deadline (`timeout-minutes`) ends: set by [`push`] as its
    /// clock starts, so the scans stop before it with a line that names them.
    pub push_ends: Option<std::time::Instant>,
}

/// How long before the push's deadline the scans stop: the last poll, the summary
/// and the error line are written in it.
const SCAN_MARGIN: std::time::Duration = std::time::Duration::from_secs(5);

impl Push {
    /// What of the source is pushed.
    fn scope(&self) -> image::Scope {
        image::Scope {
            platforms: self.platforms.clone(),
            referrers: self.referrers,
            attestations: self.attestations,
        }
    }

    /// How each destination is pushed to.
    fn options(&self, runtime: &Runtime) -> destination::Options {
        destination::Options {
            concurrency: self.concurrency,
            progress: runtime.progress(),
            referrers: self.referrers,
        }
    }
}

/// Where and how the image goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Destination {
    /// ECR, through its layer-upload API or, with `registry: true`, its registry endpoint.
    Ecr { registry: bool },
    /// Any other OCI registry, by host.
    Registry(String),
}

/// Runs the push on a runtime of its own, within its deadline.
pub fn push(
    push: Push,
    runtime: &Runtime,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<(), Error> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?
        .block_on(async {
            let deadline = push.deadline;
            let mut push = push;
            if let Some(gate) = &mut push.scan {
                gate.push_ends = Some(std::time::Instant::now() + deadline);
            }
            tokio::time::timeout(deadline, run(push, runtime, env))
                .await
                .unwrap_or(Err(Error::Deadline(deadline.as_secs_f64() / 60.0)))
        })
}

async fn run(
    push: Push,
    runtime: &Runtime,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<(), Error> {
    // A registry's login (source or destination) is masked before it is used.
    let docker_login = |host: &str| {
        docker_config::lookup(host, env).inspect(|login| runtime.mask(&login.password))
    };
    let (session, source_login) = source_login(&push, runtime, env, &docker_login).await?;
    let login = |host: &str| match &source_login {
        Some((source, login)) if source == host => login.clone(),
        _ => docker_login(host),
    };
    let image = Image::open(
        &push.image,
        &push.scope(),
        env("DOCKER_HOST").as_deref(),
        login,
        runtime.masker(),
        push.compression,
    )
    .await?;
    let tags = match push.tags.clone() {
        Some(tags) => tags,
        None => vec![crate::names::default_tag(image.tag.as_deref())?],
    };
    let rewritten_for = describe(&push, &image);
    if !push.targets.is_empty() {
        let digest = image.manifest.digest.clone();
        let original = image.original_digest.clone();
        let (reports, scans) =
            release::run(&push, session, image, &tags, &login, runtime, env).await?;
        let release = report::Release {
            digest: &digest,
            original_digest: original.as_ref(),
            rewritten_for: &rewritten_for,
            tags: &tags,
            landed: release::outcomes(&push, &reports),
        };
        tell(&push, &release.first(), Some(&release), runtime)?;
        return tell_scans(&push, scans, runtime);
    }

    let (registry, report, scans) = match &push.destination {
        Destination::Registry(host) => {
            // No AWS at all: the registry's login is the Docker CLI's, masked first, as is
            // each token its realm hands out.
            let login = login(host).map(|login| (login.username, login.password));
            let report = push_to_registry(&push, host, login, &image, &tags, runtime, env).await?;
            (host.clone(), report, None)
        }
        Destination::Ecr { registry } => {
            let session = match session {
                Some(session) => session,
                None => credentials(&push, runtime, env).await?,
            };
            push_to_ecr(&push, session, *registry, &image, &tags, runtime, env).await?
        }
    };

    let pushed = report::Pushed {
        registry: &registry,
        repository: &push.repository,
        digest: &image.manifest.digest,
        original_digest: image.original_digest.as_ref(),
        rewritten_for: &rewritten_for,
        tags: &tags,
        report: &report,
    };
    tell(&push, &pushed, None, runtime)?;
    tell_scans(&push, scans, runtime)
}

/// A passed scan gate's `scan` output and counts in the job summary.
fn tell_scans(
    push: &Push,
    scans: Option<Vec<crate::scan::Scanned>>,
    runtime: &Runtime,
) -> Result<(), Error> {
    if let (Some(gate), Some(scans)) = (push.scan, scans) {
        runtime.set_outputs(&[("scan", &crate::scan::output(&scans).to_string())])?;
        runtime.append_summary(&crate::scan::passed_summary(&scans, gate.fail_on))?;
    }
    Ok(())
}

/// The outputs, the job summary, the digest file and the last line of a push that
/// landed: of one target, or of a release's first target with every target's rows.
fn tell(
    push: &Push,
    pushed: &report::Pushed<'_>,
    release: Option<&report::Release<'_>>,
    runtime: &Runtime,
) -> Result<(), Error> {
    let mut outputs: Vec<(&str, String)> = pushed.outputs().into_iter().collect();
    if let Some(release) = release {
        outputs.extend(release.outputs());
    }
    let outputs: Vec<(&str, &str)> = outputs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    runtime.set_outputs(&outputs)?;
    if let Some(path) = &push.digest_file {
        std::fs::write(path, pushed.digest.as_str()).map_err(|source| Error::DigestFile {
            path: path.clone(),
            source,
        })?;
    }
    match release {
        Some(release) => {
            runtime.append_summary(&release.summary())?;
            tracing::info!("{}", release.line());
        }
        None => {
            runtime.append_summary(&pushed.summary())?;
            tracing::info!("{}", pushed.line());
        }
    }
    if !runtime.in_actions() {
        // The image on stdout, a line per target, for `uri=$(ecr-push push …)`.
        match release {
            Some(release) => println!("{}", release.image_uris()),
            None => println!("{}", pushed.image_uri()),
        }
    }
    Ok(())
}

/// A `docker://` source's login, found first, once (a credential helper is not run
/// twice): the source host and its login, if any. On an ECR host with no Docker login
/// of its own it is read with the step's AWS credentials (a promotion by digest from a
/// dev account's registry), so those come first, and the same session then pushes.
async fn source_login(
    push: &Push,
    runtime: &Runtime,
    env: &impl Fn(&str) -> Option<String>,
    docker_login: &impl Fn(&str) -> Option<docker_config::Login>,
) -> Result<
    (
        Option<auth::Session>,
        Option<(String, Option<docker_config::Login>)>,
    ),
    Error,
> {
    let Some(host) = image::registry_host(&push.image) else {
        return Ok((None, None));
    };
    let login = docker_login(&host);
    let ecr_host = crate::ecr_host::EcrHost::parse(&host);
    let (Some(ecr_host), None) = (ecr_host, &login) else {
        return Ok((None, Some((host, login))));
    };
    let authenticated = credentials(push, runtime, env).await?;
    let login = destination::ecr_source_login(
        &authenticated.config,
        &ecr_host,
        destination::EcrEnvironment::read(env).endpoint_overridden,
        &authenticated.principal,
        |secret| runtime.mask(secret),
    )
    .await?;
    tracing::info!("{host}: read with a login from GetAuthorizationToken");
    Ok((Some(authenticated), Some((host, Some(login)))))
}

/// Logs what is about to be pushed; what rewrote its manifest, if anything, as the
/// report says it (`platforms linux/amd64 and compression`).
fn describe(push: &Push, image: &Image) -> String {
    let mut rewritten_for = Vec::new();
    if !push.platforms.is_empty() {
        let platforms: Vec<String> = push.platforms.iter().map(ToString::to_string).collect();
        rewritten_for.push(format!("platforms {}", platforms.join(", ")));
    }
    if image.attestations_taken > 0 {
        rewritten_for.push(match push.attestations {
            image::Attestations::Referrers => "attestations as referrers".to_owned(),
            _ => "attestations dropped".to_owned(),
        });
    }
    if push.compression != image::Compression::Keep {
        rewritten_for.push("compression".to_owned());
    }
    if let Some(original) = &image.original_digest {
        tracing::info!(
            "manifest {original} rewritten for {}: {}",
            rewritten_for.join(" and "),
            image.manifest.digest
        );
    }
    tracing::info!(
        "image {} ({}{}, {} blobs, {})",
        image.manifest.digest,
        image.manifest.media_type,
        match image.children.len() {
            0 => String::new(),
            n => format!(" of {n} manifests"),
        },
        image.blobs().len(),
        crate::units::human_bytes(destination::total_size(image.blobs()))
    );
    if !image.referrers.is_empty() {
        let kinds: Vec<&str> = image
            .referrers
            .iter()
            .map(|r| r.artifact_type.as_str())
            .collect();
        tracing::info!(
            "{} referrers go along: {}",
            image.referrers.len(),
            kinds.join(", ")
        );
    }
    rewritten_for.join(" and ")
}

/// The push to a registry that is not ECR, with its Docker login.
async fn push_to_registry(
    push: &Push,
    host: &str,
    login: Option<(String, String)>,
    image: &Image,
    tags: &[String],
    runtime: &Runtime,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<crate::report::Report, Error> {
    // For a registry that refuses one streamed PATCH per blob.
    let chunked = env("ECR_PUSH_CHUNKED").as_deref() == Some("true");
    let destination =
        destination::Registry::new(host, &push.repository, login, chunked, runtime.masker())?;
    let _group = runtime.group(&format!("Push to {host}/{}", push.repository));
    Ok(destination::push(&destination, image, tags, push.options(runtime)).await?)
}

/// Credentials, then the push to ECR through its API or, with `via_registry`, its
/// registry endpoint; the registry host, what the push did, and with the scan gate on
/// what the scans found.
async fn push_to_ecr(
    push: &Push,
    session: auth::Session,
    via_registry: bool,
    image: &Image,
    tags: &[String],
    runtime: &Runtime,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<(String, report::Report, Option<Vec<crate::scan::Scanned>>), Error> {
    let registry_id = push.registry_id.clone().unwrap_or(session.account);
    // The host as the registry input named it (FIPS, dual-stack), else the standard one.
    let host = match &push.ecr_host {
        Some(host) => host.clone(),
        None => crate::ecr_host::EcrHost::standard(&registry_id, &session.region),
    };
    let ecr = destination::Ecr::new(
        &session.config,
        host,
        destination::EcrEnvironment::read(env),
        push.repository.clone(),
        push.create_repository,
        session.principal,
        push.concurrency,
    );
    let registry = ecr.registry_host();
    // The login is fetched before anything is pushed, so a role without
    // ecr:GetAuthorizationToken fails before a tag moves; it is stored after.
    let login = if push.docker_login || via_registry {
        Some(ecr.login(|secret| runtime.mask(secret)).await?)
    } else {
        None
    };
    // With the scan gate, everything goes untagged first, so the tags move only onto a
    // scanned image.
    let gate = push.scan.filter(|_| !via_registry);
    let mut report = {
        let _group = runtime.group(&format!("Push to {registry}/{}", push.repository));
        match &login {
            Some(auth) if via_registry => {
                let password = destination::Ecr::password(auth).unwrap_or_default();
                let destination = destination::Registry::new(
                    &registry,
                    &push.repository,
                    Some(("AWS".to_owned(), password)),
                    true,
                    runtime.masker(),
                )?;
                destination::push(&destination, image, tags, push.options(runtime)).await?
            }
            _ if gate.is_some() => destination::stage(&ecr, image, push.options(runtime)).await?,
            _ => destination::push(&ecr, image, tags, push.options(runtime)).await?,
        }
    };
    let scans = match gate {
        Some(gate) => {
            let scans = scan_gate(&ecr, gate, image, runtime).await?;
            if push.referrers == image::Referrers::Required {
                destination::held_referrer_tags(&ecr, image).await?;
            }
            let states = ecr.tag_states(&image.manifest, tags).await?;
            destination::tag(&ecr, image, tags, &states, push.referrers, &mut report).await?;
            Some(scans)
        }
        None => None,
    };
    if let Some(auth) = login.filter(|_| push.docker_login) {
        let stored = docker_config::store(&registry, &auth, env)?;
        tracing::info!(
            "docker login for {registry} stored in {}",
            stored.path.display()
        );
        if let Some(helper) = stored.shadowed_by {
            tracing::warn!(
                "{} names the credential helper `{helper}`, which docker asks before `auths`; remove it for this login to be used",
                stored.path.display()
            );
        }
    }
    Ok((registry, report, scans))
}

/// The scan gate on an image pushed untagged: each platform image scanned at once,
/// within `scan-timeout-minutes`; a finding at or above the threshold, or a scan that
/// could not be done, ends the push with the findings in the job summary (and the
/// `scan` output), before any tag moves. A platform whose scan failed does not hide
/// what the others found: every scan is awaited anyway, and the summary lists both.
async fn scan_gate(
    ecr: &destination::Ecr,
    gate: ScanGate,
    image: &Image,
    runtime: &Runtime,
) -> Result<Vec<crate::scan::Scanned>, Error> {
    use crate::scan;
    let _group = runtime.group("Scan");
    let subjects = scan::subjects(
        &image.manifest.media_type,
        &image.manifest.bytes,
        &image.manifest.digest,
    );
    let now = std::time::Instant::now();
    let scan_ends = now + std::time::Duration::from_secs_f64(gate.minutes * 60.0);
    // The push's deadline, should it come first, would end the wait with a line that
    // names no scan and writes no summary: the scans stop a little before it.
    let push_ends = gate
        .push_ends
        .map(|ends| ends.checked_sub(SCAN_MARGIN).unwrap_or(now).max(now));
    let wait = match push_ends {
        Some(push_ends) if push_ends < scan_ends => scan::Wait {
            until: push_ends,
            input: "timeout-minutes",
            when: "before the push's timeout-minutes ran out".to_owned(),
        },
        _ => scan::Wait {
            until: scan_ends,
            input: "scan-timeout-minutes",
            when: format!("after {} minutes", gate.minutes),
        },
    };
    let results =
        futures_util::future::join_all(subjects.iter().map(|subject| ecr.scan(subject, &wait)))
            .await;
    let mut scans = Vec::with_capacity(subjects.len());
    let mut failed = Vec::new();
    for (subject, findings) in subjects.into_iter().zip(results) {
        let findings = match findings {
            Ok(findings) => findings,
            Err(error) => {
                failed.push((subject, error));
                continue;
            }
        };
        let scanned = scan::Scanned { subject, findings };
        let counts: Vec<String> = scanned
            .counts()
            .iter()
            .rev()
            .map(|(severity, n)| format!("{n} {severity}"))
            .collect();
        tracing::info!("scan of {}: {}", scanned.subject, counts.join(", "));
        scans.push(scanned);
    }
    let blocking = scan::blocking(&scans, gate.fail_on);
    if blocking.is_empty() && failed.is_empty() {
        return Ok(scans);
    }
    let unscanned: Vec<(scan::Subject, String)> = failed
        .iter()
        .map(|(subject, error)| (subject.clone(), error.to_string()))
        .collect();
    runtime.set_outputs(&[("scan", &scan::output(&scans).to_string())])?;
    runtime.append_summary(&scan::refused_summary(&scans, gate.fail_on, &unscanned))?;
    let mut failed = failed.into_iter();
    let error = match blocking.first() {
        Some((subject, finding)) => Error::ScanRefused {
            count: blocking.len(),
            threshold: gate.fail_on,
            first: format!("{} {} in {subject}", finding.severity, finding.name),
            unscanned: unscanned.len(),
        },
        None => match failed.next() {
            Some((_, error)) => error.into(),
            None => return Ok(scans),
        },
    };
    // The step's error is one line; each other failure gets its own.
    for (_, other) in failed {
        tracing::warn!("{other}");
    }
    Err(error)
}

/// The step's AWS credentials: the web identity and role chain, or the default chain.
async fn credentials(
    push: &Push,
    runtime: &Runtime,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<auth::Session, Error> {
    let session = {
        let _group = runtime.group("Credentials");
        auth::authenticate(&push.auth, push.region.as_deref(), runtime, env).await?
    };
    tracing::info!("credentials for {}", session.principal);
    Ok(session)
}
