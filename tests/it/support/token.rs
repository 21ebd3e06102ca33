//! A registry behind the distribution token flow, as GHCR, Docker Hub, Harbor, GitLab
//! and Quay are: Debian's `docker-registry` with `auth: token`, a token service on
//! another port (its realm) that checks a Basic login and signs RS256 JWTs carrying an
//! `x5c` certificate the registry trusts, and a tap in front of the registry that
//! records what the client sent it (and can slow the upload down, so that a token runs
//! out during a push).

use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;

use super::{Server, free_port, header, percent_decode, read_message, self_signed, serve_registry};

pub const SERVICE: &str = "test-registry";
const ISSUER: &str = "test-token-issuer";
/// distribution 2.8 accepts a token up to this long after its `exp` (and before its
/// `nbf`), for clock skew: a token meant to last N seconds says `exp` = now + N - this.
const REGISTRY_LEEWAY_SECONDS: u64 = 60;

/// One request the token service answered.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    /// The Basic login it came with: (user, password).
    pub login: Option<(String, String)>,
    pub service: Option<String>,
    pub scopes: Vec<String>,
    /// Whether it was given a token.
    pub granted: bool,
}

/// How the token service answers.
#[derive(Clone, Copy)]
pub struct Tokens {
    /// How long the registry takes each token for.
    pub lifetime: Duration,
    /// Answer `access_token` alone, as OAuth2 services do, rather than `token`.
    pub access_token_only: bool,
}

impl Default for Tokens {
    fn default() -> Self {
        Self {
            lifetime: Duration::from_secs(300),
            access_token_only: false,
        }
    }
}

/// The signing key and the self-signed certificate the registry trusts (its
/// `rootcertbundle`), made with openssl.
struct Issuer {
    dir: PathBuf,
    /// base64 of the certificate's DER, for the `x5c` header.
    x5c: String,
}

impl Issuer {
    fn new(dir: &Path) -> Self {
        self_signed(dir, "test token issuer", "issuer");
        let pem = std::fs::read_to_string(dir.join("issuer.pem")).expect("issuer.pem");
        // A PEM body is the DER in base64, which is what x5c holds.
        let x5c = pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<String>();
        Self {
            dir: dir.to_owned(),
            x5c,
        }
    }

    fn certificate(&self) -> PathBuf {
        self.dir.join("issuer.pem")
    }

    /// A JWT as distribution's token spec describes it, for `subject`, granting
    /// `access` (`[{type, name, actions}]`), taken by the registry for `lifetime`.
    fn sign(&self, subject: &str, access: &serde_json::Value, lifetime: Duration) -> String {
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]});
        let claims = serde_json::json!({
            "iss": ISSUER,
            "sub": subject,
            "aud": SERVICE,
            "exp": now + lifetime.as_secs() - REGISTRY_LEEWAY_SECONDS,
            "nbf": now,
            "iat": now,
            "jti": format!("{:032x}", u128::from(now) << 64 | u128::from(next_serial())),
            "access": access,
        });
        let signing_input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let mut openssl = Command::new("openssl")
            .args(["dgst", "-sha256", "-sign"])
            .arg(self.dir.join("issuer.key"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("openssl runs");
        openssl
            .stdin
            .take()
            .expect("stdin")
            .write_all(signing_input.as_bytes())
            .expect("signing input");
        let output = openssl.wait_with_output().expect("openssl dgst");
        assert!(
            output.status.success(),
            "openssl dgst: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        format!("{signing_input}.{}", b64(&output.stdout))
    }
}

fn next_serial() -> u64 {
    static SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// The token service (the registry's realm) on a free loopback port.
pub struct TokenService {
    requests: Arc<Mutex<Vec<TokenRequest>>>,
    tokens: Arc<Mutex<Vec<String>>>,
    server: Server,
}

impl TokenService {
    fn start(issuer: Arc<Issuer>, login: (String, String), answers: Tokens) -> Self {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let tokens = Arc::new(Mutex::new(Vec::new()));
        let (seen, issued) = (Arc::clone(&requests), Arc::clone(&tokens));
        let server = Server::start("the token service", move |stream| {
            let _ = answer(stream, &issuer, &login, answers, &seen, &issued);
        });
        Self {
            requests,
            tokens,
            server,
        }
    }

    pub fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.server.port)
    }

    pub fn requests(&self) -> Vec<TokenRequest> {
        self.requests.lock().expect("lock").clone()
    }

    /// Every token it handed out.
    pub fn tokens(&self) -> Vec<String> {
        self.tokens.lock().expect("lock").clone()
    }
}

