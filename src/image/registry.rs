//! Another registry (`docker://HOST/REPO[:TAG]` or `…@sha256:…`): GHCR, Docker Hub,
//! another ECR, through the distribution API with the one registry client
//! ([`crate::registry::Client`], tokens for `pull`, the one retry rule).
//!
//! Manifests are fetched whole (they are small and their bytes are the digest); blobs
//! are streamed from the source straight into the upload, part by part, never held
//! whole.

use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::{Arc, Mutex};

use futures_util::StreamExt as _;
use reqwest::{Method, StatusCode};
use tokio::runtime::Handle;

use super::oci::Opened;
use super::{
    Blobs, Descriptor, Digest, Error, Found, INDEX_MEDIA_TYPES, MANIFEST_MEDIA_TYPES,
    MAX_MANIFEST_BYTES, referrers,
};
use crate::docker_config::Login;
use crate::registry::{Access, Client, Reference};

/// Fetches the top manifest and returns a store that reads the rest on demand. `mask`
/// hides each token the registry's realm hands out.
pub(super) async fn open(
    reference: Reference,
    login: Option<Login>,
    mask: impl Fn(&str) + Send + Sync + 'static,
) -> Result<Opened, Error> {
    let shown = format!("docker://{reference}");
    let client = Client::new(
        reference.api_host(),
        &reference.repository,
        login.map(|login| (login.username, login.password)),
        Access::Pull,
        mask,
    )
    .map_err(|e| Error::Registry {
        image: shown.clone(),
        reason: e.reason,
    })?;
    let source = Source {
        client,
        registry: reference.registry.clone(),
        shown,
    };
    let bytes = source
        .manifest(reference.pinned_or_tag(), &MANIFEST_MEDIA_TYPES)
        .await?;
    let digest = Digest::of(&bytes);
    if let Some(pinned) = &reference.digest
        && *pinned != digest
    {
        return Err(Error::Registry {
            image: source.shown,
            reason: format!("it answered a manifest whose digest is {digest}, not {pinned}"),
        });
    }
    let top = Descriptor {
        media_type: declared_type(&bytes),
        digest: digest.clone(),
        size: bytes.len() as u64,
    };
    let tag = reference.tag.clone().filter(|_| reference.digest.is_none());
    let store = Remote {
        source: Arc::new(source),
        fetched: Mutex::new(HashMap::from([(digest, Arc::new(bytes))])),
        handle: Handle::current(),
    };
    Ok((Arc::new(store), top, tag))
}

/// The type a manifest names; an OCI manifest may name none (umoci writes them so),
/// and is then an index if it lists manifests, else an image manifest.
fn declared_type(bytes: &[u8]) -> String {
    let value: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
    match value.get("mediaType").and_then(|t| t.as_str()) {
        Some(declared) => declared.to_owned(),
        None if value.get("manifests").is_some() => INDEX_MEDIA_TYPES[0].to_owned(),
        None => MANIFEST_MEDIA_TYPES[0].to_owned(),
    }
}

const NOT_FOUND: &str = "it has no such manifest; check the name and tag";

/// Pages of one referrers list read at most: with [`super::walk`]'s 256 referrers in
/// all, more is a registry answering in a loop.
const MAX_REFERRER_PAGES: usize = 64;

/// The target of a `Link` header's `rel="next"` entry (RFC 8288), if it has one.
fn next_link(value: &str) -> Option<&str> {
    value.split(',').find_map(|link| {
        let (target, params) = link.trim().strip_prefix('<')?.split_once('>')?;
        params
            .split(';')
            .filter_map(|p| p.trim().split_once('='))
            .any(|(key, rel)| {
                key.trim().eq_ignore_ascii_case("rel")
                    && rel.trim().trim_matches('"').split(' ').any(|r| r == "next")
            })
            .then_some(target)
    })
}

/// `link` resolved against `base`, if it stays on the same scheme, host and port.
fn same_origin(base: &str, link: &str) -> Option<String> {
    let base = reqwest::Url::parse(base).ok()?;
    let next = base.join(link).ok()?;
    (next.origin() == base.origin()).then(|| next.to_string())
}

/// What to do when `registry` refuses to let `repository` be read.
fn refused(registry: &str, repository: &str) -> String {
    match crate::ecr_host::EcrHost::parse(registry) {
        Some(host) => format!(
            "{registry} refused the step's AWS credentials: the role needs ecr:BatchGetImage and ecr:GetDownloadUrlForLayer on arn:{}:ecr:{}:{}:repository/{repository}, which that repository's policy must also allow when the role is in another account",
            host.partition(),
            host.region,
            host.account
        ),
        None => format!(
            "{registry} refused the credentials, or needs some: docker login {registry} before this step (ecr-push reads the Docker config)"
        ),
    }
}

