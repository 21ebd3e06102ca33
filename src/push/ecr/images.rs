//! ECR's image calls: BatchGetImage, to learn which tags already point at the manifest
//! (so an unchanged image costs no write) and what a conflicting tag points at, and
//! PutImage, which stores the manifest's bytes as they are, under a tag or by digest.
//!
//! A PutImage conflict is decided by what the tag points at: this manifest is a
//! success without another write, another one on an immutable repository is an error
//! that names it.

use std::collections::HashSet;

use aws_sdk_ecr::config::http::HttpResponse;
use aws_sdk_ecr::error::ProvideErrorMetadata;
use aws_sdk_ecr::operation::batch_get_image::{BatchGetImageError, BatchGetImageOutput};
use aws_sdk_ecr::operation::put_image::PutImageError;
use aws_sdk_ecr::types::ImageIdentifier;

use super::Ecr;
use crate::image::{self, Manifest};
use crate::push::{Error, TagState, Tagged};
use crate::sdk::describe;

/// BatchGetImage takes 1 to 100 image ids a call.
const MAX_IMAGE_IDS_PER_GET: usize = 100;

/// What a tag points at, as BatchGetImage tells.
enum TagLookup {
    Points(String),
    Absent,
    NotAllowed,
}

impl Ecr {
    /// Of `tags`, the ones that point at `manifest` already: one BatchGetImage per 100
    /// tags. Without ecr:BatchGetImage, or when it fails, no tag counts as set: each
    /// gets its PutImage, which is still correct.
    pub(super) async fn tags_on(&self, manifest: &Manifest, tags: &[String]) -> HashSet<String> {
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

    /// PutImage of the manifest's bytes, under `tag` or, for an index's child, by
    /// digest only.
    pub(super) async fn put_image(
        &self,
        manifest: &Manifest,
        tag: Option<&str>,
    ) -> Result<Tagged, Error> {
        let text = std::str::from_utf8(&manifest.bytes)
            .map_err(|_| Error::ManifestNotText(manifest.digest.clone()))?;
        let admitted = self.paces.put.admit().await;
        let result = self
            .clients
            .images
            .put_image()
            .registry_id(&self.target.registry_id)
            .repository_name(&self.target.repository)
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
            Err(err) => Err(self.target.api_error("PutImage", &err, err.code())),
        }
    }

    /// BatchGetImage of up to [`MAX_IMAGE_IDS_PER_GET`] tags.
    async fn get_tagged(
        &self,
        tags: &[String],
    ) -> Result<BatchGetImageOutput, aws_sdk_ecr::error::SdkError<BatchGetImageError, HttpResponse>>
    {
        self.clients
            .images
            .batch_get_image()
            .registry_id(&self.target.registry_id)
            .repository_name(&self.target.repository)
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
            Err(err) => return Err(self.target.api_error("BatchGetImage", &err, err.code())),
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
            repository: self.target.repository.clone(),
            existing,
            digest: manifest.digest.clone(),
        })
    }
}

/// Whether a repository lets a tag move off the image it points at: its
/// `imageTagMutability` and, for the `…_WITH_EXCLUSION` settings, the wildcard filters
/// that make the tags they match the exception.
pub(super) struct Mutability {
    immutable: bool,
    exceptions: Vec<String>,
}

impl Mutability {
    fn of(repository: &aws_sdk_ecr::types::Repository) -> Self {
        use aws_sdk_ecr::types::ImageTagMutability as M;
        let immutable = matches!(
            repository.image_tag_mutability(),
            Some(M::Immutable | M::ImmutableWithExclusion)
        );
        let with_exclusion = matches!(
            repository.image_tag_mutability(),
            Some(M::ImmutableWithExclusion | M::MutableWithExclusion)
        );
        let exceptions = if with_exclusion {
            repository
                .image_tag_mutability_exclusion_filters()
                .iter()
                .map(|f| f.filter().to_owned())
                .collect()
        } else {
            Vec::new()
        };
        Self {
            immutable,
            exceptions,
        }
    }

    /// Whether `tag` may be moved to another image.
    pub(super) fn movable(&self, tag: &str) -> bool {
        let excepted = self.exceptions.iter().any(|f| wildcard(f, tag));
        self.immutable == excepted
    }
}

