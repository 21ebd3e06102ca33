//! The recording proxy between the tool and moto. moto does not enforce some of ECR's
//! rules (part sizes, the digest sent to CompleteLayerUpload), so the tests assert
//! those on what the tool actually sent; and a network's and AWS's faults (throttles,
//! 5xx, resets, stalls, expired credentials, quotas, slow answers) are injected here,
//! once or on a seeded schedule.

use std::collections::HashMap;
use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;

use super::{Server, header, percent_decode, read_message};

mod fault;

pub use fault::Kind;
use fault::{Chaos, Fault, fault_for};

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
    /// The request line's method and path (`GET`, `/v2/app/blobs/sha256:…`): what a
    /// registry in front of which the recorder stands was asked.
    pub method: String,
    pub path: String,
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

    /// The account an ECR call is for: its body's `registryId`.
    pub fn registry_id(&self) -> Option<String> {
        self.json()["registryId"].as_str().map(str::to_owned)
    }

    /// A form field of a query-protocol (STS) request.
    pub fn form(&self, key: &str) -> Option<String> {
        self.body.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k == key).then(|| percent_decode(v))
        })
    }
}

/// Forwards every request to moto unchanged and keeps a copy of it; on request, it
/// loses moto's answer to one call, as a network that drops a connection would.
pub struct Recorder {
    pub port: u16,
    calls: Arc<Mutex<Vec<Call>>>,
    fault: Arc<Mutex<Option<(String, Fault, u32)>>>,
    chaos: Arc<Mutex<Option<Chaos>>>,
    clock: Arc<Mutex<Clock>>,
    refusals: Arc<Mutex<Vec<Refusal>>>,
    _server: Server,
}

/// Every call to `action` for the registry of `registry_id` gets `fault`, until `calm`:
/// an account whose policy refuses the step, as long as nobody fixes it. With `then`,
/// the calls after the first get those answers in turn, the last one from then on.
struct Refusal {
    action: String,
    /// Empty: any account.
    registry_id: String,
    /// The `imageDigest` refused, if only one is.
    digest: Option<String>,
    fault: Fault,
    then: Vec<Fault>,
}

/// The answer set for a request to `path` (a registry's, with no AWS body), if one is:
/// kept as a refusal whose `action` is the path and whose account is `path:`.
fn answer_at(refusals: &Mutex<Vec<Refusal>>, path: &str) -> Option<Fault> {
    let refusals = refusals.lock().expect("lock");
    refusals
        .iter()
        .find(|r| r.registry_id == "path:" && r.action == path)
        .map(|r| r.fault.clone())
}