/// The registry read, through one client.
struct Source {
    client: Client,
    /// The host as the reference names it (`docker.io`), for messages.
    registry: String,
    /// `docker://…` as the image is shown in messages.
    shown: String,
}

impl Source {
    /// The manifest `reference` (a tag or a digest) names, in one of `accepted` types.
    async fn manifest(&self, reference: &str, accepted: &[&str]) -> Result<Vec<u8>, Error> {
        let url = self.client.url(&format!("manifests/{reference}"));
        match self
            .get_small(&url, accepted, "GET manifest", false)
            .await?
        {
            Some(bytes) => Ok(bytes),
            None => Err(self.failed(NOT_FOUND.to_owned())),
        }
    }

    /// A manifest or a referrers list at `url`, whole; `None` when there is none (404,
    /// or with `absent_if_refused` any 4xx but an authorization's or a 429: a registry without
    /// the referrers API answers what its router answers for an unknown path).
    async fn get_small(
        &self,
        url: &str,
        accepted: &[&str],
        action: &str,
        absent_if_refused: bool,
    ) -> Result<Option<Vec<u8>>, Error> {
        let page = self
            .get_page(url, accepted, action, absent_if_refused)
            .await?;
        Ok(page.map(|(bytes, _)| bytes))
    }

    /// [`Self::get_small`], with the next page its `Link: <…>; rel="next"` names.
    async fn get_page(
        &self,
        url: &str,
        accepted: &[&str],
        action: &str,
        absent_if_refused: bool,
    ) -> Result<Option<(Vec<u8>, Option<String>)>, Error> {
        let request = self
            .client
            .request(Method::GET, url)
            .header(reqwest::header::ACCEPT, accepted.join(", "));
        let response = self
            .client
            .send(request, "manifest", action)
            .await
            .map_err(|e| self.failed(e.reason))?;
        let status = response.status();
        // Refused for who asks or how often, not for what: an answer about the path.
        let authorization = [
            StatusCode::UNAUTHORIZED,
            StatusCode::FORBIDDEN,
            StatusCode::TOO_MANY_REQUESTS,
        ];
        if status == StatusCode::NOT_FOUND
            || (absent_if_refused && status.is_client_error() && !authorization.contains(&status))
        {
            return Ok(None);
        }
        if status != StatusCode::OK {
            return Err(self.refusal(response).await);
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_MANIFEST_BYTES)
        {
            return Err(self.failed(format!(
                "it answered a manifest over {MAX_MANIFEST_BYTES} bytes, more than ECR stores"
            )));
        }
        let next = response
            .headers()
            .get_all(reqwest::header::LINK)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .find_map(next_link)
            .map(str::to_owned);
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.failed(crate::sdk::innermost(&e)))?;
        Ok(Some((bytes.to_vec(), next)))
    }

    /// Every page of the referrers API's answer for `subject` (distribution-spec 1.1
    /// lets a registry split it, each page naming the next in `Link`); `None` when the
    /// registry has no such API. A page may only lead to another of the same registry:
    /// the requests carry its token.
    async fn referrers_pages(&self, subject: &Digest) -> Result<Option<Vec<Vec<u8>>>, Error> {
        let index = [INDEX_MEDIA_TYPES[0]];
        let first = self.client.url(&format!("referrers/{subject}"));
        let Some((page, mut next)) = self.get_page(&first, &index, "GET referrers", true).await?
        else {
            return Ok(None);
        };
        let mut pages = vec![page];
        let mut at = first;
        while let Some(link) = next.take() {
            if pages.len() == MAX_REFERRER_PAGES {
                tracing::warn!(
                    "referrers: {} lists what refers to {} in more than {MAX_REFERRER_PAGES} pages; the first {MAX_REFERRER_PAGES} are read",
                    self.shown,
                    subject.short()
                );
                break;
            }
            let url = same_origin(&at, &link).ok_or_else(|| {
                self.failed(format!(
                    "its list of what refers to {subject} names its next page at {link}, not on this registry"
                ))
            })?;
            // A next page the registry does not have ends the list like a page
            // without a next one.
            let Some((page, after)) = self.get_page(&url, &index, "GET referrers", false).await?
            else {
                break;
            };
            pages.push(page);
            next = after;
            at = url;
        }
        Ok(Some(pages))
    }

    /// Whether a manifest is tagged `tag`: a HEAD, which registries that count pulls
    /// (Docker Hub) do not count, so looking for tags that are mostly absent costs no
    /// pull. Only 404 is no: a refusal, a throttle or a server error says nothing of
    /// the tag, and taking it for absent would drop a signature without a word.
    async fn has(&self, tag: &str, accepted: &[&str]) -> Result<bool, Error> {
        let url = self.client.url(&format!("manifests/{tag}"));
        let request = self
            .client
            .request(Method::HEAD, &url)
            .header(reqwest::header::ACCEPT, accepted.join(", "));
        let response = self
            .client
            .send(request, "manifest", "HEAD manifest")
            .await
            .map_err(|e| self.failed(e.reason))?;
        match response.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(match self.refusal(response).await {
                Error::Registry { image, reason } => Error::Registry {
                    image,
                    reason: format!("HEAD of the tag {tag}: {reason}"),
                },
                other => other,
            }),
        }
    }

    /// What refers to `subject`: the referrers API, else the OCI 1.1 fallback tag
    /// (`sha256-<hex>`, an index of referrers, which distribution 2.8 and other
    /// registries without the API hold), and cosign's `.sig`, `.att`, `.sbom` tags,
    /// asked at once; a tag is fetched only once a HEAD found it. A manifest fetched by
    /// a cosign tag is returned with its bytes.
    async fn referrers(&self, subject: &Digest) -> Result<Vec<(Found, Option<Vec<u8>>)>, Error> {
        let index = [INDEX_MEDIA_TYPES[0]];
        let tags = referrers::tags_for(subject);
        let fallback = self.client.url(&format!("manifests/{}", tags[0]));
        let listed = async {
            match self.referrers_pages(subject).await? {
                Some(pages) => Ok(pages),
                None if self.has(&tags[0], &index).await? => Ok(self
                    .get_small(&fallback, &index, "GET manifest", false)
                    .await?
                    .into_iter()
                    .collect()),
                None => Ok(Vec::new()),
            }
        };
        let cosign = futures_util::future::try_join_all(tags[1..].iter().map(|tag| async move {
            if !self.has(tag, &MANIFEST_MEDIA_TYPES).await? {
                return Ok(None);
            }
            let url = self.client.url(&format!("manifests/{tag}"));
            let bytes = self
                .get_small(&url, &MANIFEST_MEDIA_TYPES, "GET manifest", false)
                .await?;
            Ok::<_, Error>(bytes.map(|bytes| (tag.clone(), bytes)))
        }));
        let (listed, cosign) = futures_util::future::try_join(listed, cosign).await?;
        let mut found = Vec::new();
        for list in listed {
            let index: oci_spec::image::ImageIndex =
                serde_json::from_slice(&list).map_err(|e| {
                    self.failed(format!(
                        "its list of what refers to {subject} is not an index: {e}"
                    ))
                })?;
            for spec in index.manifests() {
                let found_one = Found {
                    descriptor: Descriptor::from_spec(spec)?,
                    tag: None,
                };
                found.push((found_one, None));
            }
        }
        for (tag, bytes) in cosign.into_iter().flatten() {
            let descriptor = Descriptor {
                media_type: declared_type(&bytes),
                digest: Digest::of(&bytes),
                size: bytes.len() as u64,
            };
            found.push((
                Found {
                    descriptor,
                    tag: Some(tag),
                },
                Some(bytes),
            ));
        }
        Ok(found)
    }

    /// The answer to GET of a blob, its body not yet read.
    async fn blob(&self, digest: &Digest) -> Result<reqwest::Response, Error> {
        let url = self.client.url(&format!("blobs/{digest}"));
        let response = self
            .client
            .send(self.client.request(Method::GET, &url), "blob", "GET blob")
            .await
            .map_err(|e| self.failed(e.reason))?;
        if response.status() != StatusCode::OK {
            return Err(self.refusal(response).await);
        }
        Ok(response)
    }

    /// An answer other than 200, as what to do about it.
    async fn refusal(&self, response: reqwest::Response) -> Error {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        let code = crate::registry::first_error(&body)
            .map(|(code, _)| code)
            .unwrap_or_default();
        let reason = match (status, code.as_str()) {
            (_, "MANIFEST_UNKNOWN" | "NAME_UNKNOWN" | "BLOB_UNKNOWN")
            | (StatusCode::NOT_FOUND, _) => NOT_FOUND.to_owned(),
            (_, "UNAUTHORIZED" | "DENIED")
            | (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN, _) => {
                refused(&self.registry, self.client.repository())
            }
            _ => format!(
                "HTTP {} {}",
                status.as_u16(),
                crate::registry::detail(status, &body)
            ),
        };
        self.failed(reason)
    }

    fn failed(&self, reason: String) -> Error {
        Error::Registry {
            image: self.shown.clone(),
            reason,
        }
    }
}

