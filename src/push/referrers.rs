//! What refers to the image, at a destination: the referrers stored by digest after
//! their subjects while the image is staged ([`put_referrers`]), and their tags (cosign's
//! scheme, a registry's fallback tag) written in the tag phase with the image's own
//! ([`tag_referrers`]), so that a refused scan gate or a failed stage leaves none of
//! them. A refusal is a warning that leaves the referrer (and what refers to it) out,
//! unless the referrers are `required`.

use std::collections::HashSet;

use super::{Destination, Error, TagState};
use crate::image::{self, Digest, Image};
use crate::report::Report;

/// The image's referrers, each after its subject, by digest only: the tags cosign's
/// scheme keeps some under, and a registry's fallback tag, are tag writes and wait for
/// [`tag_referrers`]. Where the destination refuses one, it and what refers to it are
/// left out with a warning, unless they are `required`.
pub(super) async fn put_referrers<D: Destination>(
    destination: &D,
    image: &Image,
    required: bool,
    report: &mut Report,
) -> Result<(), Error> {
    let mut refused: HashSet<&Digest> = HashSet::new();
    for referrer in &image.referrers {
        let result = if refused.contains(&referrer.subject.digest) {
            Err(None)
        } else {
            async {
                for child in &referrer.children {
                    destination.put_manifest(child, None).await?;
                }
                destination.put_manifest(&referrer.manifest, None).await
            }
            .await
            .map_err(Some)
        };
        let digest = &referrer.manifest.digest;
        let reason = match result {
            Ok(_) => None,
            Err(Some(source)) if required => {
                return Err(Error::Referrer {
                    artifact_type: referrer.artifact_type.clone(),
                    digest: digest.clone(),
                    subject: referrer.subject.digest.clone(),
                    source: Box::new(source),
                });
            }
            Err(error) => {
                let reason = match error {
                    Some(error)
                        if destination.is_ecr()
                            && image::is_index(&referrer.subject.media_type) =>
                    {
                        format!(
                            "{error}; ECR does not store referrers of an image index yet (aws/containers-roadmap#2783)"
                        )
                    }
                    Some(error) => error.to_string(),
                    None => "what it refers to was not stored".to_owned(),
                };
                tracing::warn!(
                    "referrers: {} {digest} (referring to {}) left out: {reason}; the image is pushed without it (referrers: required fails instead)",
                    referrer.artifact_type,
                    referrer.subject.digest.short()
                );
                refused.insert(digest);
                Some(reason)
            }
        };
        report.referrers.push(crate::report::Carried {
            digest: digest.clone(),
            artifact_type: referrer.artifact_type.clone(),
            subject: referrer.subject.digest.clone(),
            tag: referrer.tag.clone(),
            rewritten_from: referrer.rewritten_from.clone(),
            refused: reason,
        });
    }
    Ok(())
}

/// Of the image's referrers kept under a tag of cosign's scheme, those whose tag the
/// repository keeps on another manifest (immutable tags), one line each: read with a
/// release's other tags, before any moves, where `referrers: required` would fail the
/// tag phase on them.
pub async fn referrer_tag_conflicts<D: Destination>(
    destination: &D,
    image: &Image,
) -> Result<Vec<String>, Error> {
    let mut conflicts = Vec::new();
    for referrer in &image.referrers {
        let Some(tag) = &referrer.tag else { continue };
        let states = destination
            .tag_states(&referrer.manifest, std::slice::from_ref(tag))
            .await?;
        if let Some(TagState::Other {
            digest,
            movable: false,
        }) = states.first()
        {
            conflicts.push(format!(
                "the tag `{tag}` of {} {} already points at {digest} in an immutable repository",
                referrer.artifact_type, referrer.manifest.digest
            ));
        }
    }
    Ok(conflicts)
}

/// [`referrer_tag_conflicts`] on one destination, as an error when there are any.
pub async fn held_referrer_tags<D: Destination>(
    destination: &D,
    image: &Image,
) -> Result<(), Error> {
    let conflicts = referrer_tag_conflicts(destination, image).await?;
    if conflicts.is_empty() {
        return Ok(());
    }
    Err(Error::ReferrerTagsHeld(conflicts.join("; ")))
}

/// The tag phase of the referrers [`put_referrers`] stored (those `report` holds as
/// not refused): cosign's tags, and the fallback tag's index where the destination
/// keeps one. Run just before the image's own tags, so a gate that refuses the image
/// leaves none of them, and a verifier that follows the tag finds its signatures. A
/// tag that cannot be written is a warning, unless the referrers are `required`.
pub(super) async fn tag_referrers<D: Destination>(
    destination: &D,
    image: &Image,
    required: bool,
    report: &mut Report,
) -> Result<(), Error> {
    for carried in report.referrers.iter_mut().filter(|c| c.refused.is_none()) {
        let Some(referrer) = image
            .referrers
            .iter()
            .find(|r| r.manifest.digest == carried.digest)
        else {
            continue;
        };
        let written = match &referrer.tag {
            Some(tag) => destination
                .put_manifest(&referrer.manifest, Some(tag))
                .await
                .map(drop)
                .map_err(|e| (tag.clone(), e)),
            None => Ok(()),
        };
        let written = match written {
            Ok(()) => destination
                .list_referrer(&referrer.manifest)
                .await
                .map_err(|e| (format!("sha256-{}", referrer.subject.digest.hex()), e)),
            Err(e) => Err(e),
        };
        let Err((tag, source)) = written else {
            continue;
        };
        if required {
            return Err(Error::ReferrerTag {
                tag,
                artifact_type: referrer.artifact_type.clone(),
                digest: referrer.manifest.digest.clone(),
                source: Box::new(source),
            });
        }
        tracing::warn!(
            "referrers: the tag {tag} of {} {} could not be written: {source}; it is stored by digest, and the image is tagged without it (referrers: required fails instead)",
            referrer.artifact_type,
            referrer.manifest.digest.short()
        );
        carried.refused = Some(format!("its tag {tag}: {source}"));
    }
    Ok(())
}

/// The image's own tags that the repository keeps on another image (`states`, as
/// [`Destination::tag_states`] read them: immutable tags), as one error: checked before
/// the tag phase moves anything, a referrer's tag included.
pub(super) fn image_tags_free(
    image: &Image,
    tags: &[String],
    states: &[TagState],
) -> Result<(), Error> {
    let held: Vec<String> = tags
        .iter()
        .zip(states)
        .filter_map(|(tag, state)| match state {
            TagState::Other {
                digest,
                movable: false,
            } => Some(format!(
                "tag `{tag}` of an immutable repository already points at {digest}, not at {}",
                image.manifest.digest
            )),
            _ => None,
        })
        .collect();
    if held.is_empty() {
        return Ok(());
    }
    Err(Error::ImageTagsHeld(held.join("; ")))
}
