//! ECR's layer-upload API: BatchCheckLayerAvailability finds the blobs the repository
//! lacks (creating the repository first when asked to and it is missing), then each
//! missing blob is InitiateLayerUpload → UploadLayerPart, in order → CompleteLayerUpload.
//!
//! Parts have the size InitiateLayerUpload returns, kept within ECR's bounds; while one
//! part is in flight the next is read, hashed and encoded into its request body off the
//! reactor (`part_body`), within one budget of part bodies for the destination, so
//! memory follows the parts in flight, not the blobs or the concurrency. A call whose answer was
//! lost after ECR acted on it is recognised by what ECR says on the retry, so a lost
//! answer costs no upload.

use std::collections::HashSet;
use std::sync::Arc;

use aws_sdk_ecr::error::ProvideErrorMetadata;
use aws_sdk_ecr::operation::complete_layer_upload::CompleteLayerUploadError;
use aws_sdk_ecr::operation::initiate_layer_upload::InitiateLayerUploadError;
use aws_sdk_ecr::operation::upload_layer_part::UploadLayerPartError;
use aws_sdk_ecr::types::LayerAvailability;

use super::Ecr;
use super::part_body::{Body, Fields};
use crate::image::{self, BlobReader, Descriptor, Digest};
use crate::progress::Sent;
use crate::push::Error;

/// BatchCheckLayerAvailability takes 1 to 100 digests a call.
const MAX_DIGESTS_PER_BATCH: usize = 100;
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

/// An upload InitiateLayerUpload started.
struct Upload {
    upload_id: String,
    /// The size of every part but the last.
    part_bytes: usize,
}

impl Ecr {
    /// Of `digests`, the ones the repository does not hold yet.
    pub(super) async fn missing_layers(
        &self,
        digests: &[&Digest],
    ) -> Result<HashSet<Digest>, Error> {
        let mut missing = HashSet::new();
        for chunk in digests.chunks(MAX_DIGESTS_PER_BATCH) {
            missing.extend(self.check_layers(chunk).await?);
        }
        Ok(missing)
    }

    /// Uploads one blob, part by part, and completes it once ECR has every byte.
    pub(super) async fn upload_layer(&self, blob: BlobReader, sent: &Sent) -> Result<(), Error> {
        let digest = blob.descriptor().digest.clone();
        uploadable(blob.descriptor())?;
        let upload = self.initiate(blob.descriptor().size).await?;
        self.send_parts(blob, &upload, sent).await?;
        self.complete(digest, &upload).await
    }

