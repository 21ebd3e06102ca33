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
//! How to authorize is learned as Docker learns it, from the registry's 401: `Basic`
//! gets the Docker config's login; `Bearer realm=…,service=…` (GHCR, Docker Hub,
//! Harbor, GitLab, Quay) gets the distribution token flow: the login goes to the realm
//! only, never to the registry, and the token it answers goes to the registry. The
//! first request asks alone, so that concurrent ones do not each fetch a token, and
//! the token is fetched for `pull,push` on that first HEAD, before any upload: a
//! streamed PATCH cannot be sent again after a 401. Every other request can, once, with
//! a renewed token when the one it carried ran out during a long push.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt, TryStreamExt};
use reqwest::header::{
    AUTHORIZATION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, HeaderValue, LOCATION,
    WWW_AUTHENTICATE,
};
use reqwest::{Method, StatusCode};

use super::{Destination, Error, Tagged};
use crate::image::{BlobReader, Digest, Manifest};

/// Parts of 10 MiB: ECR's registry endpoint wants at least 5 MiB for all but the last.
const PART_BYTES: usize = 10 * 1024 * 1024;
/// What a streamed upload reads at a time: two of these wait per blob.
const STREAM_PART_BYTES: usize = 1024 * 1024;
/// HEAD requests in flight at once while looking for missing blobs.
const CHECKS_AT_ONCE: usize = 8;
/// Attempts per request answered 429 or 5xx or cut off, as for STS.
const MAX_ATTEMPTS: u32 = 5;
/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(20);
/// A token's life when the realm does not say, and the least it is taken to have: the
/// token spec's default and floor (60 s), which Docker applies too.
const TOKEN_LIFETIME_MIN: Duration = Duration::from_secs(60);
/// Longer lives are not believed: a day, so that the arithmetic cannot overflow.
const TOKEN_LIFETIME_MAX: Duration = Duration::from_secs(24 * 60 * 60);
/// A token this close to its end is renewed before it is sent, so that a streamed
/// PATCH, which cannot be sent twice, never sets out with one about to run out.
const TOKEN_RENEW_BEFORE: Duration = Duration::from_secs(10);

pub struct Registry {
    client: reqwest::Client,
    /// `http(s)://HOST`.
    base: String,
    /// `base`, parsed: where the login or token may be sent (an upload Location
    /// elsewhere gets neither, as with Docker).
    origin: reqwest::Url,
    host: String,
    repository: String,
    /// `Basic …` of the Docker config's login, when there is one: for the registry if
    /// it asks for Basic, else only for its token realm.
    basic: Option<HeaderValue>,
    /// How requests are authorized, as learned from the registry's 401 answers.
    scheme: std::sync::Mutex<Scheme>,
    /// Whether a request has been answered: until then requests go one at a time.
    learned: AtomicBool,
    learning: tokio::sync::Mutex<()>,
    /// Held while a token is fetched, so that one 401 per expiry fetches one token.
    renewing: tokio::sync::Mutex<()>,
    tokens_fetched: AtomicU64,
    /// Hides a token from the log (`::add-mask::`) before it is used.
    mask: Box<dyn Fn(&str) + Send + Sync>,
    calls: super::Calls,
    /// ECR's registry endpoint: parts of at least 5 MiB, each its own PATCH. Any other
    /// registry takes the whole blob as one streamed PATCH, with no round trip per part.
    chunked: bool,
}

/// How the registry wants requests authorized.
enum Scheme {
    /// Nothing asked for yet: requests go without Authorization.
    Anonymous,
    Basic,
    Bearer {
        challenge: Challenge,
        token: Option<Token>,
    },
}

/// A `Bearer` challenge: where tokens come from and what they are for.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Challenge {
    realm: String,
    service: Option<String>,
    /// Scopes the registry named besides this repository's (for which `pull,push` is
    /// always asked): asked for too.
    scopes: Vec<String>,
}

