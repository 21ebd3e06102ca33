//! The local stack the integration tests run against, each part real and on a free
//! loopback port, started per test and stopped on drop:
//! - moto, as STS and ECR;
//! - a recording proxy between the tool and moto, because moto does not enforce some
//!   of ECR's rules (part sizes, the digest sent to CompleteLayerUpload): the tests
//!   assert those on what the tool actually sent;
//! - a GitHub Actions ID-token endpoint that checks the bearer token and audience and
//!   serves a signed JWT with GitHub's claims;
//! - test images written as OCI layouts, with random (seeded) layers.

#![allow(dead_code)] // each test binary uses its own part of the support code

mod container;
mod daemon;
mod docker;
pub mod token;
#[allow(unused_imports)]
pub use container::{ActionImage, Dns};
#[allow(unused_imports)]
pub use daemon::Daemon;
#[allow(unused_imports)] // not every test binary uses them
pub use docker::*;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use sha2::{Digest as _, Sha256};

pub const REGION: &str = "us-east-1";
pub const CI_ACCOUNT: &str = "111111111111";
pub const REGISTRY_ACCOUNT: &str = "222222222222";
pub const PUSH_ROLE: &str = "arn:aws:iam::111111111111:role/ecr-ci-push-role";
pub const PUBLISHER_ROLE: &str = "arn:aws:iam::222222222222:role/ecr-publisher";
pub const REQUEST_TOKEN: &str = "ghs_requestTokenForTheIdTokenEndpoint0001";
/// The ids github.com gives octo-org and octo-repo (GITHUB_REPOSITORY_OWNER_ID,
/// GITHUB_REPOSITORY_ID; the `repository_owner_id` and `repository_id` claims).
pub const OWNER_ID: &str = "190583734";
pub const REPO_ID: &str = "873419205";
/// What a repository created since 2026-07-15 gets: the immutable subject.
pub const SUB: &str = "repo:octo-org@190583734/octo-repo@873419205:ref:refs/heads/main";
/// What an older repository that has not opted in still gets (and GitHub Enterprise
/// Server): the classic subject.
pub const SUB_CLASSIC: &str = "repo:octo-org/octo-repo:ref:refs/heads/main";

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

// ---------------------------------------------------------------- moto

pub struct Moto {
    child: Child,
    pub port: u16,
    /// One runtime for every SDK call of the test: pooled connections belong to it.
    rt: tokio::runtime::Runtime,
}

impl Moto {
    pub fn start() -> Self {
        let server = root().join(".venv/bin/moto_server");
        assert!(
            server.exists(),
            "{} is missing: run scripts/test, which installs moto into .venv",
            server.display()
        );
        let port = free_port();
        let child = Command::new(&server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let moto = Self {
            child,
            port,
            rt: runtime(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto did not listen on {port}");
            thread::sleep(Duration::from_millis(50));
        }
        moto
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn config(&self, credentials: aws_sdk_sts::config::Credentials) -> aws_config::SdkConfig {
        self.rt.block_on(
            aws_config::defaults(aws_config::BehaviorVersion::latest())
                .region(aws_config::Region::new(REGION))
                .endpoint_url(self.endpoint())
                .credentials_provider(credentials)
                .load(),
        )
    }

    /// Credentials moto files under `account`, for setting up the test.
    fn credentials_in(&self, account: &str) -> aws_sdk_sts::types::Credentials {
        let base = self.config(aws_sdk_sts::config::Credentials::new(
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            None,
            None,
            "test",
        ));
        let assumed = self
            .rt
            .block_on(
                aws_sdk_sts::Client::new(&base)
                    .assume_role()
                    .role_arn(format!("arn:aws:iam::{account}:role/test-setup"))
                    .role_session_name("test")
                    .send(),
            )
            .expect("moto AssumeRole");
        assumed.credentials().expect("credentials").clone()
    }

    /// Calls moto's IAM (query protocol) in `account`. moto checks no signature until
    /// IAM enforcement is on, and routes by the credential scope, so the request is sent
    /// unsigned with a scope naming iam: the IAM SDK crate is not worth its build time
    /// for three calls.
    pub fn iam(&self, account: &str, params: &[(&str, &str)]) {
        let key = self.credentials_in(account).access_key_id().to_owned();
        let mut body = String::from("Version=2010-05-08");
        for (k, v) in params {
            body.push_str(&format!("&{k}={}", percent_encode(v)));
        }
        let response = self.rt.block_on(async {
            reqwest::Client::new()
                .post(self.endpoint())
                .header("Content-Type", "application/x-www-form-urlencoded")
                .header(
                    "Authorization",
                    format!("AWS4-HMAC-SHA256 Credential={key}/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0"),
                )
                .body(body)
                .send()
                .await
        });
        let response = response.expect("moto IAM answers");
        assert!(
            response.status().is_success(),
            "IAM {params:?}: {}",
            response.status()
        );
    }

    /// From the next `free_requests` requests on, moto authenticates every request and
    /// evaluates IAM policies (one counter for the whole server).
    pub fn enforce_iam_after(&self, free_requests: u32) {
        self.reset_auth(&free_requests.to_string());
    }

    pub fn stop_enforcing_iam(&self) {
        self.reset_auth("inf");
    }

    fn reset_auth(&self, count: &str) {
        let response = self.rt.block_on(
            reqwest::Client::new()
                .post(format!("{}/moto-api/reset-auth", self.endpoint()))
                .body(count.to_owned())
                .send(),
        );
        assert!(response.expect("moto reset-auth").status().is_success());
    }

    /// Credentials of `role`, as a job would get them with its token.
    pub fn web_identity_credentials(&self, role: &str) -> aws_sdk_sts::types::Credentials {
        let config = self.rt.block_on(
            aws_config::defaults(aws_config::BehaviorVersion::latest())
                .region(aws_config::Region::new(REGION))
                .endpoint_url(self.endpoint())
                .no_credentials()
                .load(),
        );
        let output = self
            .rt
            .block_on(
                aws_sdk_sts::Client::new(&config)
                    .assume_role_with_web_identity()
                    .role_arn(role)
                    .role_session_name("test")
                    .web_identity_token("header.e30.signature")
                    .send(),
            )
            .expect("moto AssumeRoleWithWebIdentity");
        output.credentials().expect("credentials").clone()
    }

    /// An ECR client with these credentials.
    pub fn ecr_as(&self, c: &aws_sdk_sts::types::Credentials) -> aws_sdk_ecr::Client {
        aws_sdk_ecr::Client::new(&self.config(aws_sdk_sts::config::Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_owned()),
            None,
            "test",
        )))
    }

    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.rt.block_on(future)
    }

