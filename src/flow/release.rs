//! A release to several targets (`targets`): the image opened once, one web-identity
//! session, each target's role chained from it once, then two phases so that no tag
//! moves anywhere unless the image is everywhere:
//!
//! 1. every target at once: the blobs it lacks, an index's children, the image and
//!    its referrers by digest. A failure on any target ends the step here, with no
//!    tag written.
//! 2. every target's tags read (BatchGetImage), so an immutable tag that points at
//!    another image, or a refusal, fails before a tag moves; then the tags, target by
//!    target: the referrers' (cosign's, a registry's fallback tag), then the image's.
//!    A write that still fails says which targets carry which tags now.

use std::collections::HashMap;

use futures_util::future::join_all;
use tracing::Instrument as _;

use super::{Error, Push};
use crate::actions::Runtime;
use crate::image::Image;
use crate::push::{self as destination, Destination as _, TagState};
use crate::report::{self, Report};
use crate::targets::{Host, Target};
use crate::{auth, docker_config};

/// One target, ready to push to.
struct Landing<'a> {
    target: &'a Target,
    to: To,
    /// The registry login to store for later steps (`docker-login`).
    login: Option<String>,
}

/// Where a target's image goes: ECR's API or a registry's distribution API.
// One per target, a handful at most: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
enum To {
    Ecr(destination::Ecr),
    Registry(destination::Registry),
}

impl Landing<'_> {
    /// `HOST/REPOSITORY (account ACCOUNT)`, as every message names a target.
    fn name(&self) -> String {
        match self.target.account() {
            Some(account) => format!("{} (account {account})", self.target.name()),
            None => self.target.name(),
        }
    }

    async fn stage(
        &self,
        image: &Image,
        push: &Push,
        runtime: &Runtime,
    ) -> Result<Report, destination::Error> {
        let options = push.options(runtime);
        match &self.to {
            To::Ecr(ecr) => destination::stage(ecr, image, options).await,
            To::Registry(registry) => destination::stage(registry, image, options).await,
        }
    }

    async fn tag_states(
        &self,
        image: &Image,
        tags: &[String],
    ) -> Result<Vec<TagState>, destination::Error> {
        match &self.to {
            To::Ecr(ecr) => ecr.tag_states(&image.manifest, tags).await,
            To::Registry(registry) => registry.tag_states(&image.manifest, tags).await,
        }
    }

    /// Under `referrers: required`, the referrers' tags an immutable repository keeps
    /// on another manifest.
    async fn referrer_tag_conflicts(
        &self,
        image: &Image,
    ) -> Result<Vec<String>, destination::Error> {
        match &self.to {
            To::Ecr(ecr) => destination::referrer_tag_conflicts(ecr, image).await,
            To::Registry(registry) => destination::referrer_tag_conflicts(registry, image).await,
        }
    }

    async fn tag(
        &self,
        image: &Image,
        tags: &[String],
        states: &[TagState],
        push: &Push,
        report: &mut Report,
    ) -> Result<(), destination::Error> {
        let referrers = push.referrers;
        match &self.to {
            To::Ecr(ecr) => destination::tag(ecr, image, tags, states, referrers, report).await,
            To::Registry(registry) => {
                destination::tag(registry, image, tags, states, referrers, report).await
            }
        }
    }
}