/// ECR's `WILDCARD` filter: `*` matches any run of characters, anything else itself.
fn wildcard(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

impl Ecr {
    /// Every tag's state on this repository, before any tag moves anywhere: one
    /// BatchGetImage per 100 tags and, when a tag points at another image, one
    /// DescribeRepositories for whether it may move. A refusal is an error here, so it
    /// stops the release before a tag is written on any target.
    pub(super) async fn states_of(
        &self,
        manifest: &Manifest,
        tags: &[String],
    ) -> Result<Vec<TagState>, Error> {
        let mut pointing: Vec<Option<String>> = Vec::with_capacity(tags.len());
        for chunk in tags.chunks(MAX_IMAGE_IDS_PER_GET) {
            let output = self
                .get_tagged(chunk)
                .await
                .map_err(|err| self.target.api_error("BatchGetImage", &err, err.code()))?;
            let absent: HashSet<&str> = output
                .failures()
                .iter()
                .filter_map(|f| f.image_id()?.image_tag())
                .collect();
            for tag in chunk {
                let named = output
                    .images()
                    .iter()
                    .filter_map(|i| i.image_id())
                    .find(|id| id.image_tag() == Some(tag))
                    .and_then(|id| id.image_digest())
                    .map(str::to_owned);
                let digest = match named {
                    Some(digest) => Some(digest),
                    None if absent.contains(tag.as_str()) => None,
                    // ECR names each image by the tag asked for; an answer that names
                    // it otherwise (moto's) is asked again for this tag alone.
                    None => self.digest_of(tag).await?,
                };
                pointing.push(digest);
            }
        }
        let mutability = if pointing
            .iter()
            .flatten()
            .any(|d| d != manifest.digest.as_str())
        {
            Some(self.mutability().await?)
        } else {
            None
        };
        Ok(tags
            .iter()
            .zip(pointing)
            .map(|(tag, digest)| match digest {
                None => TagState::Absent,
                Some(d) if d == manifest.digest.as_str() => TagState::Ours,
                Some(digest) => TagState::Other {
                    movable: mutability.as_ref().is_none_or(|m| m.movable(tag)),
                    digest,
                },
            })
            .collect())
    }

    /// What `tag` alone points at; a refusal is an error.
    async fn digest_of(&self, tag: &str) -> Result<Option<String>, Error> {
        let output = self
            .get_tagged(&[tag.to_owned()])
            .await
            .map_err(|err| self.target.api_error("BatchGetImage", &err, err.code()))?;
        Ok(output
            .images()
            .first()
            .and_then(|i| i.image_id())
            .and_then(|id| id.image_digest())
            .map(str::to_owned))
    }

    /// The repository's tag mutability, from DescribeRepositories.
    async fn mutability(&self) -> Result<Mutability, Error> {
        let output = self
            .clients
            .other
            .describe_repositories()
            .registry_id(&self.target.registry_id)
            .repository_names(&self.target.repository)
            .send()
            .await
            .map_err(|err| {
                self.target
                    .api_error("DescribeRepositories", &err, err.code())
            })?;
        output
            .repositories()
            .first()
            .map(Mutability::of)
            .ok_or_else(|| self.target.lacking("DescribeRepositories", "repositories"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_as_ecr_filters_do() {
        for (pattern, tag, matches) in [
            ("latest", "latest", true),
            ("latest", "latest2", false),
            ("dev-*", "dev-1", true),
            ("dev-*", "dev-", true),
            ("dev-*", "prod-1", false),
            ("*-rc", "v1-rc", true),
            ("*-rc", "v1-rc1", false),
            ("v*-*", "v1-rc", true),
            ("v*-*", "v1", false),
            ("*", "anything", true),
            ("a*a", "a", false),
            ("a*a", "aa", true),
        ] {
            assert_eq!(wildcard(pattern, tag), matches, "{pattern} {tag}");
        }
    }

    #[test]
    fn exclusions_turn_the_setting_around_for_the_tags_they_match() {
        use aws_sdk_ecr::types::{
            ImageTagMutability as M, ImageTagMutabilityExclusionFilter as F,
            ImageTagMutabilityExclusionFilterType as T, Repository,
        };
        let repository = |mutability: M| {
            Repository::builder()
                .image_tag_mutability(mutability)
                .image_tag_mutability_exclusion_filters(
                    F::builder()
                        .filter_type(T::Wildcard)
                        .filter("latest")
                        .build()
                        .unwrap(),
                )
                .build()
        };
        let immutable = Mutability::of(&repository(M::ImmutableWithExclusion));
        assert!(immutable.movable("latest"));
        assert!(!immutable.movable("v1"));
        let mutable = Mutability::of(&repository(M::MutableWithExclusion));
        assert!(!mutable.movable("latest"));
        assert!(mutable.movable("v1"));
        // Without `…_WITH_EXCLUSION`, filters left over from before change nothing.
        assert!(!Mutability::of(&repository(M::Immutable)).movable("latest"));
        assert!(Mutability::of(&repository(M::Mutable)).movable("v1"));
    }
}