    /// An ECR client acting in `account`, for setting up and inspecting the test.
    pub fn ecr(&self, account: &str) -> aws_sdk_ecr::Client {
        self.ecr_as(&self.credentials_in(account))
    }

    pub fn create_repository(&self, account: &str, name: &str, immutable: bool) {
        let mutability = if immutable {
            aws_sdk_ecr::types::ImageTagMutability::Immutable
        } else {
            aws_sdk_ecr::types::ImageTagMutability::Mutable
        };
        let ecr = self.ecr(account);
        self.rt
            .block_on(
                ecr.create_repository()
                    .repository_name(name)
                    .image_tag_mutability(mutability)
                    .send(),
            )
            .expect("CreateRepository");
    }

    /// The manifest a tag points at in moto: (digest, bytes), or None.
    pub fn manifest(&self, account: &str, repository: &str, tag: &str) -> Option<(String, String)> {
        let id = aws_sdk_ecr::types::ImageIdentifier::builder()
            .image_tag(tag)
            .build();
        let image = self.image(account, repository, id)?;
        Some((
            image.image_id()?.image_digest()?.to_owned(),
            image.image_manifest()?.to_owned(),
        ))
    }

    /// The manifest stored under a digest in moto: (media type, bytes), or None.
    pub fn manifest_by_digest(
        &self,
        account: &str,
        repository: &str,
        digest: &str,
    ) -> Option<(String, String)> {
        let id = aws_sdk_ecr::types::ImageIdentifier::builder()
            .image_digest(digest)
            .build();
        let image = self.image(account, repository, id)?;
        Some((
            image.image_manifest_media_type()?.to_owned(),
            image.image_manifest()?.to_owned(),
        ))
    }

    /// BatchGetImage of one image.
    fn image(
        &self,
        account: &str,
        repository: &str,
        id: aws_sdk_ecr::types::ImageIdentifier,
    ) -> Option<aws_sdk_ecr::types::Image> {
        let ecr = self.ecr(account);
        let request = ecr
            .batch_get_image()
            .repository_name(repository)
            .image_ids(id);
        let output = self.rt.block_on(request.send()).ok()?;
        output.images().first().cloned()
    }

