//! Every place an image comes from besides an OCI layout: `docker save` archives in both
//! layouts, checked against skopeo and a real registry.

use crate::support::*;

/// The image in moto under `tag` has exactly these manifest bytes, and every layer is
/// there with its size.
fn assert_in_moto(stack: &Stack, repository: &str, tag: &str, manifest: &[u8], layers: &[Vec<u8>]) {
    let (digest, stored) = stack
        .moto
        .manifest(CI_ACCOUNT, repository, tag)
        .unwrap_or_else(|| panic!("tag {tag} not in {repository}"));
    assert_eq!(
        stored.as_bytes(),
        manifest,
        "{}",
        String::from_utf8_lossy(manifest)
    );
    assert_eq!(digest, sha256(manifest));
    let digests: Vec<String> = layers.iter().map(|l| sha256(l)).collect();
    let available = stack.moto.available_blobs(CI_ACCOUNT, repository, &digests);
    for layer in layers {
        assert_eq!(available.get(&sha256(layer)), Some(&(layer.len() as i64)));
    }
}

fn layers() -> Vec<Vec<u8>> {
    let empty = layer_tar("empty", b"");
    vec![
        layer_tar("bin/app", &random_bytes(21, 300 * 1024)),
        empty.clone(),
        layer_tar("etc/app.conf", &random_bytes(22, 900)),
        // Docker writes a layer equal to an earlier one as a symlink to it.
        empty,
    ]
}

#[test]
fn classic_docker_save_archive_gets_the_digest_skopeo_gives_it() {
    let stack = Stack::start();
    stack.moto.create_repository(CI_ACCOUNT, "app", false);
    let dir = tempfile::tempdir().unwrap();
    let layers = layers();
    let archive = write_classic_archive(
        &dir.path().join("app.tar"),
        &["example.test/app:v1", "app:stable"],
        &layers,
    );

    let run = stack
        .action()
        .input("image", &archive.reference("example.test/app:v1"))
        .input("repository", "app")
        .run();

    assert!(run.ok(), "{}", run.log());
    let registry = Registry::start();
    registry.skopeo_copy(&archive.reference("example.test/app:v1"), "app:v1");
    let expected = registry.manifest("app:v1");
    // The default tag is the one the reference names.
    assert_in_moto(&stack, "app", "v1", &expected, &layers);
    assert_eq!(run.outputs["digest"], sha256(&expected));
    let manifest: serde_json::Value = serde_json::from_slice(&expected).unwrap();
    assert_eq!(manifest["config"]["digest"], archive.config.as_str());
    // Three distinct layers, and the config: the repeated layer went up once.
    assert_eq!(stack.recorder.calls_to("InitiateLayerUpload").len(), 4);

    // The same image by its other name, as Docker would match it.
    let again = stack
        .action()
        .input("image", &archive.reference("docker.io/library/app:stable"))
        .input("repository", "app")
        .run();
    assert!(again.ok(), "{}", again.log());
    assert_eq!(again.outputs["digest"], sha256(&expected));
    assert_eq!(again.outputs["tags"], "stable");
}

#[test]
fn docker_25_archive_keeps_the_manifest_docker_wrote() {
    let stack = Stack::start();
    stack.moto.create_repository(CI_ACCOUNT, "app", false);
    let dir = tempfile::tempdir().unwrap();
    let layers = layers();
    let archive = write_oci_docker_archive(&dir.path().join("app.tar"), "app:v2", &layers);
    let (digest, manifest) = archive.manifest.clone().unwrap();

    for reference in ["", "app:v2", "@0"] {
        let run = stack
            .action()
            .input("image", &archive.reference(reference))
            .input("repository", "app")
            .input("tags", "v2")
            .run();
        assert!(run.ok(), "{reference}: {}", run.log());
        assert_eq!(run.outputs["digest"], digest, "{reference}");
    }
    assert_in_moto(&stack, "app", "v2", &manifest, &layers);
}