struct Remote {
    source: Arc<Source>,
    /// Manifests fetched already (the top one, those found by a cosign tag), by digest.
    fetched: Mutex<HashMap<Digest, Arc<Vec<u8>>>>,
    /// The runtime the client's connections belong to; readers run on blocking threads
    /// and wait on it.
    handle: Handle,
}

impl Blobs for Remote {
    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + Send>, Error> {
        Ok(Box::new(RemoteBlob {
            source: self.source.clone(),
            digest: digest.clone(),
            handle: self.handle.clone(),
            stream: None,
            pending: Vec::new(),
            at: 0,
        }))
    }

    fn open_manifest(&self, descriptor: &Descriptor) -> Result<Box<dyn Read + Send>, Error> {
        let fetched = self
            .fetched
            .lock()
            .map_or(None, |f| f.get(&descriptor.digest).cloned());
        if let Some(bytes) = fetched {
            return Ok(Box::new(io::Cursor::new(bytes.to_vec())));
        }
        let accepted: Vec<&str> = if descriptor.media_type.is_empty() {
            MANIFEST_MEDIA_TYPES.to_vec()
        } else {
            vec![descriptor.media_type.as_str()]
        };
        // Manifests are read while the image is opened, on a blocking thread.
        let bytes = self
            .handle
            .block_on(self.source.manifest(descriptor.digest.as_str(), &accepted))?;
        Ok(Box::new(io::Cursor::new(bytes)))
    }