    /// The size ECR reports for each available blob, by digest.
    pub fn available_blobs(
        &self,
        account: &str,
        repository: &str,
        digests: &[String],
    ) -> HashMap<String, i64> {
        let ecr = self.ecr(account);
        let output = self
            .rt
            .block_on(
                ecr.batch_check_layer_availability()
                    .repository_name(repository)
                    .set_layer_digests(Some(digests.to_vec()))
                    .send(),
            )
            .expect("BatchCheckLayerAvailability");
        output
            .layers()
            .iter()
            .filter(|l| {
                l.layer_availability() == Some(&aws_sdk_ecr::types::LayerAvailability::Available)
            })
            .map(|l| {
                (
                    l.layer_digest().unwrap_or_default().to_owned(),
                    l.layer_size().unwrap_or(-1),
                )
            })
            .collect()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------- recording proxy

/// The access key in `Credential=KEY/DATE/REGION/SERVICE/aws4_request`.
fn signed_key(head: &str) -> String {
    header(head, "authorization")
        .and_then(|a| {
            let scope = a.split("Credential=").nth(1)?;
            Some(scope.split('/').next()?.to_owned())
        })
        .unwrap_or_default()
}

/// An STS answer whose credentials expire `lifetime` from now, and their access key.
fn expire_in(response: &[u8], lifetime: Duration) -> (Vec<u8>, Option<String>) {
    let text = String::from_utf8_lossy(response).into_owned();
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return (response.to_vec(), None);
    };
    let between = |open: &str, close: &str| -> Option<(usize, usize)> {
        let start = body.find(open)? + open.len();
        Some((start, start + body[start..].find(close)?))
    };
    let Some((start, end)) = between("<Expiration>", "</Expiration>") else {
        return (response.to_vec(), None);
    };
    let key = between("<AccessKeyId>", "</AccessKeyId>").map(|(s, e)| body[s..e].to_owned());
    let at = std::time::SystemTime::now() + lifetime;
    let body = format!("{}{}{}", &body[..start], rfc3339(at), &body[end..]);
    let head: Vec<String> = head
        .split("\r\n")
        .map(|l| {
            if l.to_ascii_lowercase().starts_with("content-length:") {
                format!("Content-Length: {}", body.len())
            } else {
                l.to_owned()
            }
        })
        .collect();
    (
        format!("{}\r\n\r\n{body}", head.join("\r\n")).into_bytes(),
        key,
    )
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a time (UTC; civil-from-days, no date crate needed).
fn rfc3339(at: std::time::SystemTime) -> String {
    let secs = at
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64;
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The region in `Credential=KEY/DATE/REGION/SERVICE/aws4_request`.
fn signed_region(head: &str) -> String {
    header(head, "authorization")
        .and_then(|a| {
            let scope = a.split("Credential=").nth(1)?;
            Some(scope.split('/').nth(2)?.to_owned())
        })
        .unwrap_or_default()
}

/// One request the tool sent: the API action and its body.
#[derive(Clone, Debug)]
pub struct Call {
    pub action: String,
    pub body: String,
    /// The region of the request's SigV4 credential scope.
    pub region: String,
    /// When the request arrived.
    pub at: Instant,
    /// The scheduled fault it got, if any.
    pub fault: Option<Kind>,
}

impl Call {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// A form field of a query-protocol (STS) request.
    pub fn form(&self, key: &str) -> Option<String> {
        self.body.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k == key).then(|| percent_decode(v))
        })
    }
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `%XX` and `+` of a query or form decoded.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hexits = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("00");
                out.push(u8::from_str_radix(hexits, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Forwards every request to moto unchanged and keeps a copy of it; on request, it
/// loses moto's answer to one call, as a network that drops a connection would.
pub struct Recorder {
    pub port: u16,
    calls: Arc<Mutex<Vec<Call>>>,
    fault: Arc<Mutex<Option<(String, Fault, u32)>>>,
    chaos: Arc<Mutex<Option<Chaos>>>,
    clock: Arc<Mutex<Clock>>,
}

/// Time as the test sets it: how long STS credentials last, the keys it handed out and
/// when they expire, the ECR requests refused for an expired key, and answers delayed.
#[derive(Default)]
struct Clock {
    lifetime: Option<Duration>,
    issued: HashMap<String, Instant>,
    refused: u32,
    delays: HashMap<String, Duration>,
    /// STS's answers as the tool received them (the credentials in them included).
    sts_answers: Vec<String>,
    /// Per action, how many calls may be in flight at once before ECR throttles.
    quotas: HashMap<String, usize>,
    /// Per action, the calls forwarded to moto and not yet answered.
    in_flight: HashMap<String, usize>,
    /// Per action, the most calls that were in flight at once.
    peak: HashMap<String, usize>,
}

/// A kind of fault the recorder injects on a schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// HTTP 400 ThrottlingException (ECR) or Throttling (STS).
    Throttle,
    /// HTTP 500.
    Internal,
    /// HTTP 503.
    Unavailable,
    /// The connection closed before the request reached moto.
    ResetBefore,
    /// The request reached moto; the connection closed before its answer.
    ResetAfter,
    /// No answer at all: the connection is held open until the client gives up.
    Stall,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Throttle,
        Kind::Internal,
        Kind::Unavailable,
        Kind::ResetBefore,
        Kind::ResetAfter,
        Kind::Stall,
    ];
}

/// A seeded schedule: each call of one of `actions` (all when empty) fails with
/// probability `percent`, with a kind drawn from `kinds`.
struct Chaos {
    state: u64,
    percent: u64,
    actions: Vec<String>,
    kinds: Vec<Kind>,
    /// How many faults are left to inject; `None`: no limit.
    remaining: Option<u32>,
}

impl Chaos {
    fn next(&mut self) -> u64 {
        // xorshift64*: reproducible from the seed, no crate needed.
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn draw(&mut self, action: &str) -> Option<Kind> {
        if !self.actions.is_empty() && !self.actions.iter().any(|a| a == action) {
            return None;
        }
        if self.remaining == Some(0) || self.next() % 100 >= self.percent {
            return None;
        }
        if let Some(left) = self.remaining.as_mut() {
            *left -= 1;
        }
        let pick = (self.next() % self.kinds.len() as u64) as usize;
        Some(self.kinds[pick])
    }
}

const STS_ACTIONS: [&str; 3] = [
    "AssumeRoleWithWebIdentity",
    "AssumeRole",
    "GetCallerIdentity",
];

/// What AWS answers for `kind` to `action`, or the connection-level fault.
fn fault_for(kind: Kind, action: &str) -> Fault {
    let sts = STS_ACTIONS.contains(&action);
    let answer = |status: &'static str, json_code: &str, xml_code: &str, message: &str| {
        if sts {
            Fault::Answer {
                status,
                content_type: "text/xml",
                body: format!(
                    "<ErrorResponse><Error><Type>Receiver</Type><Code>{xml_code}</Code><Message>{message}</Message></Error><RequestId>chaos</RequestId></ErrorResponse>"
                ),
            }
        } else {
            Fault::Answer {
                status,
                content_type: "application/x-amz-json-1.1",
                body: serde_json::json!({"__type": json_code, "message": message}).to_string(),
            }
        }
    };
    match kind {
        Kind::Throttle => answer(
            "400 Bad Request",
            "ThrottlingException",
            "Throttling",
            "Rate exceeded",
        ),
        Kind::Internal => answer(
            "500 Internal Server Error",
            "ServerException",
            "InternalFailure",
            "We encountered an internal error. Please try again.",
        ),
        Kind::Unavailable => answer(
            "503 Service Unavailable",
            "ServiceUnavailableException",
            "ServiceUnavailable",
            "Service is unavailable. Please try again.",
        ),
        Kind::ResetBefore => Fault::Reset,
        Kind::ResetAfter => Fault::LoseAnswer,
        Kind::Stall => Fault::Stall,
    }
}

/// What the recorder does to the next call of one action.
#[derive(Clone)]
pub enum Fault {
    /// Forward it, then drop moto's answer.
    LoseAnswer,
    /// Close the connection without forwarding it.
    Reset,
    /// Neither forward nor answer; hold the connection until the client closes it.
    Stall,
    /// Answer it without moto: an HTTP status and a body, as AWS would.
    Answer {
        status: &'static str,
        content_type: &'static str,
        body: String,
    },
}

impl Recorder {
    pub fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let fault = Arc::new(Mutex::new(None));
        let chaos = Arc::new(Mutex::new(None));
        let clock = Arc::new(Mutex::new(Clock::default()));
        let (shared, faults, schedule, time) = (
            Arc::clone(&calls),
            Arc::clone(&fault),
            Arc::clone(&chaos),
            Arc::clone(&clock),
        );
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (calls, faults, schedule, time) = (
                    Arc::clone(&shared),
                    Arc::clone(&faults),
                    Arc::clone(&schedule),
                    Arc::clone(&time),
                );
                thread::spawn(move || {
                    let _ = relay(client, upstream, &calls, &faults, &schedule, &time);
                });
            }
        });
        Self {
            port,
            calls,
            fault,
            chaos,
            clock,
        }
    }

    /// From now on, credentials STS hands out expire after `lifetime` (their Expiration
    /// is rewritten), and an ECR request signed with an expired key is refused with
    /// ExpiredTokenException, as AWS does.
    pub fn credentials_last(&self, lifetime: Duration) {
        self.clock.lock().expect("lock").lifetime = Some(lifetime);
    }

    /// Every secret STS handed the tool: access key ids, secret keys, session tokens.
    pub fn sts_secrets(&self) -> Vec<String> {
        let answers = self.clock.lock().expect("lock").sts_answers.clone();
        let mut secrets = Vec::new();
        for answer in answers {
            for tag in ["AccessKeyId", "SecretAccessKey", "SessionToken"] {
                let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
                let mut rest = answer.as_str();
                while let Some(start) = rest.find(&open) {
                    rest = &rest[start + open.len()..];
                    if let Some(end) = rest.find(&close) {
                        secrets.push(rest[..end].to_owned());
                    }
                }
            }
        }
        secrets
    }

    /// How many ECR requests were refused for an expired key.
    pub fn refused_as_expired(&self) -> u32 {
        self.clock.lock().expect("lock").refused
    }

    /// From now on a call to `action` arriving while `at_once` of them are in flight is
    /// throttled (ThrottlingException), as a quota shared with other jobs would be.
    pub fn quota(&self, action: &str, at_once: usize) {
        self.clock
            .lock()
            .expect("lock")
            .quotas
            .insert(action.to_owned(), at_once);
    }

    /// The most calls to `action` that were in flight at once.
    pub fn peak(&self, action: &str) -> usize {
        let clock = self.clock.lock().expect("lock");
        clock.peak.get(action).copied().unwrap_or_default()
    }

    /// Answers to `action` are held back this long.
    pub fn delay(&self, action: &str, by: Duration) {
        self.clock
            .lock()
            .expect("lock")
            .delays
            .insert(action.to_owned(), by);
    }

    /// From now on, each call of one of `actions` (every call when empty) fails with
    /// probability `percent` %, with a kind drawn from `kinds`, reproducibly from `seed`.
    pub fn chaos(&self, seed: u64, percent: u64, actions: &[&str], kinds: &[Kind]) {
        *self.chaos.lock().expect("lock") = Some(Chaos {
            state: seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
            percent,
            actions: actions.iter().map(|a| (*a).to_owned()).collect(),
            kinds: kinds.to_vec(),
            remaining: None,
        });
    }

    /// The next `times` calls of `action` fail with `kind`.
    pub fn fail_next(&self, action: &str, kind: Kind, times: u32) {
        *self.chaos.lock().expect("lock") = Some(Chaos {
            state: 1,
            percent: 100,
            actions: vec![action.to_owned()],
            kinds: vec![kind],
            remaining: Some(times),
        });
    }

    /// Forgets the calls recorded so far.
    pub fn forget(&self) {
        self.calls.lock().expect("lock").clear();
    }

    /// No more scheduled faults.
    pub fn calm(&self) {
        *self.chaos.lock().expect("lock") = None;
    }

    /// The faults injected so far: (action, kind) for each.
    pub fn injected(&self) -> Vec<(String, Kind)> {
        self.calls()
            .into_iter()
            .filter_map(|c| Some((c.action, c.fault?)))
            .collect()
    }

    /// The next call to `action` reaches moto, but its answer never reaches the tool.
    pub fn lose_answer_once(&self, action: &str) {
        self.fault_once(action, Fault::LoseAnswer);
    }

    /// The next call to `action` gets AWS's JSON error `code` (as ECR answers).
    pub fn json_error_once(&self, action: &str, status: &'static str, code: &str, message: &str) {
        let body = serde_json::json!({"__type": code, "message": message}).to_string();
        self.fault_once(
            action,
            Fault::Answer {
                status,
                content_type: "application/x-amz-json-1.1",
                body,
            },
        );
    }

    /// The next call to `action` gets AWS's XML error `code` (as STS answers).
    pub fn xml_error_once(&self, action: &str, status: &'static str, code: &str, message: &str) {
        let body = format!(
            "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>test</RequestId></ErrorResponse>"
        );
        self.fault_once(
            action,
            Fault::Answer {
                status,
                content_type: "text/xml",
                body,
            },
        );
    }

    fn fault_once(&self, action: &str, fault: Fault) {
        self.fault_times(action, fault, 1);
    }

    /// The next `times` calls to `action` get AWS's JSON error `code`.
    pub fn json_error_times(
        &self,
        action: &str,
        status: &'static str,
        code: &str,
        message: &str,
        times: u32,
    ) {
        let body = serde_json::json!({"__type": code, "message": message}).to_string();
        let fault = Fault::Answer {
            status,
            content_type: "application/x-amz-json-1.1",
            body,
        };
        self.fault_times(action, fault, times);
    }

    fn fault_times(&self, action: &str, fault: Fault, times: u32) {
        *self.fault.lock().expect("lock") = Some((action.to_owned(), fault, times));
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("calls lock").clone()
    }

    /// The bytes of each completed layer upload, by the digest the tool completed it
    /// with: its parts that reached moto put together in order, a part sent again
    /// (after a lost answer) counted once.
    pub fn uploaded_layers(&self) -> HashMap<String, Vec<u8>> {
        let mut parts: HashMap<String, Vec<(u64, Vec<u8>)>> = HashMap::new();
        for call in self
            .calls_to("UploadLayerPart")
            .into_iter()
            .filter(|c| matches!(c.fault, None | Some(Kind::ResetAfter)))
        {
            let body = call.json();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(body["layerPartBlob"].as_str().unwrap_or_default())
                .expect("base64 part");
            parts
                .entry(body["uploadId"].as_str().unwrap_or_default().to_owned())
                .or_default()
                .push((body["partFirstByte"].as_u64().unwrap_or_default(), bytes));
        }
        self.calls_to("CompleteLayerUpload")
            .iter()
            .filter_map(|call| {
                let body = call.json();
                let mut pieces = parts.remove(body["uploadId"].as_str()?)?;
                pieces.sort_by_key(|(first, _)| *first);
                pieces.dedup_by_key(|(first, _)| *first);
                let digest = body["layerDigests"][0].as_str()?.to_owned();
                Some((digest, pieces.into_iter().flat_map(|(_, b)| b).collect()))
            })
            .collect()
    }

    pub fn calls_to(&self, action: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.action == action)
            .collect()
    }
}