/// The refusal that answers this call, if one does.
fn refusal_for(refusals: &Mutex<Vec<Refusal>>, action: &str, body: &str) -> Option<Fault> {
    let body: serde_json::Value = serde_json::from_str(body).ok()?;
    let registry_id = body["registryId"].as_str().unwrap_or_default();
    // PutImage names it at the top; the scan calls in `imageId`.
    let digest = body["imageDigest"]
        .as_str()
        .or_else(|| body["imageId"]["imageDigest"].as_str());
    let mut refusals = refusals.lock().expect("lock");
    let refusal = refusals.iter_mut().find(|r| {
        r.action == action
            && (r.registry_id.is_empty() || r.registry_id == registry_id)
            && r.digest.as_deref().is_none_or(|d| Some(d) == digest)
    })?;
    let answer = refusal.fault.clone();
    if !refusal.then.is_empty() {
        refusal.fault = refusal.then.remove(0);
    }
    Some(answer)
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

const STS_ACTIONS: [&str; 3] = [
    "AssumeRoleWithWebIdentity",
    "AssumeRole",
    "GetCallerIdentity",
];

impl Recorder {
    pub fn start(upstream: u16) -> Self {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let fault = Arc::new(Mutex::new(None));
        let chaos = Arc::new(Mutex::new(None));
        let clock = Arc::new(Mutex::new(Clock::default()));
        let refusals = Arc::new(Mutex::new(Vec::new()));
        let (shared, faults, schedule, time, refused) = (
            Arc::clone(&calls),
            Arc::clone(&fault),
            Arc::clone(&chaos),
            Arc::clone(&clock),
            Arc::clone(&refusals),
        );
        let server = Server::start("the recording proxy", move |client| {
            let (calls, faults, schedule, time, refused) = (
                Arc::clone(&shared),
                Arc::clone(&faults),
                Arc::clone(&schedule),
                Arc::clone(&time),
                Arc::clone(&refused),
            );
            thread::spawn(move || {
                let _ = relay(
                    client, upstream, &calls, &faults, &schedule, &time, &refused,
                );
            });
        });
        Self {
            port: server.port,
            calls,
            fault,
            chaos,
            clock,
            refusals,
            _server: server,
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
        *self.chaos.lock().expect("lock") = Some(Chaos::seeded(seed, percent, actions, kinds));
    }

    /// The next `times` calls of `action` fail with `kind`.
    pub fn fail_next(&self, action: &str, kind: Kind, times: u32) {
        *self.chaos.lock().expect("lock") = Some(Chaos::next_calls(action, kind, times));
    }

    /// Forgets the calls recorded so far.
    pub fn forget(&self) {
        self.calls.lock().expect("lock").clear();
    }

    /// No more scheduled faults, and no more refusals.
    pub fn calm(&self) {
        *self.chaos.lock().expect("lock") = None;
        self.refusals.lock().expect("lock").clear();
    }

    /// From now on every call to `action` whose body's `registryId` is `account` gets
    /// AWS's JSON error `code` (as ECR answers), until `calm`.
    pub fn refuse_for(
        &self,
        action: &str,
        account: &str,
        status: &'static str,
        code: &str,
        message: &str,
    ) {
        let body = serde_json::json!({"__type": code, "message": message}).to_string();
        self.refusals.lock().expect("lock").push(Refusal {
            action: action.to_owned(),
            registry_id: account.to_owned(),
            digest: None,
            fault: Fault::Answer {
                status,
                content_type: "application/x-amz-json-1.1",
                body,
            },
            then: Vec::new(),
        });
    }

    /// From now on every call to `action` for the image `digest` (its `imageDigest`, or
    /// its `imageId`'s), in any account, gets AWS's JSON error `code`, until `calm`.
    pub fn refuse_digest(
        &self,
        action: &str,
        digest: &str,
        status: &'static str,
        code: &str,
        message: &str,
    ) {
        let body = serde_json::json!({"__type": code, "message": message}).to_string();
        self.refusals.lock().expect("lock").push(Refusal {
            action: action.to_owned(),
            registry_id: String::new(),
            digest: Some(digest.to_owned()),
            fault: Fault::Answer {
                status,
                content_type: "application/x-amz-json-1.1",
                body,
            },
            then: Vec::new(),
        });
    }

    /// From now on a GET of `path` (e.g. `/v2/app/referrers/sha256:…`) is answered 200
    /// with `body` as `content_type`, whatever the registry behind holds, until `calm`:
    /// a registry with an API the one here lacks.
    pub fn answer_path(&self, path: &str, content_type: &'static str, body: String) {
        self.refusals.lock().expect("lock").push(Refusal {
            action: path.to_owned(),
            registry_id: "path:".to_owned(),
            digest: None,
            fault: Fault::Answer {
                status: "200 OK",
                content_type,
                body,
            },
            then: Vec::new(),
        });
    }

    /// As [`Self::answer_path`], the answer naming `next` as its next page (`Link`).
    pub fn answer_page(&self, path: &str, content_type: &'static str, body: String, next: &str) {
        self.refusals.lock().expect("lock").push(Refusal {
            action: path.to_owned(),
            registry_id: "path:".to_owned(),
            digest: None,
            fault: Fault::Page {
                content_type,
                body,
                next: next.to_owned(),
            },
            then: Vec::new(),
        });
    }

    /// From now on any request for `path` is answered `status` with no body, whatever
    /// the registry behind holds, until `calm`: a registry that refuses one tag.
    pub fn refuse_path(&self, path: &str, status: &'static str) {
        self.refusals.lock().expect("lock").push(Refusal {
            action: path.to_owned(),
            registry_id: "path:".to_owned(),
            digest: None,
            fault: Fault::Answer {
                status,
                content_type: "application/json",
                body: String::new(),
            },
            then: Vec::new(),
        });
    }

    /// From now on the calls to `action` whose body's `registryId` is `account` are
    /// answered 200 with `bodies` in turn instead of moto's answer, the last one from
    /// then on, until `calm`: states moto never reaches (a scan that stays IN_PROGRESS,
    /// an enhanced scan's findings in pages).
    pub fn answer_for(&self, action: &str, account: &str, bodies: &[serde_json::Value]) {
        let mut answers = bodies.iter().map(|body| Fault::Answer {
            status: "200 OK",
            content_type: "application/x-amz-json-1.1",
            body: body.to_string(),
        });
        let fault = answers.next().expect("at least one answer");
        self.refusals.lock().expect("lock").push(Refusal {
            action: action.to_owned(),
            registry_id: account.to_owned(),
            digest: None,
            fault,
            then: answers.collect(),
        });
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
        self.layers_completed(|_| true)
    }

    /// The same, of the uploads completed in one account's registry.
    pub fn uploaded_layers_to(&self, account: &str) -> HashMap<String, Vec<u8>> {
        self.layers_completed(|complete| complete.registry_id().as_deref() == Some(account))
    }

    fn layers_completed(&self, which: impl Fn(&Call) -> bool) -> HashMap<String, Vec<u8>> {
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
            .filter(|call| which(call))
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

    /// The PutImage calls in order: (imageDigest, imageTag).
    pub fn put_images(&self) -> Vec<(String, Option<String>)> {
        self.calls_to("PutImage")
            .iter()
            .map(|call| {
                let body = call.json();
                (
                    body["imageDigest"].as_str().unwrap_or_default().to_owned(),
                    body["imageTag"].as_str().map(str::to_owned),
                )
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
    refusals: &Mutex<Vec<Refusal>>,
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
                method: String::new(),
                path: String::new(),
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
        let path = head
            .lines()
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .unwrap_or_default()
            .to_owned();
        let fault = fault
            .or_else(|| refusal_for(refusals, &action, &text))
            .or_else(|| answer_at(refusals, &path));
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
        let mut request_line = head.lines().next().unwrap_or_default().split(' ');
        calls.lock().expect("calls lock").push(Call {
            action: action.clone(),
            method: request_line.next().unwrap_or_default().to_owned(),
            path: request_line.next().unwrap_or_default().to_owned(),
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
        if let Some(Fault::Page {
            content_type,
            body,
            next,
        }) = &fault
        {
            write!(
                client,
                "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nLink: <{next}>; rel=\"next\"\r\nContent-Length: {}\r\n\r\n{body}",
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