    async fn check_layers(&self, chunk: &[&Digest]) -> Result<HashSet<Digest>, Error> {
        let send = || {
            self.clients
                .other
                .batch_check_layer_availability()
                .registry_id(&self.target.registry_id)
                .repository_name(&self.target.repository)
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
        .map_err(|err| {
            self.target
                .api_error("BatchCheckLayerAvailability", &err, err.code())
        })?;
        if let Some(failure) = output
            .failures()
            .iter()
            .find(|f| f.failure_code().map(|c| c.as_str()) != Some("MissingLayerDigest"))
        {
            return Err(Error::Api {
                call: "BatchCheckLayerAvailability",
                target: self.target.to_string(),
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

    /// CreateRepository, when the first BatchCheckLayerAvailability found none.
    async fn create(&self) -> Result<(), Error> {
        match self
            .clients
            .other
            .create_repository()
            .registry_id(&self.target.registry_id)
            .repository_name(&self.target.repository)
            .send()
            .await
        {
            Ok(_) => {
                tracing::info!("created repository {}", self.target.repository);
                Ok(())
            }
            // Another job created it in the meantime: what was wanted.
            Err(err) if err.code() == Some("RepositoryAlreadyExistsException") => Ok(()),
            Err(err) => Err(self.target.api_error("CreateRepository", &err, err.code())),
        }
    }

    /// InitiateLayerUpload for a blob of `size` bytes.
    async fn initiate(&self, size: u64) -> Result<Upload, Error> {
        const CALL: &str = "InitiateLayerUpload";
        let admitted = self.paces.initiate.admit().await;
        let initiated = self
            .clients
            .uploads
            .initiate_layer_upload()
            .registry_id(&self.target.registry_id)
            .repository_name(&self.target.repository)
            .customize()
            .config_override(
                self.paces
                    .initiate
                    .watch::<InitiateLayerUploadError>(&admitted),
            )
            .send()
            .await
            .map_err(|err| self.target.api_error(CALL, &err, err.code()))?;
        admitted.succeeded();
        let upload_id = initiated
            .upload_id()
            .filter(|id| !id.is_empty())
            .ok_or_else(|| self.target.lacking(CALL, "uploadId"))?;
        Ok(Upload {
            upload_id: upload_id.to_owned(),
            part_bytes: part_bytes(initiated.part_size(), size),
        })
    }

    /// UploadLayerPart for each part of `blob`, in order, the next part read while the
    /// previous one is in flight. Each part is added to `sent` once ECR has it.
    async fn send_parts(
        &self,
        blob: BlobReader,
        upload: &Upload,
        sent: &Sent,
    ) -> Result<(), Error> {
        let digest = blob.descriptor().digest.clone();
        let fields = Arc::new(Fields {
            registry_id: self.target.registry_id.clone(),
            repository_name: self.target.repository.clone(),
            upload_id: upload.upload_id.clone(),
        });
        let mut part_first_byte: i64 = 0;
        let mut pending = Some(self.read_next(blob, upload.part_bytes, &fields, part_first_byte));
        while let Some(reading) = pending.take() {
            let (reader, body) = reading.await.map_err(|e| Error::Task(e.to_string()))?;
            let body = body?;
            let part_last_byte = part_first_byte + body.part_bytes as i64 - 1;
            if reader.remaining() > 0 {
                pending =
                    Some(self.read_next(reader, upload.part_bytes, &fields, part_last_byte + 1));
            }
            let part_len = body.part_bytes;
            self.send_part(&digest, upload, body, part_first_byte, part_last_byte)
                .await?;
            sent.add(part_len);
            part_first_byte = part_last_byte + 1;
        }
        Ok(())
    }

    /// Reads the next part into its request body off the reactor; the reader travels
    /// with the task, so the next part is read while the previous one is in flight.
    fn read_next(
        &self,
        mut blob: BlobReader,
        part_bytes: usize,
        fields: &Arc<Fields>,
        part_first_byte: i64,
    ) -> tokio::task::JoinHandle<(BlobReader, Result<Body, image::Error>)> {
        let bodies = self.bodies.clone();
        let fields = fields.clone();
        tokio::task::spawn_blocking(move || {
            let body = bodies.read_part(&mut blob, part_bytes, &fields, part_first_byte);
            (blob, body)
        })
    }

    /// One UploadLayerPart of `body`, the bytes `part_first_byte` to `part_last_byte`
    /// of the blob.
    async fn send_part(
        &self,
        digest: &Digest,
        upload: &Upload,
        body: Body,
        part_first_byte: i64,
        part_last_byte: i64,
    ) -> Result<(), Error> {
        tracing::debug!(
            "UploadLayerPart {} bytes {part_first_byte}-{part_last_byte}",
            digest.short()
        );
        let admitted = self.paces.part.admit().await;
        let config = self.part_timeout(
            body.part_bytes,
            self.paces.part.watch::<UploadLayerPartError>(&admitted),
        );
        let answer = self
            .clients
            .parts
            .upload_layer_part()
            .registry_id(&self.target.registry_id)
            .repository_name(&self.target.repository)
            .upload_id(&upload.upload_id)
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
            Err(err) => {
                return Err(self.target.api_error("UploadLayerPart", &err, err.code()));
            }
        }
        Ok(())
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

    /// CompleteLayerUpload, which holds when ECR hashed the parts to `digest`.
    async fn complete(&self, digest: Digest, upload: &Upload) -> Result<(), Error> {
        let admitted = self.paces.complete.admit().await;
        let completed = self
            .clients
            .uploads
            .complete_layer_upload()
            .registry_id(&self.target.registry_id)
            .repository_name(&self.target.repository)
            .upload_id(&upload.upload_id)
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
            Err(err) => Err(self
                .target
                .api_error("CompleteLayerUpload", &err, err.code())),
        }
    }
}

/// A blob ECR's layer-upload API can store: not empty, and within its parts.
fn uploadable(blob: &Descriptor) -> Result<(), Error> {
    if blob.size == 0 {
        return Err(Error::EmptyBlob(blob.digest.clone()));
    }
    if blob.size > MAX_PARTS * MAX_PART_BYTES as u64 {
        return Err(Error::BlobTooLarge {
            digest: blob.digest.clone(),
            size: blob.size,
            limit: MAX_PARTS * MAX_PART_BYTES as u64,
        });
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ecr_host::EcrHost;

    const MIB: u64 = 1024 * 1024;

    #[tokio::test]
    async fn an_upload_without_an_upload_id_fails_naming_the_call() {
        let ecr = Ecr::new(
            &crate::sdk::answering("{}"),
            EcrHost::standard("111111111111", "us-east-1"),
            super::super::Environment {
                endpoint_overridden: false,
                paced: true,
            },
            "team/app".into(),
            false,
            "arn:aws:sts::111111111111:assumed-role/ci/run".into(),
            1,
        );
        let blob = b"a layer".to_vec();
        let descriptor = Descriptor {
            media_type: "application/octet-stream".into(),
            digest: Digest::of(&blob),
            size: blob.len() as u64,
        };
        let blob = BlobReader::new(Box::new(std::io::Cursor::new(blob)), descriptor);
        let err = ecr.upload_layer(blob, &Sent::default()).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "ECR InitiateLayerUpload failed for repository team/app in registry 111111111111 (us-east-1): the answer has no uploadId"
        );
    }

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