fn answer(
    stream: TcpStream,
    issuer: &Issuer,
    login: &(String, String),
    answers: Tokens,
    requests: &Mutex<Vec<TokenRequest>>,
    tokens: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut stream = stream;
    let Some((head, _)) = read_message(&mut reader)? else {
        return Ok(());
    };
    let target = head.split_whitespace().nth(1).unwrap_or_default();
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or_default();
    let params: Vec<(String, String)> = query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect();
    let sent_login = header(&head, "authorization").and_then(|v| {
        let (scheme, encoded) = v.split_once(' ')?;
        scheme.eq_ignore_ascii_case("basic").then_some(())?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()?;
        let (user, password) = String::from_utf8(decoded)
            .ok()?
            .split_once(':')
            .map(|(u, p)| (u.to_owned(), p.to_owned()))?;
        Some((user, password))
    });
    let scopes: Vec<String> = params
        .iter()
        .filter(|(k, _)| k == "scope")
        .map(|(_, v)| v.clone())
        .collect();
    let mut record = TokenRequest {
        login: sent_login.clone(),
        service: params
            .iter()
            .find(|(k, _)| k == "service")
            .map(|(_, v)| v.clone()),
        scopes: scopes.clone(),
        granted: false,
    };
    let (status, body) = match &sent_login {
        Some(sent) if sent != login => (
            "401 Unauthorized",
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication failed"}]}"#.to_owned(),
        ),
        _ => {
            // The login may push and pull what it asks for; anonymous gets nothing, as
            // for a private repository.
            let access: Vec<serde_json::Value> = scopes
                .iter()
                .filter(|_| sent_login.is_some())
                .filter_map(|scope| {
                    let mut parts = scope.splitn(3, ':');
                    let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
                    let actions: Vec<&str> = actions
                        .split(',')
                        .filter(|a| ["pull", "push"].contains(a))
                        .collect();
                    Some(serde_json::json!({"type": kind, "name": name, "actions": actions}))
                })
                .collect();
            let subject = sent_login.as_ref().map_or("", |(user, _)| user.as_str());
            let token = issuer.sign(subject, &serde_json::json!(access), answers.lifetime);
            tokens.lock().expect("lock").push(token.clone());
            record.granted = true;
            let mut body = serde_json::json!({
                "expires_in": answers.lifetime.as_secs(),
                "issued_at": "2026-01-01T00:00:00Z",
                "access_token": token,
            });
            if !answers.access_token_only {
                body["token"] = token.into();
            }
            ("200 OK", body.to_string())
        }
    };
    requests.lock().expect("lock").push(record);
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

/// A TCP forwarder in front of the registry that keeps every byte the client sent it,
/// and can hold the client's bytes to a rate.
struct Tap {
    sent: Arc<Mutex<Vec<u8>>>,
    server: Server,
}

impl Tap {
    fn start(target: u16, bytes_per_second: Option<u64>) -> Self {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&sent);
        let server = Server::start("the tap", move |client| {
            let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                return;
            };
            let (Ok(client_back), Ok(server_back)) = (client.try_clone(), server.try_clone())
            else {
                return;
            };
            let kept = Arc::clone(&kept);
            thread::spawn(move || copy(client, server, Some(&kept), bytes_per_second));
            thread::spawn(move || copy(server_back, client_back, None, None));
        });
        Self { sent, server }
    }

    /// The value of every Authorization header the client sent.
    fn authorizations(&self) -> Vec<String> {
        let sent = self.sent.lock().expect("lock");
        let lower = sent.to_ascii_lowercase();
        let needle = b"\r\nauthorization:";
        let mut found = Vec::new();
        let mut from = 0;
        while let Some(at) = lower[from..]
            .windows(needle.len())
            .position(|w| w == needle)
        {
            let start = from + at + needle.len();
            let end = sent[start..]
                .windows(2)
                .position(|w| w == b"\r\n")
                .map_or(sent.len(), |e| start + e);
            found.push(String::from_utf8_lossy(&sent[start..end]).trim().to_owned());
            from = end;
        }
        found
    }
}

