//! Hostile and broken input: each case exits non-zero with one line that names the
//! input and what to do, never panics, and pushes nothing.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use crate::support::*;

/// A failed run as the issue wants it: the exit code, one error line starting with
/// `starts`, no panic or backtrace, and nothing started in ECR.
fn assert_refused(stack: &Stack, run: &Run, code: i32, starts: &str) {
    assert_eq!(run.code, Some(code), "{}", run.log());
    let error = run.error();
    assert!(
        error.starts_with(starts),
        "{starts:?} expected, got {error:?}"
    );
    let errors = run
        .stdout
        .lines()
        .chain(run.stderr.lines())
        .filter(|l| l.contains("::error") || l.starts_with("error: "))
        .count();
    assert_eq!(errors, 1, "{}", run.log());
    for sign in ["panicked", "RUST_BACKTRACE", "stack backtrace"] {
        assert!(!run.log().contains(sign), "{}", run.log());
    }
    for action in ["InitiateLayerUpload", "PutImage"] {
        assert!(
            stack.recorder.calls_to(action).is_empty(),
            "{action} was called"
        );
    }
}

/// An OCI layout whose index.json lists `top` (media type, digest, size), with these
/// blobs in it.
fn raw_layout(dir: &Path, top: serde_json::Value, blobs: &[&[u8]]) -> String {
    let path = dir.join("blobs/sha256");
    std::fs::create_dir_all(&path).unwrap();
    for blob in blobs {
        let digest = sha256(blob);
        std::fs::write(path.join(digest.trim_start_matches("sha256:")), blob).unwrap();
    }
    let mut top = top;
    top["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": "v1"});
    std::fs::write(
        dir.join("index.json"),
        serde_json::json!({"schemaVersion": 2, "manifests": [top]}).to_string(),
    )
    .unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    format!("oci:{}:v1", dir.display())
}

fn descriptor(media_type: &str, bytes: &[u8]) -> serde_json::Value {
    serde_json::json!({"mediaType": media_type, "digest": sha256(bytes), "size": bytes.len()})
}

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// A manifest's text around a config blob and one layer, with `extra` spliced in
/// before the closing brace.
fn manifest_text(config: &[u8], layer: &[u8], extra: &str) -> Vec<u8> {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{MANIFEST}","config":{},"layers":[{}]{extra}}}"#,
        descriptor("application/vnd.oci.image.config.v1+json", config),
        descriptor("application/vnd.oci.image.layer.v1.tar", layer),
    )
    .into_bytes()
}

fn push(stack: &Stack, image: &str) -> Run {
    stack.recorder.forget();
    let run = stack
        .action()
        .input("image", image)
        .input("repository", "app")
        .run();
    eprintln!(
        "{}: {}",
        &image[image.len().saturating_sub(30)..],
        run.error()
    );
    run
}

