//! Any OCI registry, through the distribution API (`transport: registry`): HEAD per
//! blob to find the missing ones, then per blob a POST to open an upload, the bytes,
//! and a PUT with the digest that closes it; then a PUT per manifest.
//!
//! The bytes go as one PATCH whose body streams while the blob is read and hashed off
//! the reactor: no round trip per part. ECR's registry endpoint (HTTP Basic with `AWS`
//! and the GetAuthorizationToken password) wants parts instead, every one but the last
//! of at least 5 MiB, each a PATCH with its Content-Range, and answers them with 201
//! where the spec says 202: that chunked mode is here too (the next part is read while
//! one is in flight), which is why this is not oci-client's chunked push (4 MiB, 202
//! only). Loopback registries are spoken to over plain HTTP, as Docker does.

use std::collections::HashSet;

use futures_util::stream::{self, StreamExt, TryStreamExt};
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION};
use reqwest::{Method, StatusCode};

use super::{Destination, Error, Tagged};
use crate::image::{BlobReader, Digest, Manifest};

/// Parts of 10 MiB: ECR's registry endpoint wants at least 5 MiB for all but the last.
const PART_BYTES: usize = 10 * 1024 * 1024;
/// What a streamed upload reads at a time: two of these wait per blob.
const STREAM_PART_BYTES: usize = 1024 * 1024;
/// HEAD requests in flight at once while looking for missing blobs.
const CHECKS_AT_ONCE: usize = 8;

pub struct Registry {
    client: reqwest::Client,
    /// `http(s)://HOST`.
    base: String,
    host: String,
    repository: String,
    /// `Basic …`, when the registry wants a login.
    authorization: Option<String>,
    calls: super::Calls,
    /// ECR's registry endpoint: parts of at least 5 MiB, each its own PATCH. Any other
    /// registry takes the whole blob as one streamed PATCH, with no round trip per part.
    chunked: bool,
}