fn relay(
    client: TcpStream,
    upstream: u16,
    calls: &Mutex<Vec<Call>>,
    faults: &Mutex<Option<(String, Fault, u32)>>,
    chaos: &Mutex<Option<Chaos>>,
    clock: &Mutex<Clock>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut client = client;
    loop {
        let Some((head, body)) = read_message(&mut reader)? else {
            return Ok(());
        };
        let mut action = header(&head, "x-amz-target")
            .map(|t| t.rsplit('.').next().unwrap_or_default().to_owned())
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&body).into_owned();
        if action.is_empty() {
            action = Call {
                action: String::new(),
                body: text.clone(),
                region: String::new(),
                at: Instant::now(),
                fault: None,
            }
            .form("Action")
            .unwrap_or_default();
        }
        let fault = {
            let mut pending = faults.lock().expect("lock");
            match pending.as_mut() {
                Some((target, fault, left)) if *target == action => {
                    let fault = fault.clone();
                    *left -= 1;
                    if *left == 0 {
                        *pending = None;
                    }
                    Some(fault)
                }
                _ => None,
            }
        };
        let scheduled = match &fault {
            Some(_) => None,
            None => chaos
                .lock()
                .expect("lock")
                .as_mut()
                .and_then(|c| c.draw(&action)),
        };
        let scheduled = scheduled.or_else(|| {
            let clock = clock.lock().expect("lock");
            let busy = clock.in_flight.get(&action).copied().unwrap_or_default();
            let over = fault.is_none()
                && clock
                    .quotas
                    .get(&action)
                    .is_some_and(|&at_once| busy >= at_once);
            over.then_some(Kind::Throttle)
        });
        let fault = fault.or_else(|| scheduled.map(|kind| fault_for(kind, &action)));
        // Counted until this call's answer is written, whatever way this ends.
        let _flight = fault.is_none().then(|| InFlight::start(clock, &action));
        calls.lock().expect("calls lock").push(Call {
            action: action.clone(),
            body: text,
            region: signed_region(&head),
            at: Instant::now(),
            fault: scheduled,
        });
        let (delay, expired) = {
            let mut clock = clock.lock().expect("lock");
            let key = signed_key(&head);
            let expired = !STS_ACTIONS.contains(&action.as_str())
                && clock
                    .issued
                    .get(&key)
                    .is_some_and(|deadline| Instant::now() > *deadline);
            if expired {
                clock.refused += 1;
            }
            (clock.delays.get(&action).copied(), expired)
        };
        if let Some(delay) = delay {
            thread::sleep(delay);
        }
        if expired {
            let body = serde_json::json!({
                "__type": "ExpiredTokenException",
                "message": "The security token included in the request is expired",
            })
            .to_string();
            write!(
                client,
                "HTTP/1.1 400 Bad Request\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )?;
            continue;
        }
        match fault {
            Some(Fault::Reset) => {
                let _ = client.shutdown(Shutdown::Both);
                return Ok(());
            }
            Some(Fault::Stall) => {
                // Until the client gives up and closes, or a minute passes.
                client.set_read_timeout(Some(Duration::from_secs(60)))?;
                let mut sink = [0u8; 4096];
                while matches!(reader.get_mut().read(&mut sink), Ok(n) if n > 0) {}
                let _ = client.shutdown(Shutdown::Both);
                return Ok(());
            }
            _ => {}
        }

        if let Some(Fault::Answer {
            status,
            content_type,
            body,
        }) = &fault
        {
            write!(
                client,
                "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )?;
            continue;
        }
        // One upstream connection per request, closed by moto after its answer.
        let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
        let mut head_lines: Vec<&str> = head
            .split("\r\n")
            .filter(|l| !l.is_empty() && !l.to_ascii_lowercase().starts_with("connection:"))
            .collect();
        head_lines.push("Connection: close");
        up.write_all(format!("{}\r\n\r\n", head_lines.join("\r\n")).as_bytes())?;
        up.write_all(&body)?;
        let mut response = Vec::new();
        up.read_to_end(&mut response)?;
        if STS_ACTIONS.contains(&action.as_str()) && !matches!(fault, Some(Fault::LoseAnswer)) {
            // Kept before any rewriting below changes the expiry, not the secrets.
            clock
                .lock()
                .expect("lock")
                .sts_answers
                .push(String::from_utf8_lossy(&response).into_owned());
        }
        let lifetime = clock.lock().expect("lock").lifetime;
        if let Some(lifetime) = lifetime.filter(|_| STS_ACTIONS.contains(&action.as_str())) {
            let (rewritten, key) = expire_in(&response, lifetime);
            if let Some(key) = key {
                clock
                    .lock()
                    .expect("lock")
                    .issued
                    .insert(key, Instant::now() + lifetime);
            }
            response = rewritten;
        }
        if matches!(fault, Some(Fault::LoseAnswer)) {
            let _ = client.shutdown(Shutdown::Both);
            return Ok(());
        }
        client.write_all(&response)?;
        let closes = String::from_utf8_lossy(&response[..response.len().min(4096)])
            .to_ascii_lowercase()
            .contains("connection: close");
        if closes {
            let _ = client.shutdown(Shutdown::Both);
            return Ok(());
        }
    }
}

/// One call to an action forwarded to moto and not yet answered.
struct InFlight<'a> {
    clock: &'a Mutex<Clock>,
    action: String,
}