fn copy(
    mut from: TcpStream,
    mut to: TcpStream,
    keep: Option<&Mutex<Vec<u8>>>,
    bytes_per_second: Option<u64>,
) {
    let mut buffer = vec![0; 64 * 1024];
    let started = Instant::now();
    let mut total: u64 = 0;
    loop {
        let n = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(keep) = keep {
            keep.lock().expect("lock").extend_from_slice(&buffer[..n]);
        }
        total += n as u64;
        if let Some(rate) = bytes_per_second {
            let due = Duration::from_secs_f64(total as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                thread::sleep(wait);
            }
        }
        if to.write_all(&buffer[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// `docker-registry` with `auth: token`, its token service, and the tap the client
/// reaches it through.
pub struct TokenRegistry {
    child: Child,
    registry_port: u16,
    pub service: TokenService,
    issuer: Arc<Issuer>,
    tap: Tap,
    login: (String, String),
    _dir: tempfile::TempDir,
}

impl TokenRegistry {
    /// A registry whose token service grants `user` and `password` push and pull.
    pub fn start(user: &str, password: &str) -> Self {
        Self::start_with(user, password, Tokens::default(), None)
    }

    /// The same, with tokens answered as `tokens` says, and the client's bytes held to
    /// `bytes_per_second` on their way to the registry.
    pub fn start_with(
        user: &str,
        password: &str,
        tokens: Tokens,
        bytes_per_second: Option<u64>,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let issuer = Arc::new(Issuer::new(dir.path()));
        let login = (user.to_owned(), password.to_owned());
        let service = TokenService::start(Arc::clone(&issuer), login.clone(), tokens);
        let registry_port = free_port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{registry_port}\nauth:\n  token:\n    realm: {}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
                dir.path().join("storage").display(),
                service.realm(),
                issuer.certificate().display()
            ),
        )
        .unwrap();
        let child = serve_registry(&config, registry_port);
        let tap = Tap::start(registry_port, bytes_per_second);
        Self {
            child,
            registry_port,
            service,
            issuer,
            tap,
            login,
            _dir: dir,
        }
    }

    /// Where the client pushes: the tap in front of the registry.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.tap.server.port)
    }

    /// The Authorization header of every request the registry got from the client.
    pub fn authorizations(&self) -> Vec<String> {
        self.tap.authorizations()
    }

    /// skopeo's `--creds`/`--src-creds` value for the login.
    fn creds(&self) -> String {
        format!("{}:{}", self.login.0, self.login.1)
    }

    /// The manifest `repository` (`NAME:TAG` or `NAME@DIGEST`) holds: its exact bytes,
    /// read by skopeo through the token flow.
    pub fn manifest(&self, repository: &str) -> Vec<u8> {
        let output = Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false", "--creds"])
            .arg(self.creds())
            .arg(format!(
                "docker://127.0.0.1:{}/{repository}",
                self.registry_port
            ))
            .output()
            .expect("skopeo runs");
        assert!(
            output.status.success(),
            "skopeo inspect: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    }

    /// Whether the registry answers 200 to a HEAD of `/v2/NAME/PATH`, asked with a token
    /// for pulling `name` made here (the token service does not see it).
    pub fn has(&self, name: &str, path: &str) -> bool {
        let token = self.issuer.sign(
            "test",
            &serde_json::json!([{"type": "repository", "name": name, "actions": ["pull"]}]),
            Duration::from_secs(300),
        );
        let mut stream = TcpStream::connect(("127.0.0.1", self.registry_port)).expect("registry");
        write!(
            stream,
            "HEAD /v2/{name}/{path} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nAuthorization: Bearer {token}\r\nAccept: application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json\r\n\r\n",
            self.registry_port
        )
        .unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        assert!(
            !answer.starts_with("HTTP/1.1 401"),
            "the registry refused the test's own token: {answer}"
        );
        answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200")
    }

    /// skopeo's copy of `image` into a fresh OCI layout at `dir`; it verifies every
    /// digest on the way.
    pub fn copy_back(&self, image: &str, dir: &Path) {
        let output = Command::new("skopeo")
            .args([
                "copy",
                "--quiet",
                "--src-tls-verify=false",
                "--preserve-digests",
                "--src-creds",
            ])
            .arg(self.creds())
            .arg(format!("docker://127.0.0.1:{}/{image}", self.registry_port))
            .arg(format!("oci:{}:copy", dir.display()))
            .output()
            .expect("skopeo runs");
        assert!(
            output.status.success(),
            "skopeo copy: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for TokenRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