impl Registry {
    /// `login` is (user, password) for HTTP Basic, or none.
    /// `chunked`: parts of 10 MiB, each its own PATCH, as ECR's registry endpoint wants
    /// (always for ECR hosts); else one streamed PATCH per blob.
    pub fn new(
        host: &str,
        repository: &str,
        login: Option<(String, String)>,
        chunked: bool,
    ) -> Result<Self, Error> {
        let scheme = if crate::inputs::is_loopback(host) {
            "http"
        } else {
            "https"
        };
        let client = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(30))
            .read_timeout(std::time::Duration::from_secs(300))
            .build()
            .map_err(|e| Error::Registry {
                host: host.to_owned(),
                reason: format!("no HTTP client: {e}"),
            })?;
        let authorization = login.map(|(user, password)| {
            use base64::Engine as _;
            let pair = format!("{user}:{password}");
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            )
        });
        Ok(Self {
            client,
            base: format!("{scheme}://{host}"),
            host: host.to_owned(),
            repository: repository.to_owned(),
            authorization,
            chunked: chunked || crate::inputs::parse_ecr_host(host).is_some(),
            calls: super::Calls::default(),
        })
    }

    /// A request, counted under `action` (`PATCH blob upload`, …).
    fn request(&self, method: Method, url: &str, action: &str) -> reqwest::RequestBuilder {
        self.calls.count(&format!("{method} {action}"));
        let request = self.client.request(method, url);
        match &self.authorization {
            Some(value) => request.header(reqwest::header::AUTHORIZATION, value),
            None => request,
        }
    }

    /// An answer other than the ones `expected`, as one line naming the request.
    async fn refused(&self, what: &str, response: reqwest::Response) -> Error {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        // The distribution spec's error body: {"errors":[{"code","message"}]}.
        let detail = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                let first = v.get("errors")?.get(0)?.clone();
                Some(format!(
                    "{}: {}",
                    first.get("code")?.as_str()?,
                    first
                        .get("message")
                        .and_then(|m| m.as_str())
                        .unwrap_or_default()
                ))
            })
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("").to_owned());
        let hint = match status {
            StatusCode::UNAUTHORIZED if self.authorization.is_none() => {
                format!(
                    "; docker login {} before this step (ecr-push reads the Docker config)",
                    self.host
                )
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                format!(
                    "; the login for {} may not push to {}",
                    self.host, self.repository
                )
            }
            _ => String::new(),
        };
        Error::Registry {
            host: self.host.clone(),
            reason: format!(
                "{what} of {}: HTTP {} {detail}{hint}",
                self.repository,
                status.as_u16()
            ),
        }
    }

    fn network(&self, what: &str, error: reqwest::Error) -> Error {
        Error::Registry {
            host: self.host.clone(),
            reason: format!(
                "{what} of {}: {}",
                self.repository,
                crate::sdk::innermost(&error)
            ),
        }
    }

    /// Where the next request of an upload goes: the Location header, made absolute.
    fn location(&self, response: &reqwest::Response) -> Option<String> {
        let location = response.headers().get(LOCATION)?.to_str().ok()?;
        Some(if location.starts_with('/') {
            format!("{}{location}", self.base)
        } else {
            location.to_owned()
        })
    }

    /// The whole blob in one PATCH whose body is streamed as it is read and verified, then
    /// the PUT that names the digest. The reader holds back the last bytes of a blob that
    /// is not what its digest says, so such an upload is never closed.
    async fn upload_streamed(&self, blob: BlobReader, location: String) -> Result<(), Error> {
        let digest = blob.descriptor().digest.clone();
        let (parts, receiver) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(2);
        let reading = tokio::task::spawn_blocking(move || {
            let mut reader = blob;
            loop {
                match reader.read_part(STREAM_PART_BYTES) {
                    Ok(part) => {
                        let last = reader.remaining() == 0;
                        // A closed channel: the upload stopped, and reports why.
                        if parts.blocking_send(Ok(part)).is_err() || last {
                            return Ok(());
                        }
                    }
                    Err(e) => {
                        let _ = parts.blocking_send(Err(std::io::Error::other(e.to_string())));
                        return Err(e);
                    }
                }
            }
        });
        let body = futures_util::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|part| (part, receiver))
        });
        let sent = self
            .request(Method::PATCH, &location, "blob upload")
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(reqwest::Body::wrap_stream(body))
            .send()
            .await;
        // A blob that failed its check explains a failed upload better than the network.
        reading.await.map_err(|e| Error::Task(e.to_string()))??;
        let response = sent.map_err(|e| self.network("sending a blob", e))?;
        if !matches!(
            response.status(),
            StatusCode::ACCEPTED | StatusCode::CREATED
        ) {
            return Err(self.refused("sending a blob", response).await);
        }
        let location = self.location(&response).unwrap_or(location);
        let separator = if location.contains('?') { '&' } else { '?' };
        let response = self
            .request(
                Method::PUT,
                &format!("{location}{separator}digest={digest}"),
                "blob upload",
            )
            .header(CONTENT_LENGTH, 0)
            .send()
            .await
            .map_err(|e| self.network("closing an upload", e))?;
        if response.status() != StatusCode::CREATED {
            return Err(self.refused("closing an upload", response).await);
        }
        self.check_digest("closing an upload", &response, &digest)
    }

    /// The registry's Docker-Content-Digest, when it sends one, must be what was sent.
    fn check_digest(
        &self,
        what: &str,
        response: &reqwest::Response,
        digest: &Digest,
    ) -> Result<(), Error> {
        match response.headers().get("docker-content-digest") {
            Some(actual) if actual.as_bytes() != digest.as_str().as_bytes() => {
                Err(Error::Registry {
                    host: self.host.clone(),
                    reason: format!(
                        "{what} of {}: it computed {} where {digest} was sent; the bytes changed on the way, nothing was tagged",
                        self.repository,
                        String::from_utf8_lossy(actual.as_bytes())
                    ),
                })
            }
            _ => Ok(()),
        }
    }

    async fn has_blob(&self, digest: &Digest) -> Result<bool, Error> {
        let url = format!("{}/v2/{}/blobs/{digest}", self.base, self.repository);
        let response = self
            .request(Method::HEAD, &url, "blob")
            .send()
            .await
            .map_err(|e| self.network("HEAD blob", e))?;
        match response.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.refused("HEAD blob", response).await),
        }
    }

    /// The digest a tag points at, if any.
    async fn tagged(&self, tag: &str, media_type: &str) -> Result<Option<String>, Error> {
        let url = format!("{}/v2/{}/manifests/{tag}", self.base, self.repository);
        let response = self
            .request(Method::HEAD, &url, "manifest")
            .header(reqwest::header::ACCEPT, media_type)
            .send()
            .await
            .map_err(|e| self.network("HEAD manifest", e))?;
        match response.status() {
            StatusCode::OK => Ok(response
                .headers()
                .get("docker-content-digest")
                .and_then(|d| d.to_str().ok())
                .map(str::to_owned)),
            // Unknown, or not ours to read (ECR without ecr:BatchGetImage): the PUT decides.
            StatusCode::NOT_FOUND | StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Ok(None),
            _ => Err(self.refused("HEAD manifest", response).await),
        }
    }
}

