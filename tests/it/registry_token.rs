//! `transport: registry` against a registry that wants the distribution token flow
//! (GHCR, Docker Hub, Harbor, GitLab, Quay): a real `docker-registry` with `auth: token`,
//! a token service that checks the login and signs the tokens, and a tap that shows
//! what reached the registry. What lands is read back with skopeo.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::*;

const MIB: usize = 1024 * 1024;
const USER: &str = "ci";
const PASSWORD: &str = "s3cret-token-service-pass";

/// The action with no role: a registry that is not ECR needs no AWS.
fn action(stack: &Stack) -> Action {
    stack.action().without("INPUT_ROLE-TO-ASSUME")
}

/// Each blob of `layout`, as skopeo copied it back, is what its digest says.
fn assert_copied_back(registry: &TokenRegistry, image: &str, layout: &Layout) {
    let back = tempfile::tempdir().unwrap();
    registry.copy_back(image, back.path());
    assert_blobs_in(back.path(), layout);
}

/// Each secret is masked, and shown nowhere but in its `::add-mask::` line.
fn assert_masked_and_never_shown(run: &Run, secrets: &[String]) {
    assert!(!secrets.is_empty());
    for secret in secrets {
        assert!(
            run.masks().contains(secret),
            "{secret} was not masked: {}",
            run.log()
        );
        assert!(!run.shows(secret), "{secret} shown: {}", run.log());
    }
}

#[test]
fn a_push_through_the_token_flow_lands_byte_for_byte_and_the_login_goes_only_to_the_realm() {
    let stack = Stack::start();
    let registry = TokenRegistry::start(USER, PASSWORD);
    let dir = tempfile::tempdir().unwrap();
    let layout = write_layout(
        dir.path(),
        "v1",
        &[random_bytes(71, 3 * MIB), empty_layer()],
    );
    let config = docker_config_with_login(&registry.host(), USER, PASSWORD);

    let run = action(&stack)
        .env("DOCKER_CONFIG", &config.path().display().to_string())
        .input("image", &layout.reference("v1"))
        .input("registry", &registry.host())
        .input("repository", "team/app")
        .input("tags", "v1,stable")
        .input("verbose", "true")
        .run();

    assert!(run.ok(), "{}", run.log());
    // One token for the whole push, asked for with the login, for pull and push.
    let requests = registry.service.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(
        requests[0].login,
        Some((USER.to_owned(), PASSWORD.to_owned()))
    );
    assert_eq!(requests[0].service.as_deref(), Some(SERVICE));
    assert_eq!(requests[0].scopes, ["repository:team/app:pull,push"]);
    let tokens = registry.service.tokens();
    // The registry saw the token, and never the login.
    let authorizations = registry.authorizations();
    assert!(!authorizations.is_empty());
    for value in &authorizations {
        let token = value.strip_prefix("Bearer ");
        assert!(
            token.is_some_and(|t| tokens.iter().any(|issued| issued == t)),
            "the registry got `Authorization: {value}`"
        );
    }
    assert!(run.summary.contains("GET token 1"), "{}", run.summary);
    for tag in ["v1", "stable"] {
        assert_eq!(
            registry.manifest(&format!("team/app:{tag}")),
            layout.manifest
        );
    }
    assert!(registry.has("team/app", "manifests/v1"));
    assert_copied_back(&registry, "team/app:v1", &layout);
    let mut secrets = tokens;
    secrets.push(PASSWORD.to_owned());
    assert_masked_and_never_shown(&run, &secrets);
}

#[test]
fn a_refused_login_is_one_line_naming_the_realm_and_nothing_is_pushed() {
    let stack = Stack::start();
    let registry = TokenRegistry::start(USER, PASSWORD);
    let dir = tempfile::tempdir().unwrap();
    let layout = write_layout(dir.path(), "v1", &[random_bytes(72, 4096)]);
    let wrong = "not-the-password";
    let config = docker_config_with_login(&registry.host(), USER, wrong);

    let run = action(&stack)
        .env("DOCKER_CONFIG", &config.path().display().to_string())
        .input("image", &layout.reference("v1"))
        .input("registry", &registry.host())
        .input("repository", "app")
        .input("verbose", "true")
        .run();

    assert_eq!(run.code, Some(1), "{}", run.log());
    assert_eq!(
        run.error(),
        format!(
            "registry {host}: token service {realm}: refused the Docker config's login for {host} (HTTP 401 UNAUTHORIZED: authentication failed); check it, then docker login {host} again",
            host = registry.host(),
            realm = registry.service.realm()
        )
    );
    assert!(registry.service.tokens().is_empty());
    // The first HEAD, which learnt that a token is needed, and nothing after it.
    assert_eq!(registry.authorizations(), Vec::<String>::new());
    assert!(!registry.has("app", "manifests/v1"));
    assert!(!registry.has("app", &format!("blobs/{}", layout.layers[0].digest)));
    assert_masked_and_never_shown(&run, &[wrong.to_owned()]);

    // No login at all: an anonymous token, which may not read the repository.
    let anonymous = action(&stack)
        .input("image", &layout.reference("v1"))
        .input("registry", &registry.host())
        .input("repository", "app")
        .run();
    assert_eq!(anonymous.code, Some(1), "{}", anonymous.log());
    assert_eq!(
        anonymous.error(),
        format!(
            "registry {host}: HEAD blob of app: HTTP 401 Unauthorized; docker login {host} before this step (ecr-push reads the Docker config)",
            host = registry.host()
        )
    );
    let requests = registry.service.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[1].login, None);
    assert!(requests[1].granted);
    assert!(!registry.has("app", "manifests/v1"));
    assert_masked_and_never_shown(&anonymous, &registry.service.tokens());
}