impl<'a> InFlight<'a> {
    fn start(clock: &'a Mutex<Clock>, action: &str) -> Self {
        let mut time = clock.lock().expect("lock");
        let busy = time.in_flight.entry(action.to_owned()).or_default();
        *busy += 1;
        let busy = *busy;
        let peak = time.peak.entry(action.to_owned()).or_default();
        *peak = (*peak).max(busy);
        Self {
            clock,
            action: action.to_owned(),
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Ok(mut time) = self.clock.lock()
            && let Some(busy) = time.in_flight.get_mut(&self.action)
        {
            *busy = busy.saturating_sub(1);
        }
    }
}

/// Reads one HTTP/1.1 request: its head (request line and headers) and body.
pub fn read_message(
    reader: &mut BufReader<TcpStream>,
) -> std::io::Result<Option<(String, Vec<u8>)>> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let length: usize = header(&head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok(Some((head, body)))
}

/// A header's value in a request's head, by name in any case.
pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

// ---------------------------------------------------------------- OIDC endpoint

/// The GitHub Actions ID-token endpoint (ACTIONS_ID_TOKEN_REQUEST_URL). Its tokens
/// carry immutable subjects, as a new repository's do; `classic_subjects` makes it an
/// older repository's.
pub struct OidcEndpoint {
    pub port: u16,
    /// The audience of each request it answered, in order.
    audiences: Arc<Mutex<Vec<String>>>,
    /// Every token it issued.
    tokens: Arc<Mutex<Vec<String>>>,
    classic: Arc<std::sync::atomic::AtomicBool>,
}

impl OidcEndpoint {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the token endpoint");
        let port = listener.local_addr().expect("address").port();
        let audiences = Arc::new(Mutex::new(Vec::new()));
        let tokens = Arc::new(Mutex::new(Vec::new()));
        let classic = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (seen, issued, form) = (
            Arc::clone(&audiences),
            Arc::clone(&tokens),
            Arc::clone(&classic),
        );
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let sub = if form.load(std::sync::atomic::Ordering::Relaxed) {
                    SUB_CLASSIC
                } else {
                    SUB
                };
                let _ = answer_token_request(stream, sub, &seen, &issued);
            }
        });
        Self {
            port,
            audiences,
            tokens,
            classic,
        }
    }

    /// From now on, tokens with the classic subject.
    pub fn classic_subjects(&self) {
        self.classic
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// As the runner sets it: a URL that already carries a query.
    pub fn url(&self) -> String {
        format!(
            "http://127.0.0.1:{}/_apis/distributedtask/hubs/build/plans/p/jobs/j/idtoken?api-version=2.0",
            self.port
        )
    }

    pub fn audiences(&self) -> Vec<String> {
        self.audiences.lock().expect("lock").clone()
    }

    pub fn tokens(&self) -> Vec<String> {
        self.tokens.lock().expect("lock").clone()
    }
}

