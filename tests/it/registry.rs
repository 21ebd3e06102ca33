//! `transport: registry`: the OCI distribution API, against a real `docker-registry`;
//! what lands is read back with skopeo.

use crate::support::*;

const MIB: usize = 1024 * 1024;

/// The action with no role: a registry that is not ECR needs no AWS.
fn action(stack: &Stack) -> Action {
    stack.action().without("INPUT_ROLE-TO-ASSUME")
}

/// skopeo's copy of `image` from the registry into a fresh OCI layout; it verifies every
/// digest on the way.
fn copy_back(registry: &Registry, image: &str, dir: &std::path::Path) {
    let output = std::process::Command::new("skopeo")
        .args([
            "copy",
            "--quiet",
            "--all",
            "--src-tls-verify=false",
            "--preserve-digests",
        ])
        .arg(format!("docker://{}/{image}", registry.host()))
        .arg(format!("oci:{}:copy", dir.display()))
        .output()
        .expect("skopeo runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn any_registry_gets_the_image_byte_for_byte_without_aws() {
    let stack = Stack::start();
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    // 25 MiB: a first part, a second, and a last one that closes the upload.
    let layout = write_layout(
        dir.path(),
        "v1",
        &[random_bytes(61, 25 * MIB), empty_layer()],
    );

    let run = action(&stack)
        .input("image", &layout.reference("v1"))
        .input("registry", &registry.host())
        .input("repository", "team/app")
        .input("tags", "v1,stable")
        .run();

    assert!(run.ok(), "{}", run.log());
    for tag in ["v1", "stable"] {
        assert_eq!(
            registry.manifest(&format!("team/app:{tag}")),
            layout.manifest
        );
    }
    assert!(registry.has("team/app/manifests/v1"));
    assert!(registry.has(&format!("team/app/blobs/{}", layout.layers[0].digest)));
    assert_eq!(run.outputs["registry"], registry.host());
    assert_eq!(
        run.outputs["image-uri"],
        format!("{}/team/app@{}", registry.host(), layout.digest)
    );
    let back = tempfile::tempdir().unwrap();
    copy_back(&registry, "team/app:v1", back.path());
    assert_blobs_in(back.path(), &layout);
    // The same in parts of 10 MiB, each its own PATCH, as ECR's endpoint wants them.
    let chunked = action(&stack)
        .env("ECR_PUSH_CHUNKED", "true")
        .input("image", &layout.reference("v1"))
        .input("registry", &registry.host())
        .input("repository", "team/chunked")
        .run();
    assert!(chunked.ok(), "{}", chunked.log());
    assert_eq!(registry.manifest("team/chunked:v1"), layout.manifest);
    let back = tempfile::tempdir().unwrap();
    copy_back(&registry, "team/chunked:v1", back.path());
    // Not one call to AWS, not one token asked for.
    assert!(
        stack.recorder.calls().is_empty(),
        "{:?}",
        stack.recorder.calls()
    );
    assert!(stack.oidc.tokens().is_empty());

    let again = action(&stack)
        .input("image", &layout.reference("v1"))
        .input("registry", &registry.host())
        .input("repository", "team/app")
        .input("tags", "v1,stable")
        .run();
    assert!(again.ok(), "{}", again.log());
    assert!(
        again.summary.contains("| Uploaded | 0 B in 0 blobs |"),
        "{}",
        again.summary
    );
    assert!(
        again
            .summary
            .contains("| Tags already in place | `v1`, `stable` |"),
        "{}",
        again.summary
    );
    // A HEAD per blob (config and two layers) and per tag, nothing else.
    assert!(
        again
            .summary
            .contains("| Requests | HEAD blob 3, HEAD manifest 2 |"),
        "{}",
        again.summary
    );
}

#[test]
fn an_index_goes_whole_to_a_registry() {
    let stack = Stack::start();
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let layout = write_index_layout(dir.path(), "v1", &["linux/amd64", "linux/arm64"]);

    let run = action(&stack)
        .input("image", &layout.reference("v1"))
        .input("registry", &registry.host())
        .input("repository", "multi")
        .run();

    assert!(run.ok(), "{}", run.log());
    assert_eq!(registry.manifest("multi:v1"), layout.index.bytes);
    for child in layout.images.iter().chain(&layout.attestations) {
        assert_eq!(
            registry.manifest(&format!("multi@{}", child.digest)),
            child.bytes
        );
    }
    let back = tempfile::tempdir().unwrap();
    copy_back(&registry, "multi:v1", back.path());
}

#[test]
fn registry_logins_come_from_the_docker_config_and_inputs_for_ecr_are_refused() {
    let stack = Stack::start();
    let password = "s3cret-destination-pass";
    let registry = Registry::start_with_login("ci", password);
    let dir = tempfile::tempdir().unwrap();
    let layout = write_layout(dir.path(), "v1", &[random_bytes(62, 3000)]);

    let anonymous = action(&stack)
        .input("image", &layout.reference("v1"))
        .input("registry", &registry.host())
        .input("repository", "app")
        .run();
    assert!(!anonymous.ok());
    assert_eq!(
        anonymous.error(),
        format!(
            "registry {host}: HEAD blob of app: HTTP 401 Unauthorized; docker login {host} before this step (ecr-push reads the Docker config)",
            host = registry.host()
        )
    );

    let config = docker_config_with_login(&registry.host(), "ci", password);
    let run = action(&stack)
        .env("DOCKER_CONFIG", &config.path().display().to_string())
        .input("image", &layout.reference("v1"))
        .input("registry", &registry.host())
        .input("repository", "app")
        .run();
    assert!(run.ok(), "{}", run.log());
    assert!(run.masks().iter().any(|m| m == password));
    assert_eq!(run.outputs["digest"], layout.digest);

    for (input, value, message) in [
        (
            "transport",
            "api",
            format!(
                "transport: api is ECR's layer-upload API, and {} is not ECR; leave transport empty or set registry",
                registry.host()
            ),
        ),
        (
            "role-to-assume",
            PUSH_ROLE,
            format!(
                "role-to-assume: is for ECR, and the registry {} is not ECR; remove it",
                registry.host()
            ),
        ),
    ] {
        let refused = action(&stack)
            .input("image", &layout.reference("v1"))
            .input("registry", &registry.host())
            .input("repository", "app")
            .input(input, value)
            .run();
        assert!(!refused.ok());
        assert_eq!(refused.error(), message);
    }
}

#[test]
fn a_corrupt_blob_is_never_committed_and_nothing_is_tagged() {
    let stack = Stack::start();
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let layout = write_layout(dir.path(), "v1", &[random_bytes(63, 3 * MIB)]);
    let layer = &layout.layers[0].digest;
    let path = layout.blob_path(layer);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();

    for chunked in ["false", "true"] {
        let run = action(&stack)
            .env("ECR_PUSH_CHUNKED", chunked)
            .input("image", &layout.reference("v1"))
            .input("registry", &registry.host())
            .input("repository", "app")
            .run();
        assert!(!run.ok(), "{}", run.log());
        assert!(
            run.error()
                .starts_with(&format!("image: blob {layer} is corrupt")),
            "{}",
            run.error()
        );
        assert!(
            !registry.has(&format!("app/blobs/{layer}")),
            "the corrupt blob was committed"
        );
        assert!(
            !registry.has("app/manifests/v1"),
            "a tag points at a broken image"
        );
    }
}

/// A registry (or the proxy in front of it) that answers 503, 429 or drops the
/// connection now and then: each request is sent again after a backoff, and the image
/// lands whole. The recording proxy stands between the tool and docker-registry; parts
/// go as PATCHes with a length (ECR_PUSH_CHUNKED), which it can relay.
#[test]
fn throttles_and_failures_of_a_registry_are_waited_out() {
    let stack = Stack::start();
    let registry = Registry::start();
    let port = registry.port;
    let proxy = Recorder::start(port);
    let dir = tempfile::tempdir().unwrap();
    let layout = write_layout(dir.path(), "v1", &[random_bytes(62, 12 * MIB)]);
    for name in ["503", "429", "reset"] {
        proxy.forget();
        match name {
            "503" => {
                proxy.json_error_times("", "503 Service Unavailable", "UNAVAILABLE", "busy", 3)
            }
            "429" => proxy.json_error_times(
                "",
                "429 Too Many Requests",
                "TOOMANYREQUESTS",
                "slow down",
                3,
            ),
            _ => proxy.fail_next("", Kind::ResetBefore, 3),
        }
        let repository = format!("faults/{name}");
        let run = action(&stack)
            .env("ECR_PUSH_CHUNKED", "true")
            .input("image", &layout.reference("v1"))
            .input("registry", &format!("127.0.0.1:{}", proxy.port))
            .input("repository", &repository)
            .run();
        proxy.calm();
        assert!(run.ok(), "{name}: {}", run.log());
        assert_eq!(
            registry.manifest(&format!("{repository}:v1")),
            layout.manifest,
            "{name}"
        );
        // Three requests were refused and each sent again.
        let sent: u64 = parse_requests(&run.summary).values().sum();
        assert_eq!(proxy.calls().len() as u64, sent, "{name}: {}", run.summary);
        assert!(sent >= 3 + 5, "{name}: {}", run.summary);
    }
    let back = tempfile::tempdir().unwrap();
    copy_back(&registry, "faults/reset:v1", back.path());
}

/// The summary's "Requests" row, by action.
fn parse_requests(summary: &str) -> std::collections::HashMap<String, u64> {
    summary
        .lines()
        .find_map(|l| l.strip_prefix("| Requests | "))
        .unwrap_or_default()
        .trim_end_matches(" |")
        .split(", ")
        .filter_map(|entry| {
            let (action, n) = entry.rsplit_once(' ')?;
            Some((action.to_owned(), n.parse().ok()?))
        })
        .collect()
}