#[test]
fn broken_layouts_and_manifests_are_refused_by_name() {
    let stack = Stack::start();
    stack.moto.create_repository(CI_ACCOUNT, "app", false);
    let dir = tempfile::tempdir().unwrap();
    let at = |name: &str| -> PathBuf { dir.path().join(name) };
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let layer = random_bytes(3, 4096);

    // The index names a manifest the layout does not hold.
    let good = manifest_text(config, &layer, "");
    let missing = raw_layout(
        &at("missing"),
        descriptor(MANIFEST, &good),
        &[config, &layer],
    );
    let run = push(&stack, &missing);
    assert_refused(&stack, &run, 1, "image:");
    assert!(run.error().contains(&sha256(&good)), "{}", run.error());

    // A manifest over ECR's 4 MiB.
    let padding = format!(r#","annotations":{{"pad":"{}"}}"#, "x".repeat(5 << 20));
    let huge = manifest_text(config, &layer, &padding);
    let image = raw_layout(
        &at("huge"),
        descriptor(MANIFEST, &huge),
        &[&huge, config, &layer],
    );
    assert_refused(&stack, &push(&stack, &image), 1, "image: manifest");

    // Duplicate keys: two parsers could read two different images from it.
    let twice = manifest_text(config, &layer, r#","layers":[]"#);
    let image = raw_layout(
        &at("twice"),
        descriptor(MANIFEST, &twice),
        &[&twice, config, &layer],
    );
    assert_refused(&stack, &push(&stack, &image), 1, "image:");

    // Nesting deeper than any manifest has.
    let deep = format!(
        r#","annotations":{{"x":"y"}},"z":{}{}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let deep = manifest_text(config, &layer, &deep);
    let image = raw_layout(
        &at("deep"),
        descriptor(MANIFEST, &deep),
        &[&deep, config, &layer],
    );
    assert_refused(&stack, &push(&stack, &image), 1, "image:");

    // An index that lists itself: its own descriptor, so not its own digest.
    let fake = "sha256:".to_owned() + &"ab".repeat(32);
    let looping = format!(
        r#"{{"schemaVersion":2,"mediaType":"{INDEX}","manifests":[{{"mediaType":"{INDEX}","digest":"{fake}","size":180}}]}}"#
    );
    let blobs = at("loop/blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::write(blobs.join(&fake[7..]), &looping).unwrap();
    let image = raw_layout(
        &at("loop"),
        serde_json::json!({"mediaType": INDEX, "digest": fake, "size": looping.len()}),
        &[],
    );
    assert_refused(&stack, &push(&stack, &image), 1, "image:");

    // Digests with another algorithm, or the wrong length.
    for digest in [
        format!("md5:{}", "0".repeat(32)),
        "sha256:abcd".to_owned(),
        format!("sha256:{}", "G".repeat(64)),
    ] {
        let image = raw_layout(
            &at(&format!("digest-{}", digest.len())),
            serde_json::json!({"mediaType": MANIFEST, "digest": digest, "size": 10}),
            &[],
        );
        let run = push(&stack, &image);
        assert_refused(&stack, &run, 1, "image:");
    }
}

/// A tar entry: its name, kind, and body or link target.
type TarEntry<'a> = (&'a str, tar::EntryType, &'a [u8]);

/// Writes a tar of these entries, names set raw so the tar crate's own checks do not
/// stop the hostile ones.
fn hostile_tar(path: &Path, entries: &[TarEntry]) -> PathBuf {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, kind, body) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(*kind);
        header.set_mode(0o644);
        header.set_mtime(0);
        let bytes = name.as_bytes();
        header.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
        if *kind == tar::EntryType::Regular {
            header.set_size(body.len() as u64);
            header.set_cksum();
            builder.append(&header, *body).unwrap();
        } else {
            header.as_old_mut().linkname[..body.len()].copy_from_slice(body);
            header.set_size(0);
            header.set_cksum();
            builder.append(&header, &[][..]).unwrap();
        }
    }
    std::fs::write(path, builder.into_inner().unwrap()).unwrap();
    path.to_owned()
}

#[test]
fn hostile_archives_are_refused_by_name() {
    let stack = Stack::start();
    stack.moto.create_repository(CI_ACCOUNT, "app", false);
    let dir = tempfile::tempdir().unwrap();
    let manifest = br#"[{"Config":"c.json","RepoTags":["a:1"],"Layers":["l/layer.tar"]}]"#;
    let regular = tar::EntryType::Regular;
    let cases: Vec<(&str, Vec<TarEntry>)> = vec![
        (
            "dotdot",
            vec![
                ("manifest.json", regular, manifest),
                ("../escape", regular, b"x"),
            ],
        ),
        (
            "absolute",
            vec![
                ("manifest.json", regular, manifest),
                ("/etc/escape", regular, b"x"),
            ],
        ),
        (
            "symlink",
            vec![
                ("manifest.json", regular, manifest),
                ("c.json", regular, b"{}"),
                ("l/layer.tar", tar::EntryType::Symlink, b"../../etc/passwd"),
            ],
        ),
        (
            "hardlink",
            vec![
                ("manifest.json", regular, manifest),
                ("c.json", regular, b"{}"),
                ("l/layer.tar", tar::EntryType::Link, b"../outside"),
            ],
        ),
    ];
    for (name, entries) in &cases {
        let archive = hostile_tar(&dir.path().join(format!("{name}.tar")), entries);
        let run = push(&stack, &format!("docker-archive:{}", archive.display()));
        assert_refused(&stack, &run, 1, "image:");
        assert!(
            run.error().contains(&archive.display().to_string()),
            "{name}: {}",
            run.error()
        );
    }

    // A good archive cut short in the middle of a layer.
    let layers = vec![layer_tar("bin/app", &random_bytes(5, 64 * 1024))];
    let good = write_classic_archive(&dir.path().join("good.tar"), &["app:v1"], &layers);
    let bytes = std::fs::read(&good.path).unwrap();
    let cut = dir.path().join("cut.tar");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let run = push(&stack, &format!("docker-archive:{}", cut.display()));
    assert_refused(&stack, &run, 1, "image:");
    assert!(run.error().contains("it is cut short"), "{}", run.error());
}

#[test]
fn a_gzip_bomb_is_never_inflated() {
    // 1 GiB of zeros in about a megabyte of gzip, as a layer already compressed:
    // `compression` recompresses only uncompressed layers, so it goes as it is.
    let stack = Stack::start();
    stack.moto.create_repository(CI_ACCOUNT, "app", false);
    // gzip members may follow one another: one MiB of zeros, 1024 times.
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(&vec![0u8; 1 << 20]).unwrap();
    let member = encoder.finish().unwrap();
    let bomb = member.repeat(1024);
    assert!(bomb.len() < 2 << 20);
    let dir = tempfile::tempdir().unwrap();
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{MANIFEST}","config":{},"layers":[{}]}}"#,
        descriptor("application/vnd.oci.image.config.v1+json", config),
        descriptor("application/vnd.oci.image.layer.v1.tar+gzip", &bomb),
    );
    let image = raw_layout(
        dir.path(),
        descriptor(MANIFEST, manifest.as_bytes()),
        &[manifest.as_bytes(), config, &bomb],
    );

    for compression in ["zstd", "gzip"] {
        let run = stack
            .action()
            .input("image", &image)
            .input("repository", "app")
            .input("compression", compression)
            .input("tags", compression)
            .run();
        assert!(run.ok(), "{}", run.log());
        // The manifest is the source's: nothing was inflated or rewritten.
        assert_eq!(run.outputs["digest"], sha256(manifest.as_bytes()));
    }
    let available = stack
        .moto
        .available_blobs(CI_ACCOUNT, "app", &[sha256(&bomb)]);
    assert_eq!(available.get(&sha256(&bomb)), Some(&(bomb.len() as i64)));
}

#[test]
fn inputs_aws_would_refuse_are_refused_before_any_call() {
    let stack = Stack::start();
    let dir = tempfile::tempdir().unwrap();
    let layout = write_layout(dir.path(), "v1", &[random_bytes(9, 1024)]);
    let cases: Vec<(&str, String, &str)> = vec![
        ("tags", "v1 beta".into(), "tags:"),
        ("tags", "-v1".into(), "tags:"),
        ("tags", "x".repeat(301), "tags:"),
        ("repository", "Team/App".into(), "repository:"),
        ("repository", "team//app".into(), "repository:"),
        ("aws-region", "moon-base-1".into(), "aws-region:"),
        (
            "role-to-assume",
            "arn:aws-cn:iam::111111111111:role/ci".into(),
            "role-to-assume:",
        ),
        (
            "role-to-assume",
            "arn:aws:iam::1111:role/ci".into(),
            "role-to-assume:",
        ),
        (
            "role-session-name",
            "bad name*".into(),
            "role-session-name:",
        ),
        (
            "cross-account-role",
            "arn:aws-us-gov:iam::222222222222:role/p".into(),
            "cross-account-role:",
        ),
        (
            "tags",
            (0..1001)
                .map(|i| format!("t{i}"))
                .collect::<Vec<_>>()
                .join(","),
            "tags:",
        ),
    ];
    for (input, value, starts) in cases {
        stack.recorder.forget();
        let run = stack
            .action()
            .input("image", &layout.reference("v1"))
            .input("repository", "app")
            .input(input, &value)
            .run();
        eprintln!("{input}={}: {}", &value[..value.len().min(40)], run.error());
        assert_refused(&stack, &run, 2, starts);
        assert!(
            stack.recorder.calls().is_empty(),
            "{input}: a call was made"
        );
        assert!(
            stack.oidc.tokens().is_empty(),
            "{input}: a token was asked for"
        );
    }
}

#[test]
fn a_thousand_tags_are_set() {
    let stack = Stack::start();
    stack.moto.create_repository(CI_ACCOUNT, "app", false);
    let dir = tempfile::tempdir().unwrap();
    let layout = write_layout(dir.path(), "v1", &[random_bytes(10, 1024)]);
    let tags: Vec<String> = (0..1000).map(|i| format!("t{i}")).collect();
    let run = stack
        .action()
        .input("image", &layout.reference("v1"))
        .input("repository", "app")
        .input("tags", &tags.join("\n"))
        .run();
    assert!(run.ok(), "{}", run.log());
    for tag in ["t0", "t500", "t999"] {
        let (digest, _) = stack.moto.manifest(CI_ACCOUNT, "app", tag).unwrap();
        assert_eq!(digest, layout.digest);
    }
    assert_eq!(stack.recorder.calls_to("PutImage").len(), 1000);
}

/// A token endpoint that answers nothing for as long as the client waits.
fn silent_endpoint() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                    line.clear();
                }
            });
        }
    });
    port
}