fn answer_token_request(
    stream: TcpStream,
    sub: &str,
    audiences: &Mutex<Vec<String>>,
    tokens: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut stream = stream;
    let Some((head, _)) = read_message(&mut reader)? else {
        return Ok(());
    };
    let target = head
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or_default();
    let audience = query
        .split('&')
        .find_map(|p| p.strip_prefix("audience="))
        .map(percent_decode);
    let authorized = header(&head, "authorization")
        .and_then(|v| v.split_once(' '))
        .is_some_and(|(scheme, token)| {
            scheme.eq_ignore_ascii_case("bearer") && token == REQUEST_TOKEN
        });
    let api_version_kept = query.split('&').any(|p| p == "api-version=2.0");
    let (status, body) = match (authorized, audience, api_version_kept) {
        (false, _, _) => (
            "401 Unauthorized",
            r#"{"message":"bad bearer token"}"#.to_owned(),
        ),
        (true, None, _) | (true, _, false) => (
            "400 Bad Request",
            r#"{"message":"audience or api-version missing"}"#.to_owned(),
        ),
        (true, Some(audience), true) => {
            let token = jwt(&audience, sub);
            audiences.lock().expect("lock").push(audience);
            tokens.lock().expect("lock").push(token.clone());
            (
                "200 OK",
                serde_json::json!({ "count": 1, "value": token }).to_string(),
            )
        }
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

/// A JWT with the claims GitHub puts in an Actions token (the OIDC reference's list, as
/// of 2026: the ids among them), signed with HS256 (moto does not verify signatures;
/// GitHub's are RS256).
fn jwt(audience: &str, sub: &str) -> String {
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let header = serde_json::json!({"alg": "HS256", "typ": "JWT", "kid": "test"});
    let nonce: u64 = rand_u64();
    let workflow_ref = "octo-org/octo-repo/.github/workflows/release.yml@refs/heads/main";
    let claims = serde_json::json!({
        "iss": "https://token.actions.githubusercontent.com",
        "aud": audience,
        "sub": sub,
        "repository": "octo-org/octo-repo",
        "repository_id": REPO_ID,
        "repository_owner": "octo-org",
        "repository_owner_id": OWNER_ID,
        "repository_visibility": "private",
        "ref": "refs/heads/main",
        "ref_type": "branch",
        "ref_protected": "true",
        "sha": "0123456789abcdef0123456789abcdef01234567",
        "workflow": "release",
        "workflow_ref": workflow_ref,
        "workflow_sha": "0123456789abcdef0123456789abcdef01234567",
        "job_workflow_ref": workflow_ref,
        "job_workflow_sha": "0123456789abcdef0123456789abcdef01234567",
        "event_name": "push",
        "head_ref": "",
        "base_ref": "",
        "actor": "octocat",
        "actor_id": "583231",
        "run_id": "42",
        "run_number": "7",
        "run_attempt": "1",
        "runner_environment": "github-hosted",
        "jti": format!("{nonce:016x}"),
        "iat": now,
        "nbf": now,
        "exp": now + 300,
    });
    let signing_input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signature = hmac_sha256(b"test-signing-key", signing_input.as_bytes());
    format!("{signing_input}.{}", b64(&signature))
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut block = [0u8; 64];
    block[..key.len()].copy_from_slice(key);
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new_with_prefix(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new_with_prefix(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    h.finish()
}

// ---------------------------------------------------------------- canned answers

/// A server that answers every request with the same status and body: a broken or
/// impostor endpoint.
pub fn serve_canned(status: &'static str, content_type: &'static str, body: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the canned server");
    let port = listener.local_addr().expect("address").port();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(match stream.try_clone() {
                Ok(s) => s,
                Err(_) => continue,
            });
            let mut stream = stream;
            while let Ok(Some(_)) = read_message(&mut reader) {
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
            }
        }
    });
    port
}

// ---------------------------------------------------------------- test images

/// Runs umoci, the independent OCI tool, and expects it to succeed.
pub fn umoci(args: &[&str]) {
    let status = Command::new("umoci")
        .args(args)
        .status()
        .expect("umoci runs");
    assert!(status.success(), "umoci {args:?}");
}

/// Reproducible pseudo-random bytes (xorshift64*), so layers differ without a
/// random-number crate and a failing case can be re-run.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

pub struct Blob {
    pub digest: String,
    pub size: usize,
}

/// An OCI image layout written by the test.
/// Every blob of `layout` is in the OCI layout at `dir` (a copy read back from where it
/// was pushed), hashing to its digest.
pub fn assert_blobs_in(dir: &Path, layout: &Layout) {
    for digest in layout.blob_digests() {
        let bytes = std::fs::read(
            dir.join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:")),
        )
        .unwrap();
        assert_eq!(sha256(&bytes), digest);
    }
}

pub struct Layout {
    pub dir: PathBuf,
    pub manifest: Vec<u8>,
    pub digest: String,
    pub config: Blob,
    pub layers: Vec<Blob>,
}

impl Layout {
    pub fn blob_digests(&self) -> Vec<String> {
        std::iter::once(&self.config)
            .chain(&self.layers)
            .map(|b| b.digest.clone())
            .collect()
    }

    pub fn blob_path(&self, digest: &str) -> PathBuf {
        self.dir
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    }

    pub fn reference(&self, tag: &str) -> String {
        format!("oci:{}:{tag}", self.dir.display())
    }
}

/// Writes an OCI layout at `dir` holding one image with these layers, named `tag`.
pub fn write_layout(dir: &Path, tag: &str, layers: &[Vec<u8>]) -> Layout {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("create layout");
    let put = |bytes: &[u8]| {
        let digest = sha256(bytes);
        std::fs::write(blobs.join(digest.trim_start_matches("sha256:")), bytes)
            .expect("write blob");
        Blob {
            digest,
            size: bytes.len(),
        }
    };
    let layer_blobs: Vec<Blob> = layers.iter().map(|l| put(l)).collect();
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/app"]},
        "rootfs": {
            "type": "layers",
            "diff_ids": layer_blobs.iter().map(|b| b.digest.clone()).collect::<Vec<_>>()
        }
    });
    let config = put(config.to_string().as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config.digest,
            "size": config.size,
        },
        "layers": layer_blobs.iter().map(|b| serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": b.digest,
            "size": b.size,
        })).collect::<Vec<_>>(),
    });
    // Pretty-printed on purpose: a tool that re-serialised it would change the digest.
    let manifest = serde_json::to_vec_pretty(&manifest).expect("manifest JSON");
    let manifest_blob = put(&manifest);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_blob.digest,
            "size": manifest_blob.size,
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    std::fs::write(dir.join("index.json"), index.to_string()).expect("index.json");
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)
        .expect("oci-layout");
    Layout {
        dir: dir.to_owned(),
        manifest,
        digest: manifest_blob.digest,
        config,
        layers: layer_blobs,
    }
}