#[test]
fn a_token_that_runs_out_during_a_push_is_renewed_and_the_request_sent_again() {
    let stack = Stack::start();
    // Tokens the registry takes for 3 s (said as `access_token` alone), and the upload
    // held to 4 MiB/s: the 16 MiB layer outlives the first token.
    let registry = TokenRegistry::start_with(
        USER,
        PASSWORD,
        Tokens {
            lifetime: Duration::from_secs(3),
            access_token_only: true,
        },
        Some(4 * MIB as u64),
    );
    let dir = tempfile::tempdir().unwrap();
    let layout = write_layout(dir.path(), "v1", &[random_bytes(73, 16 * MIB)]);
    let config = docker_config_with_login(&registry.host(), USER, PASSWORD);

    let run = action(&stack)
        .env("DOCKER_CONFIG", &config.path().display().to_string())
        .input("image", &layout.reference("v1"))
        .input("registry", &registry.host())
        .input("repository", "app")
        .kill_after(Duration::from_secs(120))
        .run();

    assert!(run.ok(), "{}", run.log());
    let requests = registry.service.requests();
    assert!(requests.len() >= 2, "{requests:?}\n{}", run.summary);
    // The PUT that closes the layer's upload came after the first token ran out: it was
    // refused, and sent again with the second.
    assert!(
        run.summary.contains("PUT blob upload 3,"),
        "{}",
        run.summary
    );
    assert!(
        requests.iter().all(|r| r.granted
            && r.login == Some((USER.to_owned(), PASSWORD.to_owned()))
            && r.scopes == ["repository:app:pull,push"]),
        "{requests:?}"
    );
    let tokens = registry.service.tokens();
    assert!(
        registry.authorizations().iter().all(|v| v
            .strip_prefix("Bearer ")
            .is_some_and(|t| tokens.contains(&t.to_owned()))),
        "{:?}",
        registry.authorizations()
    );
    assert_eq!(registry.manifest("app:v1"), layout.manifest);
    assert_copied_back(&registry, "app:v1", &layout);
    let mut secrets = tokens;
    secrets.push(PASSWORD.to_owned());
    assert_masked_and_never_shown(&run, &secrets);
}

/// A registry on a free loopback port that answers every request 401 with `challenge`,
/// and keeps the head of each request it got.
fn challenging_registry(challenge: &'static str) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let kept = Arc::clone(&heads);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut stream = stream;
            'requests: loop {
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break 'requests;
                    }
                    if line == "\r\n" {
                        break;
                    }
                    head.push_str(&line);
                }
                kept.lock().unwrap().push(head);
                let body =
                    r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#;
                let _ = write!(
                    stream,
                    "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: {challenge}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
            }
        }
    });
    (host, heads)
}

#[test]
fn a_realm_not_on_https_gets_neither_login_nor_request() {
    let stack = Stack::start();
    let (host, heads) =
        challenging_registry(r#"Bearer realm="http://auth.invalid/token",service="registry""#);
    let dir = tempfile::tempdir().unwrap();
    let layout = write_layout(dir.path(), "v1", &[random_bytes(74, 4096)]);
    let config = docker_config_with_login(&host, USER, PASSWORD);

    let run = action(&stack)
        .env("DOCKER_CONFIG", &config.path().display().to_string())
        .input("image", &layout.reference("v1"))
        .input("registry", &host)
        .input("repository", "app")
        .run();

    assert_eq!(run.code, Some(1), "{}", run.log());
    assert_eq!(
        run.error(),
        format!(
            "registry {host}: token service http://auth.invalid/token: the registry named a realm that is not HTTPS, where no login or token is sent"
        )
    );
    // One HEAD, without the login: the registry asked for a token, not for Basic.
    let heads = heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert!(heads[0].starts_with("HEAD /v2/app/blobs/"), "{heads:?}");
    assert!(
        !heads[0].to_ascii_lowercase().contains("authorization"),
        "{heads:?}"
    );
}