/// The release, from an open image to its report.
pub(super) async fn run(
    push: &Push,
    session: Option<auth::Session>,
    image: Image,
    tags: &[String],
    login: &impl Fn(&str) -> Option<docker_config::Login>,
    runtime: &Runtime,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<(Vec<(String, Report)>, Option<Vec<crate::scan::Scanned>>), Error> {
    // A remote source is read once, whatever the number of targets.
    let image = if crate::image::registry_host(&push.image).is_some() && push.targets.len() > 1 {
        image.fetch_once()?
    } else {
        image
    };
    let landings = prepare(push, session, login, runtime, env).await?;

    let staged = join_all(landings.iter().map(|landing| {
        let span = tracing::info_span!("target", line = landing.target.line);
        landing.stage(&image, push, runtime).instrument(span)
    }))
    .await;
    let failed: Vec<String> = landings
        .iter()
        .zip(&staged)
        .filter_map(|(landing, result)| {
            let err = result.as_ref().err()?;
            Some(format!("{}: {err}", landing.name()))
        })
        .collect();
    if !failed.is_empty() {
        return Err(Error::Release(format!(
            "{} of {} targets failed, and no tag was written on any target: {}; run the step again once fixed: what a target holds already is not sent again",
            failed.len(),
            landings.len(),
            failed.join("; ")
        )));
    }
    let mut reports: Vec<Report> = staged.into_iter().flatten().collect();

    // The same bytes are on every target: the first ECR target's scan decides for all,
    // before any tag moves anywhere.
    let scans = match push.scan {
        Some(gate) => {
            let scanner = landings.iter().find_map(|l| match &l.to {
                To::Ecr(ecr) => Some((l, ecr)),
                To::Registry(_) => None,
            });
            let Some((landing, ecr)) = scanner else {
                return Err(Error::Release(
                    "scan-fail-on needs an ECR target, whose scanning API scans the image".into(),
                ));
            };
            tracing::info!("scanned on {}, for every target", landing.name());
            Some(super::scan_gate(ecr, gate, &image, runtime).await?)
        }
        None => None,
    };

    let states = check(&landings, &image, tags, push.referrers).await?;
    for (index, landing) in landings.iter().enumerate() {
        let span = tracing::info_span!("target", line = landing.target.line);
        let written = landing
            .tag(&image, tags, &states[index], push, &mut reports[index])
            .instrument(span)
            .await;
        if let Err(err) = written {
            return Err(Error::Release(partly_tagged(
                &landings, &reports, &states, tags, index, &err,
            )));
        }
    }
    for (landing, report) in landings.iter().zip(&reports) {
        tracing::info!(
            "{}: {} uploaded in {} blobs, {} already there; tags {}",
            landing.name(),
            crate::units::human_bytes(report.bytes_uploaded),
            report.blobs_uploaded,
            report.blobs_skipped,
            tags.join(", ")
        );
    }
    store_logins(&landings, env)?;
    let reports = landings
        .iter()
        .map(|l| l.target.host.to_string())
        .zip(reports)
        .collect();
    Ok((reports, scans))
}

/// Credentials (one web identity, each distinct role once) and a destination per target.
async fn prepare<'a>(
    push: &'a Push,
    session: Option<auth::Session>,
    login: &impl Fn(&str) -> Option<docker_config::Login>,
    runtime: &Runtime,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Vec<Landing<'a>>, Error> {
    let any_ecr = push.targets.iter().any(|t| matches!(t.host, Host::Ecr(_)));
    let first = match session {
        Some(session) => Some(session),
        None if any_ecr => Some(super::credentials(push, runtime, env).await?),
        None => None,
    };
    let mut chained: HashMap<(String, Option<String>), auth::Session> = HashMap::new();
    if let Some(first) = &first {
        let _group = runtime.group("Target roles");
        for target in &push.targets {
            let Some(role) = &target.role else { continue };
            let key = (role.clone(), target.external_id.clone());
            if chained.contains_key(&key) {
                continue;
            }
            let cross = auth::CrossAccount {
                role: role.clone(),
                external_id: target.external_id.clone(),
                session_tags: push.session_tags,
            };
            let session = auth::chain(first, &push.auth, &cross, runtime, env).await?;
            chained.insert(key, session);
        }
    }
    let mut landings = Vec::with_capacity(push.targets.len());
    for target in &push.targets {
        let landing = match &target.host {
            Host::Registry(host) => {
                let login = login(host).map(|login| (login.username, login.password));
                let registry = destination::Registry::new(
                    host,
                    &target.repository,
                    login,
                    env("ECR_PUSH_CHUNKED").as_deref() == Some("true"),
                    runtime.masker(),
                )?;
                Landing {
                    target,
                    to: To::Registry(registry),
                    login: None,
                }
            }
            Host::Ecr(host) => {
                let session = match &target.role {
                    Some(role) => chained.get(&(role.clone(), target.external_id.clone())),
                    None => first.as_ref(),
                };
                let Some(session) = session else {
                    return Err(Error::Release(format!(
                        "{}: no credentials for this target",
                        target.name()
                    )));
                };
                ecr_landing(push, target, host, session, runtime, env).await?
            }
        };
        landings.push(landing);
    }
    Ok(landings)
}

/// An ECR target: its API, or with `transport: registry` its registry endpoint; its
/// login fetched before anything is pushed when one is wanted, so a role without
/// ecr:GetAuthorizationToken fails before any tag moves.
async fn ecr_landing<'a>(
    push: &Push,
    target: &'a Target,
    host: &crate::ecr_host::EcrHost,
    session: &auth::Session,
    runtime: &Runtime,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Landing<'a>, Error> {
    let via_registry = push.destination == super::Destination::Ecr { registry: true };
    let ecr = destination::Ecr::new(
        &session.config,
        host.clone(),
        destination::EcrEnvironment::read(env),
        target.repository.clone(),
        push.create_repository,
        session.principal.clone(),
        push.concurrency,
    );
    let login = if push.docker_login || via_registry {
        Some(ecr.login(|secret| runtime.mask(secret)).await?)
    } else {
        None
    };
    let to = match &login {
        Some(auth) if via_registry => {
            let password = destination::Ecr::password(auth).unwrap_or_default();
            To::Registry(destination::Registry::new(
                &ecr.registry_host(),
                &target.repository,
                Some(("AWS".to_owned(), password)),
                true,
                runtime.masker(),
            )?)
        }
        _ => To::Ecr(ecr),
    };
    Ok(Landing {
        target,
        to,
        login: login.filter(|_| push.docker_login),
    })
}

