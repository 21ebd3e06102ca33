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
//!
//! Requests go through the one registry client ([`crate::registry::Client`]), which
//! authorizes them (the token flow, for `pull,push`) and retries them under the one
//! rule. A streamed PATCH gets one attempt; when it is cut, the error says so and the
//! push starts that blob over (see `push/mod.rs`).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use futures_util::stream::{self, StreamExt, TryStreamExt};
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE};
use reqwest::{Method, StatusCode};

use super::{Destination, Error, TagState, Tagged};
use crate::image::{BlobReader, Digest, Manifest};
use crate::registry::{Access, Client, detail};

/// Parts of 10 MiB: ECR's registry endpoint wants at least 5 MiB for all but the last.
const PART_BYTES: usize = 10 * 1024 * 1024;
/// What a streamed upload reads at a time: two of these wait per blob.
const STREAM_PART_BYTES: usize = 1024 * 1024;

/// A streamed upload's buffers, back from the request body once their part is sent, for
/// the blob's next parts. A new buffer per part, at glibc's mmap threshold (1 MiB,
/// `cli/run.rs`), was mapped, faulted in, zeroed and unmapped every time: about 15 % of
/// the push's CPU in a profile (BENCHMARKS.md, "Why ours misses the limit").
#[derive(Clone, Default)]
struct Spares(Arc<Mutex<Vec<Vec<u8>>>>);

impl Spares {
    fn take(&self) -> Vec<u8> {
        self.0
            .lock()
            .ok()
            .and_then(|mut spares| spares.pop())
            .unwrap_or_default()
    }
}

/// One part of a streamed body; its buffer goes back to the spares when the body is
/// done with it.
struct Part {
    bytes: Vec<u8>,
    spares: Spares,
}

impl AsRef<[u8]> for Part {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for Part {
    fn drop(&mut self) {
        if let Ok(mut spares) = self.spares.0.lock() {
            spares.push(std::mem::take(&mut self.bytes));
        }
    }
}
/// HEAD requests in flight at once while looking for missing blobs.
const CHECKS_AT_ONCE: usize = 8;
pub struct Registry {
    client: Client,
    /// ECR's registry endpoint: parts of at least 5 MiB, each its own PATCH. Any other
    /// registry takes the whole blob as one streamed PATCH, with no round trip per part.
    chunked: bool,
    /// The referrers this registry indexed itself when they were stored (it answered
    /// with `OCI-Subject`): they need no fallback tag.
    indexed: std::sync::Mutex<HashSet<Digest>>,
}

impl Registry {
    /// `login` is (user, password), or none. It goes to the registry itself only when
    /// the registry asks for Basic, and otherwise to its token realm.
    /// `chunked`: parts of 10 MiB, each its own PATCH, as ECR's registry endpoint wants
    /// (always for ECR hosts); else one streamed PATCH per blob.
    /// `mask` hides each token the realm hands out before it is used.
    pub fn new(
        host: &str,
        repository: &str,
        login: Option<(String, String)>,
        chunked: bool,
        mask: impl Fn(&str) + Send + Sync + 'static,
    ) -> Result<Self, Error> {
        let client = Client::new(host, repository, login, Access::PullPush, mask)?;
        let ecr = crate::ecr_host::EcrHost::parse(host).is_some();
        Ok(Self {
            client,
            chunked: chunked || ecr,
            indexed: std::sync::Mutex::default(),
        })
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        action: &str,
        what: &str,
    ) -> Result<reqwest::Response, Error> {
        Ok(self.client.send(request, action, what).await?)
    }

    fn request(&self, method: Method, url: &str) -> reqwest::RequestBuilder {
        self.client.request(method, url)
    }

    /// An answer other than the ones `expected`, as one line naming the request.
    async fn refused(&self, what: &str, response: reqwest::Response) -> Error {
        Error::Registry {
            host: self.client.host().to_owned(),
            reason: self.refusal(what, response).await,
        }
    }

    /// Why `response` is not the answer `what` wanted, with what to do about it.
    async fn refusal(&self, what: &str, response: reqwest::Response) -> String {
        let status = response.status();
        let detail = detail(status, &response.text().await.unwrap_or_default());
        let hint = match status {
            StatusCode::UNAUTHORIZED if !self.client.has_login() => {
                format!(
                    "; docker login {} before this step (ecr-push reads the Docker config)",
                    self.client.host()
                )
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                format!(
                    "; the login for {} may not push to {}",
                    self.client.host(),
                    self.client.repository()
                )
            }
            _ => String::new(),
        };
        format!(
            "{what} of {}: HTTP {} {detail}{hint}",
            self.client.repository(),
            status.as_u16()
        )
    }