impl Destination for Registry {
    fn calls(&self) -> Vec<(String, u64)> {
        self.calls.snapshot()
    }

    async fn missing(&self, digests: &[&Digest]) -> Result<HashSet<Digest>, Error> {
        let found: Vec<Option<Digest>> = stream::iter(digests)
            .map(|digest| async move {
                Ok::<_, Error>((!self.has_blob(digest).await?).then(|| (*digest).clone()))
            })
            .buffer_unordered(CHECKS_AT_ONCE)
            .try_collect()
            .await?;
        Ok(found.into_iter().flatten().collect())
    }

    async fn upload(&self, blob: BlobReader) -> Result<(), Error> {
        let digest = blob.descriptor().digest.clone();
        let url = format!("{}/v2/{}/blobs/uploads/", self.base, self.repository);
        let response = self
            .request(Method::POST, &url, "blob upload")
            .header(CONTENT_LENGTH, 0)
            .send()
            .await
            .map_err(|e| self.network("opening an upload", e))?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(self.refused("opening an upload", response).await);
        }
        let mut location = self.location(&response).ok_or_else(|| Error::Registry {
            host: self.host.clone(),
            reason: "it opened an upload without a Location".into(),
        })?;
        if !self.chunked {
            return self.upload_streamed(blob, location).await;
        }

        let mut first_byte: u64 = 0;
        let mut pending = Some(super::read_next(blob, PART_BYTES));
        while let Some(reading) = pending.take() {
            let (reader, part) = reading.await.map_err(|e| Error::Task(e.to_string()))?;
            let part = part?;
            let last = reader.remaining() == 0;
            if !last {
                pending = Some(super::read_next(reader, PART_BYTES));
            }
            let end = first_byte + part.len() as u64;
            if last {
                // The last part goes with the PUT that names the digest and closes.
                let separator = if location.contains('?') { '&' } else { '?' };
                let url = format!("{location}{separator}digest={digest}");
                let response = self
                    .request(Method::PUT, &url, "blob upload")
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_LENGTH, part.len())
                    .body(part)
                    .send()
                    .await
                    .map_err(|e| self.network("closing an upload", e))?;
                if response.status() != StatusCode::CREATED {
                    return Err(self.refused("closing an upload", response).await);
                }
                return self.check_digest("closing an upload", &response, &digest);
            }
            let response = self
                .request(Method::PATCH, &location, "blob upload")
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_RANGE, format!("{first_byte}-{}", end - 1))
                .header(CONTENT_LENGTH, part.len())
                .body(part)
                .send()
                .await
                .map_err(|e| self.network("sending a part", e))?;
            // 202 by the spec; ECR answers 201.
            if !matches!(
                response.status(),
                StatusCode::ACCEPTED | StatusCode::CREATED
            ) {
                return Err(self.refused("sending a part", response).await);
            }
            if let Some(next) = self.location(&response) {
                location = next;
            }
            first_byte = end;
        }
        // The loop returns with the last part, which every blob has (an empty one too).
        Err(Error::Task(format!(
            "the upload of {digest} ended before its last part"
        )))
    }

    async fn put_manifest(&self, manifest: &Manifest, tag: Option<&str>) -> Result<Tagged, Error> {
        if let Some(tag) = tag
            && self.tagged(tag, &manifest.media_type).await?.as_deref()
                == Some(manifest.digest.as_str())
        {
            return Ok(Tagged::AlreadySet);
        }
        let reference = tag.unwrap_or(manifest.digest.as_str());
        let url = format!("{}/v2/{}/manifests/{reference}", self.base, self.repository);
        let response = self
            .request(Method::PUT, &url, "manifest")
            .header(CONTENT_TYPE, &manifest.media_type)
            .body(manifest.bytes.clone())
            .send()
            .await
            .map_err(|e| self.network("PUT manifest", e))?;
        if response.status() != StatusCode::CREATED {
            return Err(self.refused("PUT manifest", response).await);
        }
        self.check_digest("PUT manifest", &response, &manifest.digest)?;
        Ok(Tagged::Set)
    }
}
