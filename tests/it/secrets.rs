//! Secrets never leak: every credential, token and password the tool handles (known to
//! the test: the ID-token request token, the OIDC tokens, every key STS handed out, the
//! ECR login) is masked before it appears anywhere, and never shown: not on stdout or
//! stderr (with --verbose on), in the outputs, the summary, or an error. Files it writes
//! are its declared ones, the Docker config mode 0600.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use crate::support::*;

/// Each secret is masked by an `::add-mask::` line before any other line holds it, and
/// nothing but that line ever holds it.
fn assert_masked_and_never_shown(run: &Run, secrets: &[String]) {
    assert!(!secrets.is_empty());
    let masks = run.masks();
    for secret in secrets {
        assert!(
            masks.contains(secret),
            "{secret} was not masked: {}",
            run.log()
        );
        assert!(!run.shows(secret), "{secret} shown: {}", run.log());
    }
}

/// Every secret the run's stack knows of.
fn secrets_of(stack: &Stack) -> Vec<String> {
    let mut secrets = vec![REQUEST_TOKEN.to_owned()];
    secrets.extend(stack.oidc.tokens());
    secrets.extend(stack.recorder.sts_secrets());
    secrets
}

/// The secrets handed out since `before` was taken, and the request token.
fn secrets_since(stack: &Stack, before: &[String]) -> Vec<String> {
    let mut secrets: Vec<String> = secrets_of(stack)
        .into_iter()
        .filter(|s| !before.contains(s))
        .collect();
    secrets.push(REQUEST_TOKEN.to_owned());
    secrets
}

/// Every file under `dir`, relative to it.
fn files_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    found.sort();
    found
}

#[test]
fn a_verbose_push_with_a_docker_login_masks_every_secret_first() {
    let stack = Stack::start();
    stack.moto.create_repository(REGISTRY_ACCOUNT, "app", false);
    let dir = tempfile::tempdir().unwrap();
    let layout = write_layout(dir.path(), "v1", &[random_bytes(61, 2048)]);
    let docker = tempfile::tempdir().unwrap();

    let run = stack
        .action()
        .env("DOCKER_CONFIG", docker.path().to_str().unwrap())
        .input("image", &layout.reference("v1"))
        .input("repository", "app")
        .input("cross-account-role", PUBLISHER_ROLE)
        .input("docker-login", "true")
        .input("verbose", "true")
        .run();

    assert!(run.ok(), "{}", run.log());
    let mut secrets = secrets_of(&stack);
    assert!(secrets.len() >= 1 + 1 + 6, "{secrets:?}");
    // The ECR login moto gives, and the base64 form Docker stores.
    let password = format!("{REGISTRY_ACCOUNT}-auth-token");
    secrets.push(password.clone());
    use base64::Engine as _;
    secrets.push(base64::engine::general_purpose::STANDARD.encode(format!("AWS:{password}")));
    assert_masked_and_never_shown(&run, &secrets);
    // The one file written besides the runner's: the Docker config, for its owner only.
    assert_eq!(files_under(docker.path()), ["config.json"]);
    let mode = std::fs::metadata(docker.path().join("config.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn failures_show_no_secret_either() {
    let stack = Stack::start();
    let dir = tempfile::tempdir().unwrap();
    let layout = write_layout(dir.path(), "v1", &[random_bytes(62, 2048)]);
    // A refused cross-account assume, a refused ECR call, and a run of faults.
    stack.recorder.xml_error_once(
        "AssumeRole",
        "403 Forbidden",
        "AccessDenied",
        "not authorized to perform sts:AssumeRole",
    );
    let before = secrets_of(&stack);
    let denied_hop = stack
        .action()
        .input("image", &layout.reference("v1"))
        .input("repository", "app")
        .input("cross-account-role", PUBLISHER_ROLE)
        .input("verbose", "true")
        .run();
    assert_eq!(denied_hop.code, Some(1), "{}", denied_hop.log());
    assert_masked_and_never_shown(&denied_hop, &secrets_since(&stack, &before));

    stack.recorder.json_error_once(
        "BatchCheckLayerAvailability",
        "400 Bad Request",
        "AccessDeniedException",
        "not authorized",
    );
    let before = secrets_of(&stack);
    let denied_call = stack
        .action()
        .input("image", &layout.reference("v1"))
        .input("repository", "app")
        .input("verbose", "true")
        .run();
    assert_eq!(denied_call.code, Some(1), "{}", denied_call.log());
    assert_masked_and_never_shown(&denied_call, &secrets_since(&stack, &before));

    stack.moto.create_repository(CI_ACCOUNT, "app", false);
    for seed in 0..5 {
        stack.recorder.chaos(seed, 30, &[], &Kind::ALL);
        let before = secrets_of(&stack);
        let run = stack
            .action()
            .env("ECR_PUSH_REQUEST_TIMEOUT_SECONDS", "1")
            .input("image", &layout.reference("v1"))
            .input("repository", "app")
            .input("verbose", "true")
            .run();
        stack.recorder.calm();
        assert_masked_and_never_shown(&run, &secrets_since(&stack, &before));
    }
}

/// Spooled files go to RUNNER_TEMP and are gone afterwards; nothing lands in HOME or
/// the system's temp folder (TMPDIR points nowhere, so a write there would fail).
#[test]
fn nothing_is_written_outside_runner_temp_and_the_declared_files() {
    let stack = Stack::start();
    stack.moto.create_repository(CI_ACCOUNT, "app", false);
    let dir = tempfile::tempdir().unwrap();
    let layers = vec![layer_tar("bin/app", &random_bytes(63, 256 * 1024))];
    let archive = write_classic_archive(&dir.path().join("app.tar"), &["app:v1"], &layers);
    let runner_temp = tempfile::tempdir().unwrap();

    let run = stack
        .action()
        .env("RUNNER_TEMP", runner_temp.path().to_str().unwrap())
        .env("TMPDIR", "/nonexistent/ecr-push-must-not-write-here")
        .input(
            "image",
            &format!("docker-archive:{}", archive.path.display()),
        )
        .input("repository", "app")
        // Compression spools every layer it writes.
        .input("compression", "gzip")
        .run();

    assert!(run.ok(), "{}", run.log());
    assert!(run.log().contains("compressed"), "{}", run.log());
    assert_eq!(files_under(runner_temp.path()), Vec::<String>::new());
    // HOME holds only what the harness put there: the outputs and the summary.
    assert_eq!(
        files_under(run.home.path()),
        ["github_output", "step_summary"]
    );
}
