//! The action's container image, started the way the Actions runner starts it: built
//! from the Dockerfile's runtime stage around the static binary, run by the Docker CLI
//! through a real Docker API server (podman), against the local stack.

use crate::support::*;

#[test]
fn the_image_pushes_a_workspace_layout_as_the_runner_starts_it() {
    let image = ActionImage::build();
    let stack = Stack::start();
    stack.moto.create_repository(CI_ACCOUNT, "app", false);
    let workspace = tempfile::tempdir().unwrap();
    let layout = write_layout(
        &workspace.path().join("image"),
        "v1",
        &[random_bytes(41, 300 * 1024), random_bytes(42, 900)],
    );

    // Names, not addresses, as on a runner: the static binary (glibc linked in, no
    // NSS libraries in scratch) must resolve them over DNS.
    let dns = Dns::start();
    let resolv_conf = format!("{}:/etc/resolv.conf:ro", dns.resolv_conf().display());
    let run = stack
        .action()
        .without("AWS_ENDPOINT_URL")
        .env(
            "AWS_ENDPOINT_URL",
            &stack
                .recorder
                .endpoint()
                .replace("127.0.0.1", "aws.ecr-push.test"),
        )
        // A path relative to the workspace, where the runner starts the container.
        .input("image", "oci:image:v1")
        .input("repository", "app")
        .input("tags", "v1,latest")
        .run_in(&image, workspace.path(), &["--volume", &resolv_conf]);

    assert!(run.ok(), "{}", run.log());
    // A figure for the closing note, not a timed assertion.
    let sts = stack.recorder.calls_to("AssumeRoleWithWebIdentity");
    eprintln!(
        "first STS request {} ms after docker run",
        sts[0].at.duration_since(run.started).as_millis()
    );
    assert!(
        dns.names().iter().any(|n| n == "aws.ecr-push.test"),
        "{:?}",
        dns.names()
    );
    assert_eq!(run.outputs["digest"], layout.digest);
    assert_eq!(run.outputs["tags"], "v1,latest");
    assert_eq!(
        run.outputs["image-uri"],
        format!(
            "{CI_ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/app@{}",
            layout.digest
        )
    );
    assert!(run.summary.contains(&layout.digest), "{}", run.summary);
    for tag in ["v1", "latest"] {
        let (_, stored) = stack.moto.manifest(CI_ACCOUNT, "app", tag).unwrap();
        assert_eq!(stored.as_bytes(), layout.manifest.as_slice());
    }
    // The OIDC token and the session's secrets are masked, and never shown.
    let masks = run.masks();
    let token = stack.oidc.tokens().pop().expect("a token was issued");
    assert!(masks.contains(&token), "{masks:?}");
    assert!(masks.len() >= 4, "{masks:?}");
    for secret in &masks {
        assert!(!run.shows(secret), "{secret} shown: {}", run.log());
    }
}

#[test]
fn the_image_pushes_an_image_only_the_engine_has_into_another_account() {
    let image = ActionImage::build();
    let stack = Stack::start();
    stack
        .moto
        .create_repository(REGISTRY_ACCOUNT, "team/app", false);
    let dir = tempfile::tempdir().unwrap();
    let layers = vec![
        layer_tar("bin/app", &random_bytes(43, 200 * 1024)),
        layer_tar("etc/app.conf", &random_bytes(44, 700)),
    ];
    let archive = write_classic_archive(&dir.path().join("app.tar"), &["app:v2"], &layers);
    // `docker load`, as a build step before ours would leave the image.
    image.daemon.load(&archive.path);
    let workspace = tempfile::tempdir().unwrap();

    let run = stack
        .action()
        .input("image", "app:v2")
        .input("repository", "team/app")
        .input("cross-account-role", PUBLISHER_ROLE)
        .run_in(&image, workspace.path(), &[]);

    assert!(run.ok(), "{}", run.log());
    assert_eq!(
        run.outputs["registry"],
        format!("{REGISTRY_ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com")
    );
    assert_eq!(run.outputs["tags"], "v2");
    let (digest, _) = stack
        .moto
        .manifest(REGISTRY_ACCOUNT, "team/app", "v2")
        .expect("tag v2 in the registry account");
    assert_eq!(run.outputs["digest"], digest);
    let digests: Vec<String> = layers.iter().map(|l| sha256(l)).collect();
    let available = stack
        .moto
        .available_blobs(REGISTRY_ACCOUNT, "team/app", &digests);
    for layer in &layers {
        assert_eq!(available.get(&sha256(layer)), Some(&(layer.len() as i64)));
    }
    // Both hops happened: the web identity, then the role in the registry's account.
    assert_eq!(
        stack.recorder.calls_to("AssumeRoleWithWebIdentity").len(),
        1
    );
    let chained = stack.recorder.calls_to("AssumeRole");
    assert_eq!(chained.len(), 1);
    assert_eq!(chained[0].form("RoleArn").as_deref(), Some(PUBLISHER_ROLE));
}

#[test]
fn the_binary_runs_unprivileged_on_a_read_only_root() {
    let image = ActionImage::build();
    let stack = Stack::start();
    stack.moto.create_repository(CI_ACCOUNT, "app", false);
    let workspace = tempfile::tempdir().unwrap();
    let layout = write_layout(
        &workspace.path().join("image"),
        "v1",
        &[random_bytes(45, 64 * 1024)],
    );

    let run = stack
        .action()
        .input("image", "oci:image:v1")
        .input("repository", "app")
        .run_in(
            &image,
            workspace.path(),
            &["--user", "65532:65532", "--read-only", "--tmpfs", "/tmp"],
        );

    assert!(run.ok(), "{}", run.log());
    assert_eq!(run.outputs["digest"], layout.digest);
    let (_, stored) = stack.moto.manifest(CI_ACCOUNT, "app", "v1").unwrap();
    assert_eq!(stored.as_bytes(), layout.manifest.as_slice());

    // Without the CA bundle the image ships, HTTPS cannot be set up, and it says so.
    let run = stack
        .action()
        .input("image", "oci:image:v1")
        .input("repository", "app")
        .run_in(
            &image,
            workspace.path(),
            &["--env", "SSL_CERT_FILE=/etc/ssl/certs/missing.pem"],
        );
    assert_eq!(run.code, Some(1), "{}", run.log());
    assert!(
        run.error()
            .starts_with("token request: could not set up HTTPS (are CA certificates installed?)"),
        "{}",
        run.log()
    );
}

#[test]
fn the_image_is_small_and_holds_only_the_binary_its_roots_and_a_user() {
    let image = ActionImage::build();
    let size = image.size();
    eprintln!("action image: {size} bytes");
    assert!(size <= 20_000_000, "{size} bytes, over 20 MB");
    // `--help` runs from scratch: the binary needs no shared library.
    let help = image.docker(&["run", "--rm", image.tag, "--help"]);
    assert!(
        help.status.success(),
        "{}",
        String::from_utf8_lossy(&help.stderr)
    );
    assert!(String::from_utf8_lossy(&help.stdout).contains("push"));
}