/// Every target's tags, read before any moves: a refusal, or a tag an immutable
/// repository keeps on another image, anywhere, ends the release here. With
/// `referrers: required` the tags of cosign's scheme too, which that would fail on.
async fn check(
    landings: &[Landing<'_>],
    image: &Image,
    tags: &[String],
    referrers: crate::image::Referrers,
) -> Result<Vec<Vec<TagState>>, Error> {
    let read = join_all(landings.iter().map(|l| l.tag_states(image, tags))).await;
    let mut problems = Vec::new();
    if referrers == crate::image::Referrers::Required {
        let conflicts = join_all(landings.iter().map(|l| l.referrer_tag_conflicts(image))).await;
        for (landing, result) in landings.iter().zip(conflicts) {
            match result {
                Err(err) => problems.push(format!("{}: {err}", landing.name())),
                Ok(found) => problems.extend(found.into_iter().map(|conflict| {
                    format!("{}: referrers: required, and {conflict}", landing.name())
                })),
            }
        }
    }
    let mut states = Vec::with_capacity(landings.len());
    for (landing, result) in landings.iter().zip(read) {
        match result {
            Err(err) => problems.push(format!("{}: {err}", landing.name())),
            Ok(found) => {
                for (tag, state) in tags.iter().zip(&found) {
                    if let TagState::Other {
                        digest,
                        movable: false,
                    } = state
                    {
                        problems.push(format!(
                            "{}: tag `{tag}` of immutable repository {} already points at {digest}, not at {}",
                            landing.name(),
                            landing.target.repository,
                            image.manifest.digest
                        ));
                    }
                }
                states.push(found);
            }
        }
    }
    if problems.is_empty() {
        return Ok(states);
    }
    Err(Error::Release(format!(
        "{}; no tag was moved on any target (the image is on every target by digest): push under a new tag, or fix the permission and run the step again",
        problems.join("; ")
    )))
}

/// The message of a tag write that failed in phase 2, on `landings[failed]`: which
/// targets carry which of the release's tags now.
fn partly_tagged(
    landings: &[Landing<'_>],
    reports: &[Report],
    states: &[Vec<TagState>],
    tags: &[String],
    failed: usize,
    err: &destination::Error,
) -> String {
    let carried: Vec<String> = landings
        .iter()
        .enumerate()
        .map(|(index, landing)| {
            let on: Vec<&str> = if index <= failed {
                let report = &reports[index];
                report
                    .tags_set
                    .iter()
                    .chain(&report.tags_unchanged)
                    .map(String::as_str)
                    .collect()
            } else {
                tags.iter()
                    .zip(&states[index])
                    .filter(|(_, s)| **s == TagState::Ours)
                    .map(|(t, _)| t.as_str())
                    .collect()
            };
            let on = if on.is_empty() {
                "no tag".to_owned()
            } else {
                on.join(", ")
            };
            format!("{} carries {on}", landing.name())
        })
        .collect();
    format!(
        "a tag write on {} failed after every target was checked (its state changed since): {err}; the release is partly tagged now: {}; run the step again to finish it",
        landings[failed].name(),
        carried.join("; ")
    )
}

/// `docker-login`: each ECR target's registry login, stored once every tag is in place.
fn store_logins(
    landings: &[Landing<'_>],
    env: &impl Fn(&str) -> Option<String>,
) -> Result<(), Error> {
    for landing in landings {
        let Some(auth) = &landing.login else { continue };
        let host = landing.target.host.to_string();
        let stored = docker_config::store(&host, auth, env)?;
        tracing::info!(
            "docker login for {host} stored in {}",
            stored.path.display()
        );
    }
    Ok(())
}

/// What the outputs and the summary say of each target.
pub(super) fn outcomes<'a>(
    push: &'a Push,
    reports: &'a [(String, Report)],
) -> Vec<report::Landed<'a>> {
    push.targets
        .iter()
        .zip(reports)
        .map(|(target, (host, report))| report::Landed {
            host,
            account: target.account(),
            region: match &target.host {
                Host::Ecr(h) => Some(h.region.as_str()),
                Host::Registry(_) => None,
            },
            repository: &target.repository,
            report,
        })
        .collect()
}
