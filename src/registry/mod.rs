//! One client for every registry the distribution API reaches, read (`docker://`
//! sources) or written (`transport: registry`): where requests go, how they are
//! authorized, and the one retry rule ([`crate::http::retry`]). What to ask and what the
//! answers mean is the caller's: `image/registry.rs` reads, `push/registry.rs` writes.
//!
//! How to authorize is learned as Docker learns it, from the registry's 401: `Basic`
//! gets the Docker config's login; `Bearer realm=…,service=…` (GHCR, Docker Hub,
//! Harbor, GitLab, Quay) gets the distribution token flow: the login goes to the realm
//! only, never to the registry, and the token it answers goes to the registry. The
//! first request asks alone, so that concurrent ones do not each fetch a token, and the
//! token is fetched for the whole [`Access`] on that first request, before any upload:
//! a streamed PATCH cannot be sent again after a 401. Every other request can, once,
//! with a renewed token when the one it carried ran out during a long push. ECR's
//! registry endpoint knows only Basic (`AWS` and GetAuthorizationToken's password),
//! which is sent from the first request. Loopback registries are spoken to over plain
//! HTTP, as Docker does; every other one over HTTPS.

mod challenge;
mod reference;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::header::{AUTHORIZATION, HeaderValue, LOCATION, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};

pub use challenge::{detail, first_error};
pub use reference::Reference;

use crate::calls::Calls;
use crate::http::retry;

/// A token's life when the realm does not say, and the least it is taken to have: the
/// token spec's default and floor (60 s), which Docker applies too.
const TOKEN_LIFETIME_MIN: Duration = Duration::from_secs(60);
/// Longer lives are not believed: a day, so that the arithmetic cannot overflow.
const TOKEN_LIFETIME_MAX: Duration = Duration::from_secs(24 * 60 * 60);
/// A token this close to its end is renewed before it is sent, so that a streamed
/// PATCH, which cannot be sent twice, never sets out with one about to run out.
const TOKEN_RENEW_BEFORE: Duration = Duration::from_secs(10);

/// Why a request got no usable answer, as one line. `interrupted`: a request whose body
/// streamed got no answer, or a transient one, on its only attempt; sending the bytes
/// again from the start may well succeed.
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct Error {
    pub host: String,
    pub reason: String,
    pub interrupted: bool,
}

/// What the client's tokens are asked for, on its repository.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Pull,
    PullPush,
}

impl Access {
    fn actions(self) -> &'static str {
        match self {
            Access::Pull => "pull",
            Access::PullPush => "pull,push",
        }
    }
}