#[test]
fn unusable_archives_are_named_with_what_to_do_and_nothing_is_pushed() {
    let stack = Stack::start();
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let layers = layers();

    let good = write_classic_archive(&path("good.tar"), &["app:v1"], &layers);
    let two = {
        let mut tar = TarWriter::new();
        let config = br#"{"rootfs":{"type":"layers","diff_ids":[]}}"#;
        tar.file("c.json", config);
        tar.file(
            "manifest.json",
            br#"[{"Config":"c.json","RepoTags":["a:1"],"Layers":[]},{"Config":"c.json","RepoTags":["b:2"],"Layers":[]}]"#,
        );
        std::fs::write(path("two.tar"), tar.finish()).unwrap();
        path("two.tar")
    };
    let missing_layer = {
        let mut tar = TarWriter::new();
        let config = format!(
            r#"{{"rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#,
            sha256(&layers[0])
        );
        tar.file("c.json", config.as_bytes());
        tar.file(
            "manifest.json",
            br#"[{"Config":"c.json","RepoTags":["a:1"],"Layers":["abc/layer.tar"]}]"#,
        );
        std::fs::write(path("missing.tar"), tar.finish()).unwrap();
        path("missing.tar")
    };
    let with_entry = |name: &str, build: &dyn Fn(&mut TarWriter)| {
        let mut tar = TarWriter::new();
        build(&mut tar);
        tar.file("manifest.json", b"[]");
        std::fs::write(path(name), tar.finish()).unwrap();
        path(name)
    };
    let dotdot = with_entry("dotdot.tar", &|tar| {
        tar.file("x", b"")
            .link(tar::EntryType::Symlink, "a/b", "../../../etc/passwd");
    });
    for (name, entry, bytes) in [
        ("empty.tar", "repositories", "{}"),
        ("none.tar", "manifest.json", "[]"),
    ] {
        let mut tar = TarWriter::new();
        tar.file(entry, bytes.as_bytes());
        std::fs::write(path(name), tar.finish()).unwrap();
    }
    let absolute = with_entry("absolute.tar", &|tar| {
        tar.link(tar::EntryType::Link, "layer.tar", "/etc/passwd");
    });
    std::fs::write(path("text.tar"), "not a tar at all, ".repeat(100)).unwrap();
    let gzipped = {
        let mut bytes = vec![0x1f, 0x8b, 8, 0];
        bytes.extend(random_bytes(3, 2000));
        std::fs::write(path("app.tar.gz"), bytes).unwrap();
        path("app.tar.gz")
    };

    let show = |p: &std::path::Path| p.display().to_string();
    let cases: Vec<(String, String)> = vec![
        (
            format!("docker-archive:{}", show(&path("absent.tar"))),
            format!(
                "image: nothing is at {}; check the path",
                show(&path("absent.tar"))
            ),
        ),
        (
            format!("docker-archive:{}", show(&path("text.tar"))),
            format!(
                "image: {} is not a docker-archive (the tar docker save writes): it is not a tar",
                show(&path("text.tar"))
            ),
        ),
        (
            format!("docker-archive:{}", show(&gzipped)),
            format!(
                "image: {} is not a docker-archive (the tar docker save writes): it is gzip-compressed; decompress it first",
                show(&gzipped)
            ),
        ),
        (
            format!("docker-archive:{}", show(&dotdot)).replace("dotdot", "empty"),
            format!(
                "image: {} is not a docker-archive (the tar docker save writes): it has neither manifest.json nor an OCI layout (index.json)",
                show(&path("empty.tar"))
            ),
        ),
        (
            format!("docker-archive:{}", show(&path("none.tar"))),
            format!(
                "image: {} is not a docker-archive (the tar docker save writes): it lists no image",
                show(&path("none.tar"))
            ),
        ),
        (
            good.reference("app:v9"),
            format!(
                "image: {} is not a docker-archive (the tar docker save writes): no image is named docker.io/library/app:v9 (names: app:v1)",
                show(&good.path)
            ),
        ),
        (
            format!("docker-archive:{}", show(&two)),
            format!(
                "image: {} is not a docker-archive (the tar docker save writes): it holds 2 images; name one as FILE:NAME:TAG or FILE:@N (names: a:1, b:2)",
                show(&two)
            ),
        ),
        (
            format!("docker-archive:{}:@2", show(&two)),
            format!(
                "image: {} is not a docker-archive (the tar docker save writes): it holds 2 images, so @2 is none",
                show(&two)
            ),
        ),
        (
            format!("docker-archive:{}", show(&missing_layer)),
            format!(
                "image: {} is not a docker-archive (the tar docker save writes): manifest.json names the layer abc/layer.tar, which it does not hold",
                show(&missing_layer)
            ),
        ),
        (
            format!("docker-archive:{}", show(&dotdot)),
            format!(
                "image: {} is not a docker-archive (the tar docker save writes): its entry `a/b` is refused: it links out of the archive",
                show(&dotdot)
            ),
        ),
        (
            format!("docker-archive:{}", show(&absolute)),
            format!(
                "image: {} is not a docker-archive (the tar docker save writes): its entry `layer.tar` is refused: it links out of the archive",
                show(&absolute)
            ),
        ),
    ];
    for (image, message) in cases {
        let run = stack
            .action()
            .input("image", &image)
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

#[test]
fn registry_image_is_copied_whole_by_tag_or_digest() {
    let stack = Stack::start();
    stack.moto.create_repository(CI_ACCOUNT, "copy", false);
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let layout = write_index_layout(dir.path(), "v1", &["linux/amd64", "linux/arm64"]);
    registry.skopeo_copy_with(&["--all"], &layout.reference("v1"), "team/app:v1");
    assert_eq!(registry.manifest("team/app:v1"), layout.index.bytes);

    let by_tag = stack
        .action()
        .input(
            "image",
            &format!("docker://{}/team/app:v1", registry.host()),
        )
        .input("repository", "copy")
        .run();
    assert!(by_tag.ok(), "{}", by_tag.log());
    assert_eq!(by_tag.outputs["digest"], layout.index.digest);
    assert_eq!(by_tag.outputs["tags"], "v1");
    let (digest, bytes) = stack.moto.manifest(CI_ACCOUNT, "copy", "v1").unwrap();
    assert_eq!(
        (digest.as_str(), bytes.as_bytes()),
        (layout.index.digest.as_str(), layout.index.bytes.as_slice())
    );
    for manifest in layout.images.iter().chain(&layout.attestations) {
        let (_, stored) = stack
            .moto
            .manifest_by_digest(CI_ACCOUNT, "copy", &manifest.digest)
            .unwrap();
        assert_eq!(stored.as_bytes(), manifest.bytes.as_slice());
    }
    let digests: Vec<String> = layout.blobs.iter().map(|(d, _)| d.clone()).collect();
    let available = stack.moto.available_blobs(CI_ACCOUNT, "copy", &digests);
    for (digest, size) in &layout.blobs {
        assert_eq!(available.get(digest), Some(&(*size as i64)), "{digest}");
    }

    // One platform's image, by digest: no tag in the reference, so the default.
    let arm = &layout.images[1];
    let by_digest = stack
        .action()
        .input(
            "image",
            &format!("docker://{}/team/app@{}", registry.host(), arm.digest),
        )
        .input("repository", "copy")
        .input("tags", "arm")
        .run();
    assert!(by_digest.ok(), "{}", by_digest.log());
    assert_eq!(by_digest.outputs["digest"], arm.digest);
    let (_, stored) = stack.moto.manifest(CI_ACCOUNT, "copy", "arm").unwrap();
    assert_eq!(stored.as_bytes(), arm.bytes.as_slice());
}

#[test]
fn registry_manifest_without_a_media_type_is_read_as_oci() {
    let stack = Stack::start();
    stack.moto.create_repository(CI_ACCOUNT, "copy", false);
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let layout = layout.to_str().unwrap();
    // umoci writes manifests with no mediaType field.
    umoci(&["init", "--layout", layout]);
    umoci(&["new", "--image", &format!("{layout}:v1")]);
    registry.skopeo_copy(&format!("oci:{layout}:v1"), "bare:v1");
    let expected = registry.manifest("bare:v1");
    let parsed: serde_json::Value = serde_json::from_slice(&expected).unwrap();
    assert!(parsed.get("mediaType").is_none(), "{parsed}");

    let run = stack
        .action()
        .input("image", &format!("docker://{}/bare:v1", registry.host()))
        .input("repository", "copy")
        .run();

    assert!(run.ok(), "{}", run.log());
    assert_eq!(run.outputs["digest"], sha256(&expected));
    let (_, stored) = stack.moto.manifest(CI_ACCOUNT, "copy", "v1").unwrap();
    assert_eq!(stored.as_bytes(), expected.as_slice());
}

#[test]
fn registry_without_the_image_is_named_and_nothing_is_pushed() {
    let stack = Stack::start();
    let registry = Registry::start();
    let image = format!("docker://{}/team/app:v9", registry.host());
    let run = stack
        .action()
        .input("image", &image)
        .input("repository", "copy")
        .run();
    assert!(!run.ok(), "{}", run.log());
    assert_eq!(
        run.error(),
        format!("image: {image}: it has no such manifest; check the name and tag")
    );
    assert!(
        stack.recorder.calls().is_empty(),
        "{:?}",
        stack.recorder.calls()
    );
}

#[test]
fn registry_login_comes_from_the_docker_config_and_is_masked() {
    let stack = Stack::start();
    stack.moto.create_repository(CI_ACCOUNT, "copy", false);
    let password = "s3cret-registry-pass";
    let registry = Registry::start_with_login("ci", password);
    let dir = tempfile::tempdir().unwrap();
    let layout = write_layout(dir.path(), "v1", &[random_bytes(51, 4000)]);
    registry.skopeo_copy_with(
        &["--dest-creds", &format!("ci:{password}")],
        &layout.reference("v1"),
        "app:v1",
    );
    let image = format!("docker://{}/app:v1", registry.host());

    let anonymous = stack
        .action()
        .input("image", &image)
        .input("repository", "copy")
        .run();
    assert!(!anonymous.ok());
    assert_eq!(
        anonymous.error(),
        format!(
            "image: {image}: {host} refused the credentials, or needs some: docker login {host} before this step (ecr-push reads the Docker config)",
            host = registry.host()
        )
    );

    let config = docker_config_with_login(&registry.host(), "ci", password);
    let run = stack
        .action()
        .env("DOCKER_CONFIG", &config.path().display().to_string())
        .input("image", &image)
        .input("repository", "copy")
        .run();
    assert!(run.ok(), "{}", run.log());
    assert_eq!(run.outputs["digest"], layout.digest);
    assert!(
        run.masks().iter().any(|m| m == password),
        "{:?}",
        run.masks()
    );
    let log = run.log();
    let unmasked = log.replace(&format!("::add-mask::{password}"), "");
    assert!(!unmasked.contains(password), "{log}");
}

/// A dev account's ECR registry, as a TLS registry reached through a CONNECT proxy, so
/// its public name is never resolved.
struct DevRegistry {
    ca: TestCa,
    registry: Registry,
    proxy: ConnectProxy,
}

const DEV_HOST: &str = "210987654321.dkr.ecr.eu-west-1.amazonaws.com";

impl DevRegistry {
    /// The registry wants `AWS` and `password`, as ECR wants its token.
    fn start(password: &str) -> Self {
        let ca = TestCa::new();
        let registry = Registry::start_tls(&ca, DEV_HOST, "AWS", password);
        let proxy = ConnectProxy::start(registry.port);
        Self {
            ca,
            registry,
            proxy,
        }
    }

    fn action(&self, stack: &Stack) -> Action {
        stack
            .action()
            .env(
                "HTTPS_PROXY",
                &format!("http://127.0.0.1:{}", self.proxy.port),
            )
            .env("SSL_CERT_FILE", self.ca.certificate().to_str().unwrap())
    }
}

#[test]
fn an_image_in_another_accounts_ecr_is_promoted_with_the_steps_credentials() {
    let stack = Stack::start();
    stack.moto.create_repository(CI_ACCOUNT, "prod/app", false);
    // moto's GetAuthorizationToken gives the caller's account a password of this form;
    // the dev registry accepts only that login.
    let password = format!("{CI_ACCOUNT}-auth-token");
    let dev = DevRegistry::start(&password);
    let dir = tempfile::tempdir().unwrap();
    let layout = write_layout(dir.path(), "v1", &[random_bytes(31, 200 * 1024)]);
    dev.registry.skopeo_copy_with(
        &["--dest-creds", &format!("AWS:{password}")],
        &layout.reference("v1"),
        "dev/app:v1",
    );

    let run = dev
        .action(&stack)
        .input(
            "image",
            &format!("docker://{DEV_HOST}/dev/app@{}", layout.digest),
        )
        .input("repository", "prod/app")
        .input("tags", "1.0")
        .run();

    assert!(run.ok(), "{}", run.log());
    assert_eq!(run.outputs["digest"], layout.digest);
    let (_, stored) = stack.moto.manifest(CI_ACCOUNT, "prod/app", "1.0").unwrap();
    assert_eq!(stored.as_bytes(), layout.manifest.as_slice());
    let available = stack
        .moto
        .available_blobs(CI_ACCOUNT, "prod/app", &layout.blob_digests());
    assert_eq!(available.len(), 2, "{available:?}");
    // One login, asked of the source's region; the source reached under its own name.
    let logins = stack.recorder.calls_to("GetAuthorizationToken");
    assert_eq!(logins.len(), 1);
    assert_eq!(logins[0].region, "eu-west-1");
    let hosts = dev.proxy.hosts();
    assert!(!hosts.is_empty());
    assert!(
        hosts.iter().all(|h| h == &format!("{DEV_HOST}:443")),
        "{hosts:?}"
    );
    assert!(run.masks().contains(&password), "{:?}", run.masks());
    assert!(!run.shows(&password), "{}", run.log());
}

#[test]
fn another_accounts_ecr_that_refuses_the_role_says_which_permissions_and_pushes_nothing() {
    let stack = Stack::start();
    stack.moto.create_repository(CI_ACCOUNT, "prod/app", false);
    let dev = DevRegistry::start("another-token");

    let run = dev
        .action(&stack)
        .input("image", &format!("docker://{DEV_HOST}/dev/app:v1"))
        .input("repository", "prod/app")
        .run();

    assert!(!run.ok(), "{}", run.log());
    assert_eq!(
        run.error(),
        format!(
            "image: docker://{DEV_HOST}/dev/app:v1: {DEV_HOST} refused the step's AWS credentials: the role needs ecr:BatchGetImage and ecr:GetDownloadUrlForLayer on arn:aws:ecr:eu-west-1:210987654321:repository/dev/app, which that repository's policy must also allow when the role is in another account"
        )
    );
    assert!(stack.recorder.calls_to("PutImage").is_empty());
    assert!(stack.recorder.calls_to("InitiateLayerUpload").is_empty());
}
