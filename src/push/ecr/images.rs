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
use crate::push::{Error, Tagged};
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