pub struct Client {
    http: reqwest::Client,
    /// `http(s)://HOST`.
    base: String,
    /// `base`, parsed: where the login or token may be sent (an upload Location or a
    /// blob's redirect elsewhere gets neither, as with Docker).
    origin: reqwest::Url,
    host: String,
    repository: String,
    access: Access,
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
    calls: Calls,
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
    /// Scopes the registry named besides this repository's (for which the client's
    /// [`Access`] is always asked): asked for too.
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

impl Client {
    /// `host` as requests name it (`registry-1.docker.io` for Docker Hub); `login` is
    /// (user, password), or none: it goes to the registry itself only when the registry
    /// asks for Basic, and otherwise to its token realm. `mask` hides each token the
    /// realm hands out before it is used.
    pub fn new(
        host: &str,
        repository: &str,
        login: Option<(String, String)>,
        access: Access,
        mask: impl Fn(&str) + Send + Sync + 'static,
    ) -> Result<Self, Error> {
        let failed = |reason: String| Error {
            host: host.to_owned(),
            reason,
            interrupted: false,
        };
        let scheme = if crate::http::is_loopback(host) {
            "http"
        } else {
            "https"
        };
        let http = crate::http::client(None).map_err(|e| failed(format!("no HTTP client: {e}")))?;
        let base = format!("{scheme}://{host}");
        let origin =
            reqwest::Url::parse(&base).map_err(|e| failed(format!("not a host name: {e}")))?;
        let basic = match login {
            Some((user, password)) => {
                use base64::Engine as _;
                let pair = format!("{user}:{password}");
                let mut value = HeaderValue::from_str(&format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                ))
                .map_err(|_| {
                    failed("the login in the Docker config is not a header value".into())
                })?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        // ECR's registry endpoint knows only Basic, with ECR's own token as password:
        // sent from the first request, as before any 401, saving a round trip.
        let known = crate::ecr_host::EcrHost::parse(host).is_some() && basic.is_some();
        Ok(Self {
            http,
            base,
            origin,
            host: host.to_owned(),
            repository: repository.to_owned(),
            access,
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
            calls: Calls::default(),
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// Whether a login was given (else requests and tokens are anonymous).
    pub fn has_login(&self) -> bool {
        self.basic.is_some()
    }

    /// Every attempt sent, by `METHOD action`, token requests included.
    pub fn calls(&self) -> &Calls {
        &self.calls
    }

    /// `…/v2/REPOSITORY/{path}` on this registry.
    pub fn url(&self, path: &str) -> String {
        format!("{}/v2/{}/{path}", self.base, self.repository)
    }

    pub fn request(&self, method: Method, url: &str) -> reqwest::RequestBuilder {
        self.http.request(method, url)
    }

    /// Where the next request of an upload goes: the Location header, made absolute.
    pub fn location(&self, response: &reqwest::Response) -> Option<String> {
        let location = response.headers().get(LOCATION)?.to_str().ok()?;
        Some(if location.starts_with('/') {
            format!("{}{location}", self.base)
        } else {
            location.to_owned()
        })
    }

    /// Sends `request`, counted under `action` (`PATCH blob upload`, …) per attempt,
    /// authorized as the registry asks and sent again under the retry rule. `what`
    /// names it in errors. Any answer is returned, for the caller to judge; an error
    /// means there was none, or authorizing failed.
    pub async fn send(
        &self,
        request: reqwest::RequestBuilder,
        action: &str,
        what: &str,
    ) -> Result<reqwest::Response, Error> {
        let request = request.build().map_err(|e| self.network(what, &e, false))?;
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

    async fn send_authorized(
        &self,
        request: reqwest::Request,
        action: &str,
        what: &str,
    ) -> Result<reqwest::Response, Error> {
        let streamed = request.try_clone().is_none();
        let shown = format!("{what}: {}", self.host);
        let (answer, _) =
            retry::send(request, &shown, |request| self.send_once(request, action)).await?;
        match answer {
            Ok(response) => Ok(response),
            Err(e) => Err(self.network(what, &e, streamed)),
        }
    }

    /// One attempt, and once more after a 401 that taught how to authorize. The outer
    /// error is about authorizing; the inner one is the connection's.
    async fn send_once(
        &self,
        mut request: reqwest::Request,
        action: &str,
    ) -> Result<retry::Answer, Error> {
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
            let response = match self.http.execute(request).await {
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
        self.scheme.lock().map_err(|_| Error {
            host: self.host.clone(),
            reason: "a request panicked while authorizing".into(),
            interrupted: false,
        })
    }

    /// Learns from a 401 how to authorize; whether the request is worth sending again.
    async fn challenged(&self, response: &reqwest::Response, sent: Sent) -> Result<bool, Error> {
        let offered: Vec<(String, Vec<(String, String)>)> = response
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(challenge::challenges)
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
            let challenge = Challenge {
                realm,
                service: param(params, "service"),
                scopes: param(params, "scope")
                    .iter()
                    .flat_map(|s| s.split_whitespace())
                    .filter(|s| !s.starts_with(&ours))
                    .map(str::to_owned)
                    .collect(),
            };
            self.learn(challenge)?;
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

    /// Takes a Bearer challenge as the scheme, unless the one in place covers it.
    fn learn(&self, mut challenge: Challenge) -> Result<(), Error> {
        let mut scheme = self.scheme()?;
        // The same realm asking for what the token already covers: the token ran out
        // (or another request's was newer), and renewing is enough.
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
        Ok(())
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

    /// The token flow's GET to the realm: `service`, and the scope of this client's
    /// [`Access`] on the repository with any other the registry named, with the login
    /// as Basic if there is one, anonymous otherwise.
    async fn fetch_token(&self, challenge: &Challenge) -> Result<Token, Error> {
        let realm = &challenge.realm;
        let refused = |reason: String| Error {
            host: self.host.clone(),
            reason: format!("token service {realm}: {reason}"),
            interrupted: false,
        };
        let url = self.token_url(challenge).map_err(refused)?;
        let mut request = self.http.get(url);
        if let Some(basic) = &self.basic {
            request = request.header(AUTHORIZATION, basic.clone());
        }
        let request = request
            .build()
            .map_err(|e| refused(crate::sdk::innermost(&e)))?;
        let (answer, _) = retry::send(request, &format!("token from {realm}"), |request| {
            self.calls.count("GET token");
            async { Ok::<_, Error>(self.http.execute(request).await) }
        })
        .await?;
        let response = answer.map_err(|e| refused(crate::sdk::innermost(&e)))?;
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
        self.read_token(response).await.map_err(refused)
    }

    /// The realm's URL with the token flow's query; only HTTPS (or loopback HTTP) ever
    /// gets a login.
    fn token_url(&self, challenge: &Challenge) -> Result<reqwest::Url, String> {
        let mut url = reqwest::Url::parse(&challenge.realm)
            .map_err(|e| format!("the registry named a realm that is not a URL ({e})"))?;
        let loopback = url.host_str().is_some_and(crate::http::is_loopback);
        if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
            return Err(
                "the registry named a realm that is not HTTPS, where no login or token is sent"
                    .into(),
            );
        }
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = &challenge.service {
                query.append_pair("service", service);
            }
            query.append_pair(
                "scope",
                &format!("repository:{}:{}", self.repository, self.access.actions()),
            );
            for scope in &challenge.scopes {
                query.append_pair("scope", scope);
            }
        }
        Ok(url)
    }

    /// The realm's answer: the token (masked before anything else), and how long it
    /// may be used.
    async fn read_token(&self, response: reqwest::Response) -> Result<Token, String> {
        #[derive(serde::Deserialize)]
        struct Answer {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let answer: Answer = response
            .json()
            .await
            .map_err(|e| format!("answered no token JSON ({})", crate::sdk::innermost(&e)))?;
        let lifetime = answer
            .expires_in
            .map(Duration::from_secs)
            .unwrap_or(TOKEN_LIFETIME_MIN)
            .clamp(TOKEN_LIFETIME_MIN, TOKEN_LIFETIME_MAX);
        let token = answer
            .token
            .filter(|t| !t.is_empty())
            .or(answer.access_token.filter(|t| !t.is_empty()))
            .ok_or_else(|| "answered no token".to_owned())?;
        (self.mask)(&token);
        let mut header = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| "answered a token that is not a header value".to_owned())?;
        header.set_sensitive(true);
        let serial = self.tokens_fetched.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::debug!(
            "{}: token {serial}, for {} s",
            self.host,
            lifetime.as_secs()
        );
        Ok(Token {
            header,
            renew_after: Instant::now() + lifetime.saturating_sub(TOKEN_RENEW_BEFORE),
            serial,
        })
    }

    /// No answer to `what` (or one not sent): one line naming it and the cause.
    fn network(&self, what: &str, error: &reqwest::Error, streamed: bool) -> Error {
        Error {
            host: self.host.clone(),
            reason: format!(
                "{what} of {}: {}",
                self.repository,
                crate::sdk::innermost(error)
            ),
            interrupted: streamed,
        }
    }
}