#[test]
fn a_broken_token_endpoint_is_retried_then_named() {
    let stack = Stack::start();
    let dir = tempfile::tempdir().unwrap();
    let layout = write_layout(dir.path(), "v1", &[random_bytes(11, 1024)]);
    let html = serve_canned("200 OK", "text/html", "<html>sign in</html>");
    let failing = serve_canned("503 Service Unavailable", "text/plain", "unavailable");
    let cases = [
        (html, "not JSON"),
        (failing, "503"),
        (silent_endpoint(), "timed out"),
    ];
    for (port, says) in cases {
        stack.recorder.forget();
        let run = stack
            .action()
            .env(
                "ACTIONS_ID_TOKEN_REQUEST_URL",
                &format!("http://127.0.0.1:{port}/token"),
            )
            .env("ECR_PUSH_REQUEST_TIMEOUT_SECONDS", "1")
            .input("image", &layout.reference("v1"))
            .input("repository", "app")
            .run();
        assert_refused(&stack, &run, 1, "token request");
        assert!(run.error().contains(says), "{says}: {}", run.error());
        assert!(stack.recorder.calls().is_empty());
    }
}

/// The mistakes of a new user's first hour (issue 14): each gets one line that names
/// the input and the fix, exit 2, and nothing started, in Actions (`INPUT_*`) and on
/// the command line alike. Every line is asserted whole: it is what the user reads.
#[test]
fn first_hour_mistakes_each_name_their_fix() {
    let stack = Stack::start();
    let dir = tempfile::tempdir().unwrap();
    let layout = write_layout(&dir.path().join("layout"), "v1", &[random_bytes(41, 2048)]);
    let layout_dir = dir.path().join("layout");
    let archive = dir.path().join("image.tar");
    let saved = dir.path().join("saved.tar");
    for (to, what) in [
        (format!("oci-archive:{}", archive.display()), "oci-archive"),
        (
            format!("docker-archive:{}:app:v1", saved.display()),
            "docker-archive",
        ),
    ] {
        let status = std::process::Command::new("skopeo")
            .args(["copy", "-q", &layout.reference("v1"), &to])
            .status()
            .expect("skopeo runs");
        assert!(status.success(), "skopeo copy to {what}");
    }
    let (l, a, s) = (
        layout_dir.display().to_string(),
        archive.display().to_string(),
        saved.display().to_string(),
    );
    let cwd = std::env::current_dir().unwrap().display().to_string();
    let references = "use oci:DIR[:REF], oci-archive:FILE[:REF], docker-archive:FILE[:NAME:TAG], docker://HOST/REPO[:TAG] or NAME[:TAG] (an image in the Docker engine)";
    // (inputs, the line)
    let cases: Vec<(Vec<(&str, String)>, String)> = vec![
        (
            vec![("image", format!("oci:{a}"))],
            format!("image: `oci:{a}` reads an OCI layout folder, and {a} is an OCI archive (a tar of an OCI layout); write oci-archive:{a}"),
        ),
        (
            vec![("image", format!("oci-archive:{l}"))],
            format!("image: `oci-archive:{l}` reads an OCI archive (a tar of an OCI layout), and {l} is a folder with an OCI layout; write oci:{l}"),
        ),
        (
            vec![("image", format!("docker-archive:{l}:v1"))],
            format!("image: `docker-archive:{l}:v1` reads a docker save tar, and {l} is a folder with an OCI layout; write oci:{l}:v1"),
        ),
        (
            vec![("image", format!("oci-archive:{s}"))],
            format!("image: `oci-archive:{s}` reads an OCI archive (a tar of an OCI layout), and {s} is a docker save tar (manifest.json); write docker-archive:{s}"),
        ),
        (
            vec![("image", "oci:".into())],
            "image: `oci:` is not a valid image reference: it names no path; write oci:DIR[:REF]".into(),
        ),
        (
            vec![("image", "docker://localhost:5000/App:v1".into())],
            "image: `docker://localhost:5000/App:v1` is not a valid image reference: invalid reference format; write docker://HOST/REPO:TAG or docker://HOST/REPO@sha256:DIGEST".into(),
        ),
        (
            vec![("image", "OCI:layout".into())],
            format!("image: `OCI:layout` is not a supported image reference; {references}"),
        ),
        (
            vec![("image", "oci:no/such/layout:v1".into())],
            format!("image: nothing is at no/such/layout (relative to {cwd}); check the path"),
        ),
        (
            vec![("platforms", "linux/s390x".into())],
            format!("platforms: {} is a single-platform manifest, not an index; leave platforms empty", layout.digest),
        ),
        (
            vec![("timeout-minutes", "-1".into())],
            "timeout-minutes: -1 is out of range; use more than 0 and at most 360 minutes".into(),
        ),
        (
            vec![("concurrency", "-1".into())],
            "concurrency: -1 is out of range; use 1 to 16".into(),
        ),
        (
            vec![("registry", "public.ecr.aws".into())],
            "registry: public.ecr.aws is ECR Public, whose own API (ecr-public, in us-east-1) ecr-push does not speak yet; push there with docker push or crane after aws ecr-public get-login-password --region us-east-1 | docker login --username AWS --password-stdin public.ecr.aws".into(),
        ),
        (
            vec![("repository", "222222222222.dkr.ecr.us-east-1.amazonaws.com/team/app:v1".into())],
            "repository: `222222222222.dkr.ecr.us-east-1.amazonaws.com/team/app:v1` is a registry and a repository; give repository: team/app and registry: 222222222222.dkr.ecr.us-east-1.amazonaws.com, and the tag as tags: v1".into(),
        ),
        (
            vec![("repository", "https://222222222222.dkr-ecr.us-east-1.on.aws/app".into())],
            "repository: `https://222222222222.dkr-ecr.us-east-1.on.aws/app` is a registry and a repository; give repository: app and registry: 222222222222.dkr-ecr.us-east-1.on.aws".into(),
        ),
    ];
    for (inputs, line) in cases {
        let value = |name: &str, default: &str| {
            inputs
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(default.to_owned(), |(_, v)| v.clone())
        };
        let image = value("image", &layout.reference("v1"));
        let repository = value("repository", "app");
        // In Actions: the inputs as the runner passes them.
        let mut action = stack
            .action()
            .input("image", &image)
            .input("repository", &repository);
        for (name, v) in inputs
            .iter()
            .filter(|(n, _)| !["image", "repository"].contains(n))
        {
            action = action.input(name, v);
        }
        stack.recorder.forget();
        let run = action.run();
        assert_refused(&stack, &run, 2, &line);
        assert_eq!(run.error(), line, "in Actions");
        assert!(stack.recorder.calls().is_empty(), "{line}: a call was made");
        // On the command line: the same flags, the same line.
        let mut args = vec![
            "push".to_owned(),
            "--image".into(),
            image,
            "--repository".into(),
            repository,
            "--aws-region".into(),
            REGION.into(),
        ];
        for (name, v) in inputs
            .iter()
            .filter(|(n, _)| !["image", "repository"].contains(n))
        {
            args.push(format!("--{name}"));
            args.push(v.clone());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = Action::bare(&stack.recorder).args(&args).run();
        assert_eq!(run.code, Some(2), "{}", run.log());
        assert_eq!(run.error(), line, "on the command line");
    }

    // Parse errors in Actions are shown whole, by input name.
    let run = stack.action().run();
    assert_eq!(run.code, Some(2));
    assert_eq!(
        run.error(),
        "the following required inputs were not provided: image, repository"
    );
    let run = stack
        .action()
        .input("image", &layout.reference("v1"))
        .input("repository", "app")
        .input("create-repository", "yes")
        .run();
    assert_eq!(run.code, Some(2));
    assert_eq!(
        run.error(),
        "invalid value 'yes' for 'create-repository'; [possible values: true, false]"
    );
    // A `run:` step's own flags stay flags, and keep clap's tip.
    let run = Action::bare(&stack.recorder)
        .env("GITHUB_ACTIONS", "true")
        .args(&["push", "--image", "oci:x", "--repostory", "app"])
        .run();
    assert_eq!(run.code, Some(2));
    assert_eq!(
        run.error(),
        "unexpected argument '--repostory' found; tip: a similar argument exists: '--repository'"
    );
    // On the command line a negative number reaches the check that names it.
    let run = Action::bare(&stack.recorder)
        .args(&[
            "push",
            "--image",
            "oci:x",
            "--repository",
            "app",
            "--role-duration-seconds",
            "-5",
        ])
        .run();
    assert_eq!(
        run.error(),
        "role-duration-seconds: -5 is out of range; STS accepts 900 to 43200"
    );

    // An empty `tags` is the default the help documents: the image's REF.
    let run = Action::bare(&stack.recorder)
        .env("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
        .env(
            "AWS_SECRET_ACCESS_KEY",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        )
        .args(&[
            "push",
            "--image",
            &layout.reference("v1"),
            "--repository",
            "first-hour",
            "--tags",
            "",
            "--aws-region",
            REGION,
            "--create-repository",
        ])
        .run();
    assert!(run.ok(), "{}", run.log());
    // moto's own account, for keys it did not issue.
    assert!(
        stack
            .moto
            .manifest("123456789012", "first-hour", "v1")
            .is_some()
    );
}

/// Credentials that are missing, an STS that does not answer and credentials STS
/// refuses are three lines, each naming the call, the endpoint and what to do.
#[test]
fn credential_failures_name_their_cause() {
    let stack = Stack::start();
    let dir = tempfile::tempdir().unwrap();
    let layout = write_layout(dir.path(), "v1", &[random_bytes(43, 512)]);
    let push = |action: Action| {
        action
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .args(&[
                "push",
                "--image",
                &layout.reference("v1"),
                "--repository",
                "app",
                "--aws-region",
                REGION,
            ])
            .run()
    };
    let keys = |action: Action| {
        action.env("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE").env(
            "AWS_SECRET_ACCESS_KEY",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        )
    };

    let run = push(Action::bare(&stack.recorder));
    assert_eq!(run.code, Some(1), "{}", run.log());
    assert_eq!(
        run.error(),
        "AWS credentials: none found (not in the environment, the shared config and credentials files, a web identity token file, the ECS container endpoint or the instance metadata); set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or role-to-assume in a GitHub Actions job"
    );
    assert_eq!(
        run.stderr.lines().filter(|l| l.contains("error")).count(),
        1,
        "one line, not the SDK's list: {}",
        run.stderr
    );

    let silent = silent_endpoint();
    let run = push(
        keys(Action::bare(&stack.recorder))
            .env("AWS_ENDPOINT_URL", &format!("http://127.0.0.1:{silent}"))
            .env("ECR_PUSH_REQUEST_TIMEOUT_SECONDS", "1"),
    );
    assert_eq!(run.code, Some(1), "{}", run.log());
    let error = run.error();
    assert!(
        error.starts_with(&format!(
            "STS GetCallerIdentity: no answer from http://127.0.0.1:{silent}: "
        )),
        "{error}"
    );
    assert!(
        error.ends_with(
            "; check the network, and AWS_ENDPOINT_URL or AWS_ENDPOINT_URL_STS if one is set"
        ),
        "{error}"
    );

    stack.recorder.xml_error_once(
        "GetCallerIdentity",
        "403 Forbidden",
        "InvalidClientTokenId",
        "The security token included in the request is invalid.",
    );
    let run = push(keys(Action::bare(&stack.recorder)));
    assert_eq!(run.code, Some(1), "{}", run.log());
    assert_eq!(
        run.error(),
        "STS GetCallerIdentity: refused the credentials: InvalidClientTokenId: The security token included in the request is invalid.; the credentials are wrong, expired or of another partition: renew them"
    );
}

/// Help for the person at the terminal: flags under headings, examples, exit codes and
/// the environment read; the examples' flags are real ones.
#[test]
fn help_has_headings_examples_exit_codes_and_environment() {
    let help = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_ecr-push"))
            .args(args)
            .output()
            .unwrap();
        assert!(output.status.success(), "{args:?}");
        String::from_utf8(output.stdout).unwrap()
    };
    let push = help(&["push", "--help"]);
    for section in [
        "Image:",
        "Destination:",
        "Credentials:",
        "Limits:",
        "Output:",
        "Examples:",
        "Exit codes:",
        "Environment:",
    ] {
        assert!(
            push.lines().any(|l| l == section),
            "{section} missing:\n{push}"
        );
    }
    for variable in [
        "AWS_REGION",
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL_ECR",
        "AWS_USE_FIPS_ENDPOINT",
        "DOCKER_HOST",
        "RUNNER_TEMP",
    ] {
        assert!(push.contains(variable), "{variable}");
    }
    assert!(push.contains("  2  an input is wrong"));
    let short = help(&["push", "-h"]);
    assert!(short.contains("Examples:") && short.contains("--help also lists the exit codes"));
    // Every flag an example uses is one the command has.
    let flags = |text: &str| -> Vec<String> {
        text.split_whitespace()
            .filter(|w| w.starts_with("--") && w.len() > 2)
            .map(|w| {
                w.trim_end_matches(['\\', ','])
                    .split('=')
                    .next()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    for (command, text) in [
        (&["push", "--help"][..], push.clone()),
        (
            &["policy", "generate", "--help"][..],
            help(&["policy", "generate", "--help"]),
        ),
        (
            &["policy", "check", "--help"][..],
            help(&["policy", "check", "--help"]),
        ),
        (
            &["policy", "lint", "--help"][..],
            help(&["policy", "lint", "--help"]),
        ),
    ] {
        let (options, examples) = text.split_once("Examples:").expect("examples");
        let known = flags(options);
        // The ecr-push command lines of the examples, with their continuations.
        let mut commands = String::new();
        let mut continued = false;
        for line in examples.lines() {
            if continued || line.trim_start().starts_with("ecr-push ") {
                commands.push_str(line.split(" # ").next().unwrap_or_default());
                commands.push('\n');
            }
            continued =
                (continued || line.trim_start().starts_with("ecr-push ")) && line.ends_with('\\');
        }
        assert!(!commands.is_empty(), "{command:?}: no example command");
        for flag in flags(&commands) {
            assert!(
                known.contains(&flag),
                "{command:?}: the example's {flag} is no flag"
            );
        }
    }
    assert!(
        help(&["policy", "generate", "--help"])
            .contains("--region <REGION>\n          The region of the repositories")
    );
}