    /// The whole blob in one PATCH whose body is streamed as it is read and verified, then
    /// the PUT that names the digest. The reader holds back the last bytes of a blob that
    /// is not what its digest says, so such an upload is never closed.
    async fn upload_streamed(
        &self,
        blob: BlobReader,
        location: String,
        sent: &crate::progress::Sent,
    ) -> Result<(), Error> {
        let digest = blob.descriptor().digest.clone();
        let (parts, receiver) =
            tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(2);
        // A part handed to the body is as good as sent: two wait at most.
        let counted = sent.clone();
        let reading = tokio::task::spawn_blocking(move || {
            let mut reader = blob;
            let spares = Spares::default();
            loop {
                let mut part = spares.take();
                match reader.read_part_into(&mut part, STREAM_PART_BYTES) {
                    Ok(()) => {
                        let last = reader.remaining() == 0;
                        counted.add(part.len());
                        let part = bytes::Bytes::from_owner(Part {
                            bytes: part,
                            spares: spares.clone(),
                        });
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
        // The token was renewed, if it had to be, before this: the body cannot be sent
        // again, so a 401 here is the answer.
        let answer = self
            .send(
                self.request(Method::PATCH, &location)
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .body(reqwest::Body::wrap_stream(body)),
                "blob upload",
                "sending a blob",
            )
            .await;
        // A blob that failed its check explains a failed upload better than the network.
        reading.await.map_err(|e| Error::Task(e.to_string()))??;
        let response = answer?;
        if crate::http::retry::transient(response.status()) {
            // The bytes are spent: the push sends the blob again, whole.
            return Err(Error::Interrupted {
                host: self.client.host().to_owned(),
                reason: self.refusal("sending a blob", response).await,
            });
        }
        if !matches!(
            response.status(),
            StatusCode::ACCEPTED | StatusCode::CREATED
        ) {
            return Err(self.refused("sending a blob", response).await);
        }
        let location = self.client.location(&response).unwrap_or(location);
        let separator = if location.contains('?') { '&' } else { '?' };
        let response = self
            .send(
                self.request(
                    Method::PUT,
                    &format!("{location}{separator}digest={digest}"),
                )
                .header(CONTENT_LENGTH, 0),
                "blob upload",
                "closing an upload",
            )
            .await?;
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
                    host: self.client.host().to_owned(),
                    reason: format!(
                        "{what} of {}: it computed {} where {digest} was sent; the bytes changed on the way, nothing was tagged",
                        self.client.repository(),
                        String::from_utf8_lossy(actual.as_bytes())
                    ),
                })
            }
            _ => Ok(()),
        }
    }

    async fn has_blob(&self, digest: &Digest) -> Result<bool, Error> {
        let url = self.client.url(&format!("blobs/{digest}"));
        let response = self
            .send(self.client.request(Method::HEAD, &url), "blob", "HEAD blob")
            .await?;
        match response.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.refused("HEAD blob", response).await),
        }
    }

    /// The digest a tag points at, if any.
    async fn tag_digest(&self, tag: &str, media_type: &str) -> Result<Option<String>, Error> {
        let url = self.client.url(&format!("manifests/{tag}"));
        let response = self
            .send(
                self.request(Method::HEAD, &url)
                    .header(reqwest::header::ACCEPT, media_type),
                "manifest",
                "HEAD manifest",
            )
            .await?;
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
        self.client.calls().snapshot()
    }