    fn referrers(&self, subject: &Descriptor) -> Result<Vec<Found>, Error> {
        let found = self
            .handle
            .block_on(self.source.referrers(&subject.digest))?;
        let mut referrers = Vec::with_capacity(found.len());
        for (one, bytes) in found {
            if let (Some(bytes), Ok(mut fetched)) = (bytes, self.fetched.lock()) {
                fetched.insert(one.descriptor.digest.clone(), Arc::new(bytes));
            }
            referrers.push(one);
        }
        Ok(referrers)
    }
}

type Chunks = futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>;

/// A blob read from the registry as the upload asks for it. The request is made on
/// the first read, which happens on a blocking thread; a peer that sends nothing for
/// [`crate::http::READ_TIMEOUT`] ends it.
struct RemoteBlob {
    source: Arc<Source>,
    digest: Digest,
    handle: Handle,
    stream: Option<Chunks>,
    /// The chunk being read, and how far.
    pending: Vec<u8>,
    at: usize,
}

impl Read for RemoteBlob {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.pending.len() {
            let stream = match &mut self.stream {
                Some(stream) => stream,
                None => {
                    let response = self
                        .handle
                        .block_on(self.source.blob(&self.digest))
                        .map_err(|e| match e {
                            Error::Registry { image, reason } => {
                                io::Error::other(format!("{image}: {reason}"))
                            }
                            other => io::Error::other(other.to_string()),
                        })?;
                    self.stream.insert(response.bytes_stream().boxed())
                }
            };
            match self.handle.block_on(stream.next()) {
                Some(chunk) => {
                    self.pending = chunk
                        .map_err(|e| {
                            io::Error::other(format!(
                                "{}: {}",
                                self.source.shown,
                                crate::sdk::innermost(&e)
                            ))
                        })?
                        .to_vec();
                    self.at = 0;
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.pending.len() - self.at);
        buf[..n].copy_from_slice(&self.pending[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_page_is_the_link_whose_rel_is_next() {
        assert_eq!(
            next_link(r#"</v2/app/referrers/sha256:ab?n=2&last=x>; rel="next""#),
            Some("/v2/app/referrers/sha256:ab?n=2&last=x")
        );
        assert_eq!(
            next_link(r#"<https://r.example/a>; rel="prev", <https://r.example/b>; rel=next"#),
            Some("https://r.example/b")
        );
        assert_eq!(next_link(r#"<https://r.example/a>; rel="prev""#), None);
        assert_eq!(next_link("garbage"), None);
    }

    #[test]
    fn a_next_page_stays_on_the_registry_that_listed_it() {
        let base = "http://127.0.0.1:5000/v2/app/referrers/sha256:ab";
        assert_eq!(
            same_origin(base, "/v2/app/referrers/sha256:ab?last=x").as_deref(),
            Some("http://127.0.0.1:5000/v2/app/referrers/sha256:ab?last=x")
        );
        assert_eq!(same_origin(base, "http://127.0.0.2:5000/v2/app"), None);
        assert_eq!(same_origin(base, "https://127.0.0.1:5000/v2/app"), None);
    }
}
