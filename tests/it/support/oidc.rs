//! The GitHub Actions ID-token endpoint, on a free loopback port: what the tool asks for
//! its web identity token.

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use super::{
    OWNER_ID, REPO_ID, REQUEST_TOKEN, SUB, SUB_CLASSIC, Server, header, percent_decode,
    read_message,
};

/// The GitHub Actions ID-token endpoint (ACTIONS_ID_TOKEN_REQUEST_URL). Its tokens
/// carry immutable subjects, as a new repository's do; `classic_subjects` makes it an
/// older repository's.
pub struct OidcEndpoint {
    /// The audience of each request it answered, in order.
    audiences: Arc<Mutex<Vec<String>>>,
    /// Every token it issued.
    tokens: Arc<Mutex<Vec<String>>>,
    classic: Arc<std::sync::atomic::AtomicBool>,
    server: Server,
}

impl OidcEndpoint {
    pub fn start() -> Self {
        let audiences = Arc::new(Mutex::new(Vec::new()));
        let tokens = Arc::new(Mutex::new(Vec::new()));
        let classic = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (seen, issued, form) = (
            Arc::clone(&audiences),
            Arc::clone(&tokens),
            Arc::clone(&classic),
        );
        let server = Server::start("the token endpoint", move |stream| {
            let sub = if form.load(std::sync::atomic::Ordering::Relaxed) {
                SUB_CLASSIC
            } else {
                SUB
            };
            let _ = answer_token_request(stream, sub, &seen, &issued);
        });
        Self {
            audiences,
            tokens,
            classic,
            server,
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
            self.server.port
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