    fn is_ecr(&self) -> bool {
        crate::ecr_host::EcrHost::parse(self.client.host()).is_some()
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

    /// What each tag points at, by HEAD; a registry's tags can always move (ECR through
    /// its registry endpoint included: its mutability is only in ECR's API).
    async fn tag_states(
        &self,
        manifest: &Manifest,
        tags: &[String],
    ) -> Result<Vec<TagState>, Error> {
        stream::iter(tags)
            .map(|tag| async move {
                Ok(match self.tag_digest(tag, &manifest.media_type).await? {
                    None => TagState::Absent,
                    Some(d) if d == manifest.digest.as_str() => TagState::Ours,
                    Some(digest) => TagState::Other {
                        digest,
                        movable: true,
                    },
                })
            })
            .buffered(CHECKS_AT_ONCE)
            .try_collect()
            .await
    }

    async fn upload(&self, blob: BlobReader, sent: &crate::progress::Sent) -> Result<(), Error> {
        let digest = blob.descriptor().digest.clone();
        let url = self.client.url("blobs/uploads/");
        let response = self
            .send(
                self.request(Method::POST, &url).header(CONTENT_LENGTH, 0),
                "blob upload",
                "opening an upload",
            )
            .await?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(self.refused("opening an upload", response).await);
        }
        let mut location = self
            .client
            .location(&response)
            .ok_or_else(|| Error::Registry {
                host: self.client.host().to_owned(),
                reason: "it opened an upload without a Location".into(),
            })?;
        if !self.chunked {
            return self.upload_streamed(blob, location, sent).await;
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
                    .send(
                        self.client
                            .request(Method::PUT, &url)
                            .header(CONTENT_TYPE, "application/octet-stream")
                            .header(CONTENT_LENGTH, part.len())
                            .body(part),
                        "blob upload",
                        "closing an upload",
                    )
                    .await?;
                if response.status() != StatusCode::CREATED {
                    return Err(self.refused("closing an upload", response).await);
                }
                sent.add((end - first_byte) as usize);
                return self.check_digest("closing an upload", &response, &digest);
            }
            let response = self
                .send(
                    self.request(Method::PATCH, &location)
                        .header(CONTENT_TYPE, "application/octet-stream")
                        .header(CONTENT_RANGE, format!("{first_byte}-{}", end - 1))
                        .header(CONTENT_LENGTH, part.len())
                        .body(part),
                    "blob upload",
                    "sending a part",
                )
                .await?;
            // 202 by the spec; ECR answers 201.
            if !matches!(
                response.status(),
                StatusCode::ACCEPTED | StatusCode::CREATED
            ) {
                return Err(self.refused("sending a part", response).await);
            }
            sent.add((end - first_byte) as usize);
            if let Some(next) = self.client.location(&response) {
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
            && self.tag_digest(tag, &manifest.media_type).await?.as_deref()
                == Some(manifest.digest.as_str())
        {
            return Ok(Tagged::AlreadySet);
        }
        let reference = tag.unwrap_or(manifest.digest.as_str());
        let url = self.client.url(&format!("manifests/{reference}"));
        let response = self
            .send(
                self.request(Method::PUT, &url)
                    .header(CONTENT_TYPE, &manifest.media_type)
                    .body(manifest.bytes.clone()),
                "manifest",
                "PUT manifest",
            )
            .await?;
        if response.status() != StatusCode::CREATED {
            return Err(self.refused("PUT manifest", response).await);
        }
        self.check_digest("PUT manifest", &response, &manifest.digest)?;
        // A registry with the referrers API says so by naming the subject it indexed.
        if response.headers().contains_key("oci-subject")
            && let Ok(mut indexed) = self.indexed.lock()
        {
            indexed.insert(manifest.digest.clone());
        }
        Ok(Tagged::Set)
    }

    /// ECR has the referrers API, and its repositories should not fill with fallback
    /// tags; nor does a referrer the registry indexed when it was stored need one.
    async fn list_referrer(&self, referrer: &Manifest) -> Result<(), Error> {
        let Some(subject) = crate::image::subject_of(&referrer.bytes) else {
            return Ok(());
        };
        let indexed = self
            .indexed
            .lock()
            .is_ok_and(|i| i.contains(&referrer.digest));
        if indexed || self.is_ecr() {
            return Ok(());
        }
        self.list_under_fallback_tag(referrer, &subject).await
    }
}

impl Registry {
    /// On a registry without the referrers API, a referrer is found through the
    /// fallback tag `sha256-<hex>` of its subject: an index of the referrers, which the
    /// client that pushes one keeps (distribution-spec 1.1, "Pushing Manifests with
    /// Subject"). Two pushers at once may each write it; the later one wins, as with
    /// every client of that scheme.
    async fn list_under_fallback_tag(
        &self,
        manifest: &Manifest,
        subject: &Digest,
    ) -> Result<(), Error> {
        const INDEX: &str = "application/vnd.oci.image.index.v1+json";
        let url = self
            .client
            .url(&format!("manifests/sha256-{}", subject.hex()));
        let response = self
            .send(
                self.request(Method::GET, &url)
                    .header(reqwest::header::ACCEPT, INDEX),
                "manifest",
                "GET manifest",
            )
            .await?;
        let mut index = match response.status() {
            StatusCode::OK => {
                let bytes = response.bytes().await.map_err(|e| Error::Registry {
                    host: self.client.host().to_owned(),
                    reason: format!("GET manifest: {}", crate::sdk::innermost(&e)),
                })?;
                serde_json::from_slice::<serde_json::Value>(&bytes).unwrap_or_default()
            }
            StatusCode::NOT_FOUND => serde_json::Value::Null,
            _ => return Err(self.refused("GET manifest", response).await),
        };
        if index.get("manifests").and_then(|m| m.as_array()).is_none() {
            index = serde_json::json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": []});
        }
        let entries = index["manifests"]
            .as_array_mut()
            .ok_or_else(|| Error::Registry {
                host: self.client.host().to_owned(),
                reason: "its fallback referrers index has no list of manifests".into(),
            })?;
        if entries
            .iter()
            .any(|e| e["digest"].as_str() == Some(manifest.digest.as_str()))
        {
            return Ok(());
        }
        entries.push(crate::image::referrer_descriptor(manifest));
        let body = serde_json::to_vec(&index).map_err(|e| Error::Registry {
            host: self.client.host().to_owned(),
            reason: format!("the fallback referrers index: {e}"),
        })?;
        let response = self
            .send(
                self.request(Method::PUT, &url)
                    .header(CONTENT_TYPE, INDEX)
                    .body(body),
                "manifest",
                "PUT manifest",
            )
            .await?;
        if response.status() != StatusCode::CREATED {
            return Err(self.refused("PUT manifest", response).await);
        }
        Ok(())
    }
}