/// An uncompressed tar with no entries: what an empty layer is.
/// A manifest in a multi-platform layout: its digest and exact bytes, and for an
/// image its platform.
pub struct Stored {
    pub digest: String,
    pub bytes: Vec<u8>,
    pub platform: Option<&'static str>,
}

/// A multi-platform OCI layout as `docker buildx build --platform … --output type=oci`
/// writes it: index.json names an image index that lists one image per platform (all
/// sharing a base layer) and, after them, one attestation manifest per image.
pub struct IndexLayout {
    pub dir: PathBuf,
    pub index: Stored,
    pub images: Vec<Stored>,
    pub attestations: Vec<Stored>,
    /// Every blob of every manifest, each once: digest and size.
    pub blobs: Vec<(String, usize)>,
}

impl IndexLayout {
    pub fn reference(&self, tag: &str) -> String {
        format!("oci:{}:{tag}", self.dir.display())
    }
}

pub fn write_index_layout(dir: &Path, tag: &str, platforms: &[&'static str]) -> IndexLayout {
    let blob_dir = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blob_dir).expect("create layout");
    let mut blobs: Vec<(String, usize)> = Vec::new();
    let mut put = |bytes: &[u8]| {
        let digest = sha256(bytes);
        std::fs::write(blob_dir.join(digest.trim_start_matches("sha256:")), bytes)
            .expect("write blob");
        if !blobs.iter().any(|(d, _)| *d == digest) {
            blobs.push((digest.clone(), bytes.len()));
        }
        serde_json::json!({"digest": digest, "size": bytes.len()})
    };
    let with_type = |mut descriptor: serde_json::Value, media_type: &str| {
        descriptor["mediaType"] = media_type.into();
        descriptor
    };
    let base = put(&random_bytes(90, 200 * 1024));
    let mut images = Vec::new();
    let mut attestations = Vec::new();
    for (n, platform) in platforms.iter().enumerate() {
        let mut parts = platform.split('/');
        let (os, arch) = (parts.next().unwrap(), parts.next().unwrap());
        let variant = parts.next();
        let own = put(&random_bytes(91 + n as u64, 50 * 1024 + n));
        let config = put(
            serde_json::json!({"architecture": arch, "os": os, "variant": variant,
                "rootfs": {"type": "layers", "diff_ids": [base["digest"], own["digest"]]}})
            .to_string()
            .as_bytes(),
        );
        let manifest = serde_json::to_vec_pretty(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": with_type(config, "application/vnd.oci.image.config.v1+json"),
            "layers": [
                with_type(base.clone(), "application/vnd.oci.image.layer.v1.tar"),
                with_type(own, "application/vnd.oci.image.layer.v1.tar"),
            ],
        }))
        .unwrap();
        put(&manifest);
        images.push(Stored {
            digest: sha256(&manifest),
            bytes: manifest,
            platform: Some(platform),
        });
    }
    for image in &images {
        let statement = put(
            serde_json::json!({"_type": "https://in-toto.io/Statement/v0.1",
                "subject": [{"digest": {"sha256": image.digest.trim_start_matches("sha256:")}}]})
            .to_string()
            .as_bytes(),
        );
        let config = put(br#"{"architecture":"unknown","os":"unknown","config":{},"rootfs":{"type":"layers","diff_ids":[]}}"#);
        let mut layer = with_type(statement, "application/vnd.in-toto+json");
        layer["annotations"] =
            serde_json::json!({"in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2"});
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": with_type(config, "application/vnd.oci.image.config.v1+json"),
            "layers": [layer],
        }))
        .unwrap();
        put(&manifest);
        attestations.push(Stored {
            digest: sha256(&manifest),
            bytes: manifest,
            platform: None,
        });
    }
    let mut entries: Vec<serde_json::Value> = images
        .iter()
        .map(|image| {
            let mut parts = image.platform.unwrap().split('/');
            let mut platform = serde_json::json!({"architecture": "", "os": parts.next()});
            platform["architecture"] = parts.next().into();
            if let Some(variant) = parts.next() {
                platform["variant"] = variant.into();
            }
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": image.digest, "size": image.bytes.len(), "platform": platform,
            })
        })
        .collect();
    entries.extend(
        images
            .iter()
            .zip(&attestations)
            .map(|(image, attestation)| {
                serde_json::json!({
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": attestation.digest, "size": attestation.bytes.len(),
                    "annotations": {
                        "vnd.docker.reference.digest": image.digest,
                        "vnd.docker.reference.type": "attestation-manifest",
                    },
                    "platform": {"architecture": "unknown", "os": "unknown"},
                })
            }),
    );
    let index = serde_json::to_vec_pretty(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": entries,
    }))
    .unwrap();
    put(&index);
    let top = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": sha256(&index),
            "size": index.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    std::fs::write(dir.join("index.json"), top.to_string()).expect("index.json");
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)
        .expect("oci-layout");
    let manifests: Vec<&String> = images
        .iter()
        .chain(&attestations)
        .map(|m| &m.digest)
        .collect();
    blobs.retain(|(digest, _)| !manifests.contains(&digest) && *digest != sha256(&index));
    IndexLayout {
        dir: dir.to_owned(),
        index: Stored {
            digest: sha256(&index),
            bytes: index,
            platform: None,
        },
        images,
        attestations,
        blobs,
    }
}

pub fn empty_layer() -> Vec<u8> {
    vec![0; 1024]
}

// ---------------------------------------------------------------- running the tool

/// The `NAME=VALUE` lines of a GITHUB_OUTPUT file.
pub fn parse_outputs(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// What one run of the binary left behind.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub outputs: HashMap<String, String>,
    pub output_file: String,
    pub summary: String,
    pub home: tempfile::TempDir,
    /// When the process (or container) was started.
    pub started: Instant,
}

impl Run {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// The `::error::` line's message, or stderr's `error:` line.
    pub fn error(&self) -> String {
        self.stdout
            .lines()
            .chain(self.stderr.lines())
            .find_map(|l| {
                l.split_once("::error")
                    .map(|(_, rest)| rest.split_once("::").map(|x| x.1).unwrap_or(rest))
                    .or_else(|| l.strip_prefix("error: "))
            })
            .unwrap_or_default()
            .to_owned()
    }

    /// Every value the tool asked the runner to mask.
    pub fn masks(&self) -> Vec<String> {
        self.stdout
            .lines()
            .filter_map(|l| l.strip_prefix("::add-mask::"))
            .map(str::to_owned)
            .collect()
    }