struct Token {
    /// `Bearer …`, marked sensitive so that no debug output shows it.
    header: HeaderValue,
    renew_after: Instant,
    /// Which token this is, so that a 401 to one already replaced fetches no other.
    serial: u64,
}

/// What authorized one attempt of a request.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sent {
    Nothing,
    Basic,
    Token(u64),
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
        let scheme = if crate::http::is_loopback(host) {
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
        let base = format!("{scheme}://{host}");
        let origin = reqwest::Url::parse(&base).map_err(|e| Error::Registry {
            host: host.to_owned(),
            reason: format!("not a host name: {e}"),
        })?;
        let basic = match login {
            Some((user, password)) => {
                use base64::Engine as _;
                let pair = format!("{user}:{password}");
                let mut value = HeaderValue::from_str(&format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                ))
                .map_err(|_| Error::Registry {
                    host: host.to_owned(),
                    reason: "the login in the Docker config is not a header value".into(),
                })?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        // ECR's registry endpoint knows only Basic, with ECR's own token as password:
        // sent from the first request, as before any 401, saving a round trip.
        let ecr = crate::ecr_host::EcrHost::parse(host).is_some();
        let known = ecr && basic.is_some();
        Ok(Self {
            client,
            base,
            origin,
            host: host.to_owned(),
            repository: repository.to_owned(),
            basic,
            scheme: std::sync::Mutex::new(if known {
                Scheme::Basic
            } else {
                Scheme::Anonymous
            }),
            learned: AtomicBool::new(known),
            learning: tokio::sync::Mutex::new(()),
            renewing: tokio::sync::Mutex::new(()),
            tokens_fetched: AtomicU64::new(0),
            mask: Box::new(mask),
            chunked: chunked || ecr,
            calls: super::Calls::default(),
        })
    }

    /// Sends `request`, counted under `action` (`PATCH blob upload`, …) per attempt,
    /// authorized as the registry asks. `what` names it in errors.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        action: &str,
        what: &str,
    ) -> Result<reqwest::Response, Error> {
        let request = request.build().map_err(|e| self.network(what, e))?;
        if self.learned.load(Ordering::Acquire) {
            return self.send_authorized(request, action, what).await;
        }
        // The first request learns alone how to authorize: those started with it would
        // each be refused, and each fetch a token.
        let learning = self.learning.lock().await;
        if self.learned.load(Ordering::Acquire) {
            // Another request learned it while this one waited.
            drop(learning);
            return self.send_authorized(request, action, what).await;
        }
        let response = self.send_authorized(request, action, what).await;
        self.learned.store(true, Ordering::Release);
        response
    }

    /// Sends `request` again when the registry answers 429 or a 5xx, or the connection
    /// fails, after a jittered backoff (or the Retry-After it asks for), up to
    /// [`MAX_ATTEMPTS`] in all: Docker Hub and GHCR throttle, and a proxy in front of a
    /// registry has bad moments. A request whose body streams gets one attempt.
    async fn send_authorized(
        &self,
        mut request: reqwest::Request,
        action: &str,
        what: &str,
    ) -> Result<reqwest::Response, Error> {
        let mut attempt = 1;
        loop {
            let again = (attempt < MAX_ATTEMPTS)
                .then(|| request.try_clone())
                .flatten();
            let answer = self.send_once(request, action).await?;
            let wait = match &answer {
                Ok(response) if transient(response.status()) => {
                    retry_after(response).unwrap_or_else(|| backoff(attempt))
                }
                Ok(_) => return answer.map_err(|e| self.network(what, e)),
                Err(_) => backoff(attempt),
            };
            let Some(next) = again else {
                return answer.map_err(|e| self.network(what, e));
            };
            match &answer {
                Ok(response) => tracing::debug!(
                    "{what}: {} answered {}; again in {:.1} s",
                    self.host,
                    response.status(),
                    wait.as_secs_f64()
                ),
                Err(e) => tracing::debug!(
                    "{what}: {}; again in {:.1} s",
                    crate::sdk::innermost(e),
                    wait.as_secs_f64()
                ),
            }
            tokio::time::sleep(wait).await;
            request = next;
            attempt += 1;
        }
    }

    /// One attempt, and once more after a 401 that taught how to authorize. The outer
    /// error is about authorizing; the inner one is the connection's.
    async fn send_once(
        &self,
        mut request: reqwest::Request,
        action: &str,
    ) -> Result<Result<reqwest::Response, reqwest::Error>, Error> {
        let ours = request.url().origin() == self.origin.origin();
        let mut retried = false;
        loop {
            // A streamed body cannot be sent twice: such a request gets one attempt.
            let replay = if retried || !ours {
                None
            } else {
                request.try_clone()
            };
            let sent = if ours {
                self.authorize(&mut request).await?
            } else {
                Sent::Nothing
            };
            self.calls.count(&format!("{} {action}", request.method()));
            let response = match self.client.execute(request).await {
                Ok(response) => response,
                Err(e) => return Ok(Err(e)),
            };
            if response.status() != StatusCode::UNAUTHORIZED {
                return Ok(Ok(response));
            }
            let Some(again) = replay else {
                return Ok(Ok(response));
            };
            if !self.challenged(&response, sent).await? {
                return Ok(Ok(response));
            }
            retried = true;
            request = again;
        }
    }

    /// Puts the Authorization the registry asked for on `request`, renewing a token
    /// that is about to run out first.
    async fn authorize(&self, request: &mut reqwest::Request) -> Result<Sent, Error> {
        let mut renewed = false;
        loop {
            let stale = {
                let scheme = self.scheme()?;
                match &*scheme {
                    Scheme::Anonymous => return Ok(Sent::Nothing),
                    Scheme::Basic => {
                        if let Some(basic) = &self.basic {
                            request.headers_mut().insert(AUTHORIZATION, basic.clone());
                            return Ok(Sent::Basic);
                        }
                        return Ok(Sent::Nothing);
                    }
                    Scheme::Bearer { token, .. } => match token {
                        Some(token) if renewed || Instant::now() < token.renew_after => {
                            request
                                .headers_mut()
                                .insert(AUTHORIZATION, token.header.clone());
                            return Ok(Sent::Token(token.serial));
                        }
                        Some(token) => Sent::Token(token.serial),
                        None => Sent::Nothing,
                    },
                }
            };
            self.renew(stale).await?;
            renewed = true;
        }
    }

    fn scheme(&self) -> Result<std::sync::MutexGuard<'_, Scheme>, Error> {
        self.scheme
            .lock()
            .map_err(|_| Error::Task("a request panicked while authorizing".into()))
    }

    /// Learns from a 401 how to authorize; whether the request is worth sending again.
    async fn challenged(&self, response: &reqwest::Response, sent: Sent) -> Result<bool, Error> {
        let offered: Vec<(String, Vec<(String, String)>)> = response
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(challenges)
            .collect();
        let param = |params: &[(String, String)], name: &str| {
            params
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        // Bearer first: with it the login goes only to the realm, never to the registry.
        if let Some((_, params)) = offered.iter().find(|(s, _)| s == "bearer")
            && let Some(realm) = param(params, "realm")
        {
            let ours = format!("repository:{}:", self.repository);
            let mut challenge = Challenge {
                realm,
                service: param(params, "service"),
                scopes: param(params, "scope")
                    .iter()
                    .flat_map(|s| s.split_whitespace())
                    .filter(|s| !s.starts_with(&ours))
                    .map(str::to_owned)
                    .collect(),
            };
            {
                let mut scheme = self.scheme()?;
                // The same realm asking for what the token already covers: the token
                // ran out (or another request's was newer), and renewing is enough.
                let covered = match &*scheme {
                    Scheme::Bearer {
                        challenge: known, ..
                    } if known.realm == challenge.realm && known.service == challenge.service => {
                        // A scope not asked for yet is asked for with the earlier ones.
                        challenge.scopes.retain(|s| !known.scopes.contains(s));
                        let covered = challenge.scopes.is_empty();
                        challenge.scopes.splice(0..0, known.scopes.iter().cloned());
                        covered
                    }
                    _ => false,
                };
                if !covered {
                    *scheme = Scheme::Bearer {
                        challenge,
                        token: None,
                    };
                }
            }
            self.renew(sent).await?;
            return Ok(true);
        }
        if offered.iter().any(|(s, _)| s == "basic") && self.basic.is_some() && sent != Sent::Basic
        {
            *self.scheme()? = Scheme::Basic;
            return Ok(true);
        }
        Ok(false)
    }

    /// A new token, unless the one in place is not `stale` (another request renewed
    /// it while this one waited).
    async fn renew(&self, stale: Sent) -> Result<(), Error> {
        let _renewing = self.renewing.lock().await;
        let challenge = {
            let scheme = self.scheme()?;
            match &*scheme {
                Scheme::Bearer { challenge, token } => match (token, stale) {
                    (Some(token), Sent::Token(serial)) if token.serial != serial => return Ok(()),
                    (Some(_), Sent::Nothing | Sent::Basic) => return Ok(()),
                    _ => challenge.clone(),
                },
                _ => return Ok(()),
            }
        };
        let token = self.fetch_token(&challenge).await?;
        if let Scheme::Bearer {
            challenge: known,
            token: slot,
        } = &mut *self.scheme()?
            && *known == challenge
        {
            *slot = Some(token);
        }
        Ok(())
    }

    /// The token flow's GET to the realm: `service`, and the scope of a push (`pull,push`
    /// on the repository) with any other the registry named, with the login as Basic if
    /// there is one, anonymous otherwise.
    async fn fetch_token(&self, challenge: &Challenge) -> Result<Token, Error> {
        let realm = &challenge.realm;
        let refused = |reason: String| Error::Registry {
            host: self.host.clone(),
            reason: format!("token service {realm}: {reason}"),
        };
        let mut url = reqwest::Url::parse(realm).map_err(|e| {
            refused(format!(
                "the registry named a realm that is not a URL ({e})"
            ))
        })?;
        let loopback = url.host_str().is_some_and(crate::http::is_loopback);
        if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
            return Err(refused(
                "the registry named a realm that is not HTTPS, where no login or token is sent"
                    .into(),
            ));
        }
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = &challenge.service {
                query.append_pair("service", service);
            }
            query.append_pair(
                "scope",
                &format!("repository:{}:pull,push", self.repository),
            );
            for scope in &challenge.scopes {
                query.append_pair("scope", scope);
            }
        }
        let mut request = self.client.get(url);
        if let Some(basic) = &self.basic {
            request = request.header(AUTHORIZATION, basic.clone());
        }
        self.calls.count("GET token");
        let response = request
            .send()
            .await
            .map_err(|e| refused(crate::sdk::innermost(&e)))?;
        let status = response.status();
        if !status.is_success() {
            let detail = detail(status, &response.text().await.unwrap_or_default());
            let what = format!("HTTP {} {detail}", status.as_u16());
            return Err(refused(match status {
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN if self.basic.is_some() => {
                    format!(
                        "refused the Docker config's login for {} ({what}); check it, then docker login {} again",
                        self.host, self.host
                    )
                }
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => format!(
                    "refused an anonymous token ({what}); docker login {} before this step (ecr-push reads the Docker config)",
                    self.host
                ),
                _ => format!("answered {what}"),
            }));
        }
        #[derive(serde::Deserialize)]
        struct Answer {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let answer: Answer = response.json().await.map_err(|e| {
            refused(format!(
                "answered no token JSON ({})",
                crate::sdk::innermost(&e)
            ))
        })?;
        let lifetime = answer
            .expires_in
            .map(Duration::from_secs)
            .unwrap_or(TOKEN_LIFETIME_MIN)
            .clamp(TOKEN_LIFETIME_MIN, TOKEN_LIFETIME_MAX);
        let token = answer
            .token
            .filter(|t| !t.is_empty())
            .or(answer.access_token.filter(|t| !t.is_empty()))
            .ok_or_else(|| refused("answered no token".into()))?;
        (self.mask)(&token);
        let mut header = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| refused("answered a token that is not a header value".into()))?;
        header.set_sensitive(true);
        let serial = self.tokens_fetched.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::debug!(
            "{}: token {serial} from {realm}, for {} s",
            self.host,
            lifetime.as_secs()
        );
        Ok(Token {
            header,
            renew_after: Instant::now() + lifetime.saturating_sub(TOKEN_RENEW_BEFORE),
            serial,
        })
    }

    /// An answer other than the ones `expected`, as one line naming the request.
    async fn refused(&self, what: &str, response: reqwest::Response) -> Error {
        let status = response.status();
        let detail = detail(status, &response.text().await.unwrap_or_default());
        let hint = match status {
            StatusCode::UNAUTHORIZED if self.basic.is_none() => {
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
    async fn upload_streamed(
        &self,
        blob: BlobReader,
        location: String,
        sent: &crate::progress::Sent,
    ) -> Result<(), Error> {
        let digest = blob.descriptor().digest.clone();
        let (parts, receiver) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(2);
        // A part handed to the body is as good as sent: two wait at most.
        let counted = sent.clone();
        let reading = tokio::task::spawn_blocking(move || {
            let mut reader = blob;
            loop {
                match reader.read_part(STREAM_PART_BYTES) {
                    Ok(part) => {
                        let last = reader.remaining() == 0;
                        counted.add(part.len());
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
                self.client
                    .request(Method::PATCH, &location)
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .body(reqwest::Body::wrap_stream(body)),
                "blob upload",
                "sending a blob",
            )
            .await;
        // A blob that failed its check explains a failed upload better than the network.
        reading.await.map_err(|e| Error::Task(e.to_string()))??;
        let response = answer?;
        if !matches!(
            response.status(),
            StatusCode::ACCEPTED | StatusCode::CREATED
        ) {
            return Err(self.refused("sending a blob", response).await);
        }
        let location = self.location(&response).unwrap_or(location);
        let separator = if location.contains('?') { '&' } else { '?' };
        let response = self
            .send(
                self.client
                    .request(Method::PUT, format!("{location}{separator}digest={digest}"))
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
        let url = format!("{}/v2/{}/manifests/{tag}", self.base, self.repository);
        let response = self
            .send(
                self.client
                    .request(Method::HEAD, &url)
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

    async fn upload(&self, blob: BlobReader, sent: &crate::progress::Sent) -> Result<(), Error> {
        let digest = blob.descriptor().digest.clone();
        let url = format!("{}/v2/{}/blobs/uploads/", self.base, self.repository);
        let response = self
            .send(
                self.client
                    .request(Method::POST, &url)
                    .header(CONTENT_LENGTH, 0),
                "blob upload",
                "opening an upload",
            )
            .await?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(self.refused("opening an upload", response).await);
        }
        let mut location = self.location(&response).ok_or_else(|| Error::Registry {
            host: self.host.clone(),
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
                    self.client
                        .request(Method::PATCH, &location)
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
            && self.tag_digest(tag, &manifest.media_type).await?.as_deref()
                == Some(manifest.digest.as_str())
        {
            return Ok(Tagged::AlreadySet);
        }
        let reference = tag.unwrap_or(manifest.digest.as_str());
        let url = format!("{}/v2/{}/manifests/{reference}", self.base, self.repository);
        let response = self
            .send(
                self.client
                    .request(Method::PUT, &url)
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
        Ok(Tagged::Set)
    }
}

/// Answers worth waiting out: throttled, or the registry (or a proxy) failing for now.
fn transient(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || matches!(status.as_u16(), 500 | 502 | 503 | 504)
}

/// The wait a `Retry-After` of seconds asks for, within [`MAX_BACKOFF`].
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let seconds: u64 = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds).min(MAX_BACKOFF))
}

/// Exponential backoff with full jitter: up to 0.5 s, 1 s, 2 s, … within [`MAX_BACKOFF`].
fn backoff(attempt: u32) -> Duration {
    use std::hash::{BuildHasher as _, Hasher as _};
    let ceiling = Duration::from_millis(500)
        .saturating_mul(1 << attempt.saturating_sub(1).min(10))
        .min(MAX_BACKOFF);
    // A random fraction from the standard library's per-process random keys.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(attempt);
    let fraction = (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64;
    ceiling.mul_f64(fraction)
}

/// The distribution spec's error body (`{"errors":[{"code","message"}]}`) as
/// `CODE: message`, else the status's reason.
fn detail(status: StatusCode, body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
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
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("").to_owned())
}

/// The challenges of one `WWW-Authenticate` value (RFC 9110 §11.6.1): each a scheme,
/// lowercased, and its `name=value` parameters, values unquoted. A value may hold several
/// (`Bearer realm="…",service="…", Basic realm="…"`): a word not followed by `=` starts
/// the next.
fn challenges(value: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut found: Vec<(String, Vec<(String, String)>)> = Vec::new();
    let mut rest = value.trim_start();
    while !rest.is_empty() {
        let end = rest
            .find(|c: char| c == '=' || c == ',' || c.is_whitespace())
            .unwrap_or(rest.len());
        let word = &rest[..end];
        let after = rest[end..].trim_start();
        if let Some(value_text) = after.strip_prefix('=').filter(|_| !found.is_empty()) {
            let value_text = value_text.trim_start();
            let (value, remaining) = match value_text.strip_prefix('"') {
                Some(quoted) => {
                    let mut value = String::new();
                    let mut chars = quoted.char_indices();
                    let mut close = quoted.len();
                    while let Some((i, c)) = chars.next() {
                        match c {
                            '\\' => {
                                if let Some((_, escaped)) = chars.next() {
                                    value.push(escaped);
                                }
                            }
                            '"' => {
                                close = i + 1;
                                break;
                            }
                            _ => value.push(c),
                        }
                    }
                    (value, &quoted[close..])
                }
                None => {
                    let end = value_text.find(',').unwrap_or(value_text.len());
                    (value_text[..end].trim_end().to_owned(), &value_text[end..])
                }
            };
            if let Some((_, params)) = found.last_mut() {
                params.push((word.to_owned(), value));
            }
            rest = remaining;
        } else if word.is_empty() {
            // A stray comma or `=`: skipped.
            rest = &after[after.chars().next().map_or(0, char::len_utf8)..];
        } else {
            found.push((word.to_ascii_lowercase(), Vec::new()));
            rest = after;
        }
        rest = rest.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
    }
    found
}

#[cfg(test)]
mod tests {
    use super::challenges;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_bearer_challenge_gives_realm_service_and_scope() {
        assert_eq!(
            challenges(
                r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:team/app:pull,push""#
            ),
            [(
                "bearer".to_owned(),
                pairs(&[
                    ("realm", "https://auth.example/token"),
                    ("service", "registry.example"),
                    ("scope", "repository:team/app:pull,push"),
                ])
            )]
        );
    }

    #[test]
    fn several_challenges_in_one_value_are_told_apart() {
        assert_eq!(
            challenges(
                r#"Bearer realm="https://a/t", error="invalid_token", Basic realm="x \"y\"",charset=UTF-8"#
            ),
            [
                (
                    "bearer".to_owned(),
                    pairs(&[("realm", "https://a/t"), ("error", "invalid_token")])
                ),
                (
                    "basic".to_owned(),
                    pairs(&[("realm", "x \"y\""), ("charset", "UTF-8")])
                ),
            ]
        );
        assert_eq!(challenges("Basic"), [("basic".to_owned(), Vec::new())]);
        assert!(challenges(" , =").is_empty());
    }
}
