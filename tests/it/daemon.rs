//! Images in a Docker engine: exported through the Engine API of a real server (podman's
//! Docker-compatible service), streamed to disk, and pushed with the digest skopeo's
//! docker-daemon transport gives them.

use crate::support::*;

fn layers() -> Vec<Vec<u8>> {
    vec![
        layer_tar("bin/app", &random_bytes(31, 400 * 1024)),
        layer_tar("etc/app.conf", &random_bytes(32, 1200)),
    ]
}

#[test]
fn daemon_image_gets_the_digest_skopeo_gives_it_with_or_without_the_transport() {
    let daemon = Daemon::start();
    let stack = Stack::start();
    stack.moto.create_repository(CI_ACCOUNT, "app", false);
    let dir = tempfile::tempdir().unwrap();
    let layers = layers();
    let archive = write_classic_archive(
        &dir.path().join("app.tar"),
        &["example.test/app:v1"],
        &layers,
    );
    daemon.load(&archive.path);

    let registry = Registry::start();
    registry.skopeo_copy_with(
        &["--src-daemon-host", &daemon.docker_host()],
        "docker-daemon:example.test/app:v1",
        "app:v1",
    );
    let expected = registry.manifest("app:v1");

    for (image, tag, host) in [
        (
            "docker-daemon:example.test/app:v1",
            "v1",
            daemon.docker_host(),
        ),
        ("example.test/app:v1", "v1", daemon.docker_host()),
        ("example.test/app:v1", "v1", daemon.tcp_host()),
    ] {
        let run = stack
            .action()
            .env("DOCKER_HOST", &host)
            .input("image", image)
            .input("repository", "app")
            .run();
        assert!(run.ok(), "{image} from {host}: {}", run.log());
        assert_eq!(run.outputs["digest"], sha256(&expected), "{image}");
        assert_eq!(run.outputs["tags"], tag, "{image}");
        assert!(
            run.log()
                .contains("exported example.test/app:v1 from the Docker daemon"),
            "{}",
            run.log()
        );
    }
    let (digest, stored) = stack.moto.manifest(CI_ACCOUNT, "app", "v1").unwrap();
    assert_eq!(stored.as_bytes(), expected.as_slice());
    assert_eq!(digest, sha256(&expected));
    let digests: Vec<String> = layers.iter().map(|l| sha256(l)).collect();
    let available = stack.moto.available_blobs(CI_ACCOUNT, "app", &digests);
    for layer in &layers {
        assert_eq!(available.get(&sha256(layer)), Some(&(layer.len() as i64)));
    }
}

/// Docker's engine exports every tag of a bare repository name (podman's takes the
/// latest itself), so the tool asks for NAME:latest; the unit tests of the reference
/// parser pin that, this one that the result is the latest image and tag.
#[test]
fn bare_name_is_the_latest_tag_not_every_tag() {
    let daemon = Daemon::start();
    let stack = Stack::start();
    stack.moto.create_repository(CI_ACCOUNT, "app", false);
    let dir = tempfile::tempdir().unwrap();
    let latest = write_classic_archive(
        &dir.path().join("latest.tar"),
        &["example.test/app:latest"],
        &layers(),
    );
    let cache_layers = vec![layer_tar("cache", &random_bytes(33, 2000))];
    let cache = write_classic_archive(
        &dir.path().join("cache.tar"),
        &["example.test/app:cache"],
        &cache_layers,
    );
    daemon.load(&latest.path);
    daemon.load(&cache.path);

    let run = stack
        .action()
        .env("DOCKER_HOST", &daemon.docker_host())
        .input("image", "example.test/app")
        .input("repository", "app")
        .run();

    assert!(run.ok(), "{}", run.log());
    assert_eq!(run.outputs["tags"], "latest");
    let (_, manifest) = stack.moto.manifest(CI_ACCOUNT, "app", "latest").unwrap();
    let manifest: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    assert_eq!(manifest["config"]["digest"], latest.config.as_str());
}

#[test]
fn missing_daemon_or_image_is_named_with_what_to_do_and_nothing_is_pushed() {
    let daemon = Daemon::start();
    let stack = Stack::start();
    let dir = tempfile::tempdir().unwrap();
    let archive = write_classic_archive(
        &dir.path().join("app.tar"),
        &["example.test/app:v1"],
        &layers(),
    );
    daemon.load(&archive.path);
    let no_socket = format!("unix://{}", dir.path().join("docker.sock").display());

    let cases = [
        (
            daemon.docker_host(),
            "docker-daemon:example.test/app:v9",
            format!(
                "image: the Docker daemon at {} has no image example.test/app:v9; it has example.test/app:v1",
                daemon.docker_host()
            ),
        ),
        (
            daemon.docker_host(),
            "other.test/nothing:v1",
            format!(
                "image: the Docker daemon at {} has no image other.test/nothing:v1; build or pull it first, or check the name",
                daemon.docker_host()
            ),
        ),
        (
            no_socket.clone(),
            "example.test/app:v1",
            format!(
                "image: the Docker daemon at {no_socket} has no socket there; start Docker, mount its socket, or set DOCKER_HOST"
            ),
        ),
    ];
    for (host, image, message) in cases {
        let run = stack
            .action()
            .env("DOCKER_HOST", &host)
            .input("image", image)
            .input("repository", "app")
            .run();
        assert!(!run.ok(), "{image}: {}", run.log());
        assert_eq!(run.error(), message, "{image}");
    }
    assert!(
        stack.recorder.calls().is_empty(),
        "{:?}",
        stack.recorder.calls()
    );
}