    /// Whether `secret` appears anywhere the process wrote (stdout, stderr, outputs,
    /// summary) other than the `::add-mask::` command that hides it.
    pub fn shows(&self, secret: &str) -> bool {
        let stdout: Vec<&str> = self
            .stdout
            .lines()
            .filter(|l| !l.starts_with("::add-mask::"))
            .collect();
        stdout.join("\n").contains(secret)
            || self.stderr.contains(secret)
            || self.summary.contains(secret)
            || self.outputs.values().any(|v| v.contains(secret))
    }

    pub fn log(&self) -> String {
        format!("--- stdout\n{}--- stderr\n{}", self.stdout, self.stderr)
    }
}

/// The binary, run the way the Actions runner runs a container action: inputs as
/// `INPUT_*` variables, the ID-token variables, and the file-command files.
pub struct Action {
    env: Vec<(String, String)>,
    args: Vec<String>,
    /// Fail the test if the process runs longer (a hang).
    kill_after: Option<Duration>,
    /// Run on a pseudo-terminal (through util-linux's `script`), as on a laptop; what
    /// the terminal showed comes back as stdout.
    terminal: bool,
}

impl Action {
    pub fn new(recorder: &Recorder, oidc: &OidcEndpoint) -> Self {
        let mut action = Self::bare(recorder);
        action.env.push(("GITHUB_ACTIONS".into(), "true".into()));
        action
            .env
            .push(("ACTIONS_ID_TOKEN_REQUEST_URL".into(), oidc.url()));
        action.env.push((
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN".into(),
            REQUEST_TOKEN.into(),
        ));
        action
            .input("aws-region", REGION)
            .input("role-to-assume", PUSH_ROLE)
    }

    /// No Actions variables at all: the command line on a laptop.
    pub fn bare(recorder: &Recorder) -> Self {
        Self {
            env: vec![
                ("AWS_ENDPOINT_URL".into(), recorder.endpoint()),
                ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
                ("GITHUB_REPOSITORY".into(), "octo-org/octo-repo".into()),
                ("GITHUB_REPOSITORY_OWNER_ID".into(), OWNER_ID.into()),
                ("GITHUB_REPOSITORY_ID".into(), REPO_ID.into()),
                (
                    "GITHUB_SHA".into(),
                    "0123456789abcdef0123456789abcdef01234567".into(),
                ),
                ("GITHUB_ACTOR".into(), "octocat".into()),
                ("GITHUB_WORKFLOW".into(), "release (prod)".into()),
                ("GITHUB_REF_NAME".into(), "main".into()),
                ("GITHUB_RUN_ID".into(), "42".into()),
            ],
            args: Vec::new(),
            kill_after: None,
            terminal: false,
        }
    }

    /// On a pseudo-terminal: stdout and stderr are a terminal, and `Run::stdout` is
    /// what it showed, control codes included.
    pub fn in_terminal(mut self) -> Self {
        self.terminal = true;
        self
    }

    /// A run longer than `limit` is a hang: the process is killed and the test fails.
    pub fn kill_after(mut self, limit: Duration) -> Self {
        self.kill_after = Some(limit);
        self
    }

    pub fn input(mut self, name: &str, value: &str) -> Self {
        self.env
            .push((format!("INPUT_{}", name.to_uppercase()), value.to_owned()));
        self
    }

    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn without(mut self, name: &str) -> Self {
        self.env.retain(|(k, _)| k != name);
        self
    }

    pub fn args(mut self, args: &[&str]) -> Self {
        self.args = args.iter().map(|a| (*a).to_owned()).collect();
        self
    }

    pub fn run(self) -> Run {
        let home = tempfile::tempdir().expect("temp home");
        let output_file = home.path().join("github_output");
        let summary_file = home.path().join("step_summary");
        let mut command = if self.terminal {
            let quoted: Vec<String> = std::iter::once(env!("CARGO_BIN_EXE_ecr-push"))
                .chain(self.args.iter().map(String::as_str))
                .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
                .collect();
            let mut script = Command::new("script");
            script.args([
                "--quiet",
                "--return",
                "--flush",
                "--command",
                &quoted.join(" "),
                "/dev/null",
            ]);
            script
        } else {
            let mut command = Command::new(env!("CARGO_BIN_EXE_ecr-push"));
            command.args(&self.args);
            command
        };
        command.env_clear();
        if let Some(path) = std::env::var_os("PATH") {
            command.env("PATH", path);
        }
        command
            .env("HOME", home.path())
            .env("GITHUB_OUTPUT", &output_file)
            .env("GITHUB_STEP_SUMMARY", &summary_file)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        let started = Instant::now();
        let output = match self.kill_after {
            None => command.output().expect("run ecr-push"),
            Some(limit) => {
                let mut child = command
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("run ecr-push");
                // Drain both pipes while waiting, so a chatty run cannot block on them.
                let mut stdout = child.stdout.take().expect("stdout");
                let mut stderr = child.stderr.take().expect("stderr");
                let out = thread::spawn(move || {
                    let mut b = Vec::new();
                    let _ = stdout.read_to_end(&mut b);
                    b
                });
                let err = thread::spawn(move || {
                    let mut b = Vec::new();
                    let _ = stderr.read_to_end(&mut b);
                    b
                });
                let status = loop {
                    if let Some(status) = child.try_wait().expect("wait") {
                        break status;
                    }
                    if started.elapsed() > limit {
                        let _ = child.kill();
                        let _ = child.wait();
                        panic!(
                            "ecr-push hung: still running after {} s\n{}",
                            limit.as_secs(),
                            String::from_utf8_lossy(&out.join().unwrap_or_default())
                        );
                    }
                    thread::sleep(Duration::from_millis(20));
                };
                std::process::Output {
                    status,
                    stdout: out.join().unwrap_or_default(),
                    stderr: err.join().unwrap_or_default(),
                }
            }
        };
        let output_text = std::fs::read_to_string(&output_file).unwrap_or_default();
        let outputs = parse_outputs(&output_text);
        Run {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            outputs,
            output_file: output_text,
            summary: std::fs::read_to_string(&summary_file).unwrap_or_default(),
            home,
            started,
        }
    }
}

/// moto, the recorder in front of it, and the token endpoint: one per test.
pub struct Stack {
    pub moto: Moto,
    pub recorder: Recorder,
    pub oidc: OidcEndpoint,
}

impl Stack {
    pub fn start() -> Self {
        let moto = Moto::start();
        let recorder = Recorder::start(moto.port);
        Self {
            recorder,
            moto,
            oidc: OidcEndpoint::start(),
        }
    }

    pub fn action(&self) -> Action {
        Action::new(&self.recorder, &self.oidc)
    }
}
