//! End-to-end pushes: the binary, run as the Actions runner runs it, against moto (STS
//! and ECR) and a local ID-token endpoint. Each test starts its own stack.

use base64::Engine as _;

use crate::support::*;

const MIB: usize = 1024 * 1024;

fn small_image(dir: &std::path::Path, seed: u64) -> Layout {
    write_layout(
        dir,
        "v1",
        &[
            random_bytes(seed, 300 * 1024),
            empty_layer(),
            random_bytes(seed + 1, 7000),
        ],
    )
}

/// The image in moto is the layout's: same manifest bytes and digest, every blob there
/// with its size.
fn assert_landed(stack: &Stack, account: &str, repository: &str, tag: &str, layout: &Layout) {
    let (digest, manifest) = stack
        .moto
        .manifest(account, repository, tag)
        .unwrap_or_else(|| panic!("tag {tag} not in {account}/{repository}"));
    assert_eq!(digest, layout.digest);
    assert_eq!(
        manifest.as_bytes(),
        layout.manifest.as_slice(),
        "manifest re-serialised"
    );
    assert_eq!(sha256(manifest.as_bytes()), layout.digest);
    let available = stack
        .moto
        .available_blobs(account, repository, &layout.blob_digests());
    for blob in std::iter::once(&layout.config).chain(&layout.layers) {
        assert_eq!(
            available.get(&blob.digest),
            Some(&(blob.size as i64)),
            "{}",
            blob.digest
        );
    }
}

#[test]
fn single_account_push_lands_with_exact_digest_and_outputs() {
    let stack = Stack::start();
    stack
        .moto
        .create_repository(CI_ACCOUNT, "secure-flask", false);
    let dir = tempfile::tempdir().unwrap();
    let layout = small_image(dir.path(), 1);

    let run = stack
        .action()
        .input("image", &layout.reference("v1"))
        .input("repository", "secure-flask")
        .input("tags", "abc123\nlatest")
        .run();

    assert!(run.ok(), "{}", run.log());
    assert_landed(&stack, CI_ACCOUNT, "secure-flask", "abc123", &layout);
    assert_landed(&stack, CI_ACCOUNT, "secure-flask", "latest", &layout);
    let registry = format!("{CI_ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com");
    assert_eq!(run.outputs["registry"], registry);
    assert_eq!(run.outputs["digest"], layout.digest);
    assert_eq!(
        run.outputs["image-uri"],
        format!("{registry}/secure-flask@{}", layout.digest)
    );
    assert_eq!(run.outputs["tags"], "abc123,latest");
    assert!(run.summary.contains(&layout.digest), "{}", run.summary);
    assert!(run.stdout.contains("::group::Credentials"), "{}", run.log());
    // The token was asked for with the default audience, and used once.
    assert_eq!(stack.oidc.audiences(), ["sts.amazonaws.com"]);
    let web = stack.recorder.calls_to("AssumeRoleWithWebIdentity");
    assert_eq!(web.len(), 1);
    assert_eq!(web[0].form("RoleArn").as_deref(), Some(PUSH_ROLE));
    assert_eq!(
        web[0].form("WebIdentityToken"),
        stack.oidc.tokens().first().cloned()
    );
    // No registry login is needed (nor its `*` permission) without docker-login.
    assert!(stack.recorder.calls_to("GetAuthorizationToken").is_empty());
    // One PutImage per tag, with the digest and media type.
    let puts = stack.recorder.calls_to("PutImage");
    assert_eq!(puts.len(), 2);
    for put in &puts {
        let body = put.json();
        assert_eq!(body["imageDigest"], layout.digest.as_str());
        assert_eq!(
            body["imageManifestMediaType"],
            "application/vnd.oci.image.manifest.v1+json"
        );
        assert_eq!(body["registryId"], CI_ACCOUNT);
    }
}

#[test]
fn cross_account_push_lands_in_the_registry_account() {
    let stack = Stack::start();
    stack
        .moto
        .create_repository(REGISTRY_ACCOUNT, "secure-flask", false);
    let dir = tempfile::tempdir().unwrap();
    let layout = small_image(dir.path(), 2);

    let run = stack
        .action()
        .input("image", &layout.reference("v1"))
        .input("repository", "secure-flask")
        .input("cross-account-role", PUBLISHER_ROLE)
        .input("cross-account-external-id", "release-pipeline")
        .input("role-duration-seconds", "7200")
        .input("session-tags", "true")
        .run();

    assert!(run.ok(), "{}", run.log());
    assert_landed(&stack, REGISTRY_ACCOUNT, "secure-flask", "v1", &layout);
    assert_eq!(
        run.outputs["registry"],
        format!("{REGISTRY_ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com")
    );
    let hop = stack.recorder.calls_to("AssumeRole");
    assert_eq!(hop.len(), 1);
    assert_eq!(hop[0].form("RoleArn").as_deref(), Some(PUBLISHER_ROLE));
    assert_eq!(
        hop[0].form("ExternalId").as_deref(),
        Some("release-pipeline")
    );
    // Role chaining caps the session at an hour, whatever was asked.
    assert_eq!(hop[0].form("DurationSeconds").as_deref(), Some("3600"));
    let web = stack.recorder.calls_to("AssumeRoleWithWebIdentity");
    assert_eq!(web[0].form("DurationSeconds").as_deref(), Some("7200"));
    // Session tags go on this hop only, sanitised for STS.
    let tags: Vec<(String, String)> = (1..=6)
        .filter_map(|i| {
            Some((
                hop[0].form(&format!("Tags.member.{i}.Key"))?,
                hop[0].form(&format!("Tags.member.{i}.Value"))?,
            ))
        })
        .collect();
    assert!(
        tags.contains(&("Repository".into(), "octo-org/octo-repo".into())),
        "{tags:?}"
    );
    assert!(
        tags.contains(&("Workflow".into(), "release _prod_".into())),
        "{tags:?}"
    );
    assert_eq!(tags.len(), 6, "{tags:?}");
    assert!(web[0].form("Tags.member.1.Key").is_none());
    // Each hop is in the log's Credentials group: the role, the session, the account
    // the credentials landed in, and the token's sub and aud (never the token).
    let group = run
        .stdout
        .split("::group::Credentials")
        .nth(1)
        .and_then(|g| g.split("::endgroup::").next())
        .unwrap_or_default()
        .to_owned();
    assert!(group.contains(&format!("{PUSH_ROLE}: assumed with the job's token (sub `{SUB}`, aud `sts.amazonaws.com`) as session GitHubActions, in account {CI_ACCOUNT}")), "{}", run.log());
    assert!(group.contains(&format!("{PUBLISHER_ROLE}: assumed with those credentials as session GitHubActions with tags Repository, Commit, Actor, Workflow, Branch, RunId, in account {REGISTRY_ACCOUNT}")), "{}", run.log());
    assert!(
        !run.shows(&stack.oidc.tokens()[0]),
        "the token is never shown"
    );
    // The CI account got nothing.
    assert!(
        stack
            .moto
            .manifest(CI_ACCOUNT, "secure-flask", "v1")
            .is_none()
    );
}

#[test]
fn repush_uploads_no_blob_bytes() {
    let stack = Stack::start();
    stack.moto.create_repository(CI_ACCOUNT, "app", false);
    let dir = tempfile::tempdir().unwrap();
    let layout = small_image(dir.path(), 3);
    let push = |tags: &str| {
        stack
            .action()
            .input("image", &layout.reference("v1"))
            .input("repository", "app")
            .input("tags", tags)
            .run()
    };

    let first = push("v1,stable");
    assert!(first.ok(), "{}", first.log());
    let uploads_after_first = stack.recorder.calls_to("UploadLayerPart").len();
    assert_eq!(
        uploads_after_first, 4,
        "config and three layers, one part each"
    );

    let second = push("v1,stable");
    assert!(second.ok(), "{}", second.log());
    assert_eq!(stack.recorder.calls_to("InitiateLayerUpload").len(), 4);
    assert_eq!(
        stack.recorder.calls_to("UploadLayerPart").len(),
        uploads_after_first
    );
    assert_eq!(stack.recorder.calls_to("CompleteLayerUpload").len(), 4);
    assert!(
        second.summary.contains("| Uploaded | 0 B in 0 blobs |"),
        "{}",
        second.summary
    );
    assert!(
        second
            .summary
            .contains("| Tags already in place | `v1`, `stable` |"),
        "{}",
        second.summary
    );
    // The re-push cost one BatchCheckLayerAvailability and one BatchGetImage for both
    // tags, and no PutImage (10 a second per account), as counted by the tool and as
    // seen on the wire.
    assert!(
        second
            .summary
            .contains("| Requests | BatchCheckLayerAvailability 1, BatchGetImage 1 |"),
        "{}",
        second.summary
    );
    assert_eq!(
        stack.recorder.calls_to("BatchCheckLayerAvailability").len(),
        2
    );
    assert_eq!(stack.recorder.calls_to("PutImage").len(), 2);
    assert!(
        first.summary.contains(
            "| Requests | BatchCheckLayerAvailability 1, CompleteLayerUpload 4, InitiateLayerUpload 4, PutImage 2, UploadLayerPart 4 |"
        ),
        "{}",
        first.summary
    );
    assert_landed(&stack, CI_ACCOUNT, "app", "v1", &layout);

    // A new tag on the same image: one PutImage, for that tag only.
    let third = push("stable,v2");
    assert!(third.ok(), "{}", third.log());
    assert!(
        third
            .summary
            .contains("| Requests | BatchCheckLayerAvailability 1, BatchGetImage 1, PutImage 1 |"),
        "{}",
        third.summary
    );
    let put = stack.recorder.calls_to("PutImage");
    assert_eq!(put.len(), 3);
    assert_eq!(put[2].json()["imageTag"], "v2");
    assert_landed(&stack, CI_ACCOUNT, "app", "v2", &layout);
}

#[test]
fn multi_part_layer_is_sent_in_contiguous_parts_within_ecr_limits() {
    let stack = Stack::start();
    stack.moto.create_repository(CI_ACCOUNT, "big", false);
    let dir = tempfile::tempdir().unwrap();
    let big = random_bytes(4, 26 * MIB + 12345);
    let layout = write_layout(dir.path(), "v1", &[big.clone(), random_bytes(5, 100)]);

    let run = stack
        .action()
        .input("image", &layout.reference("v1"))
        .input("repository", "big")
        .run();

    assert!(run.ok(), "{}", run.log());
    assert_landed(&stack, CI_ACCOUNT, "big", "v1", &layout);
    let big_digest = &layout.layers[0].digest;
    let complete = stack
        .recorder
        .calls_to("CompleteLayerUpload")
        .into_iter()
        .find(|c| c.json()["layerDigests"][0] == big_digest.as_str())
        .expect("CompleteLayerUpload sent the layer's digest");
    let upload_id = complete.json()["uploadId"].as_str().unwrap().to_owned();
    let parts: Vec<serde_json::Value> = stack
        .recorder
        .calls_to("UploadLayerPart")
        .iter()
        .map(|c| c.json())
        .filter(|p| p["uploadId"] == upload_id.as_str())
        .collect();
    assert_eq!(parts.len(), 3, "26 MiB in parts of moto's 10 MiB partSize");
    let mut next_first_byte = 0;
    let mut sent = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(part["layerPartBlob"].as_str().unwrap())
            .unwrap();
        assert_eq!(part["partFirstByte"], next_first_byte);
        assert_eq!(
            part["partLastByte"],
            next_first_byte + bytes.len() as u64 - 1
        );
        assert!(bytes.len() <= 20_971_520, "part {i} over 20 MiB");
        if i + 1 < parts.len() {
            assert!(bytes.len() >= 5 * MIB, "part {i} under 5 MiB");
        }
        next_first_byte += bytes.len() as u64;
        sent.extend_from_slice(&bytes);
    }
    assert!(sent == big, "the parts concatenate to the layer");
}

#[test]
fn corrupt_blob_exits_non_zero_and_leaves_no_tag() {
    let stack = Stack::start();
    stack.moto.create_repository(CI_ACCOUNT, "app", false);
    let dir = tempfile::tempdir().unwrap();
    let layout = write_layout(
        dir.path(),
        "v1",
        &[random_bytes(6, 11 * MIB), random_bytes(7, 1000)],
    );
    // Flip one byte near the end of the big layer: only the last part shows it.
    let path = layout.blob_path(&layout.layers[0].digest);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() - 10;
    bytes[at] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();

    let run = stack
        .action()
        .input("image", &layout.reference("v1"))
        .input("repository", "app")
        .run();

    assert_eq!(run.code, Some(1), "{}", run.log());
    let error = run.error();
    assert!(
        error.contains("corrupt") && error.contains(&layout.layers[0].digest),
        "{error}"
    );
    assert!(stack.recorder.calls_to("PutImage").is_empty());
    assert!(
        !stack
            .recorder
            .calls_to("CompleteLayerUpload")
            .iter()
            .any(|c| c.json()["layerDigests"][0] == layout.layers[0].digest.as_str()),
        "the corrupt layer was completed"
    );
    assert!(stack.moto.manifest(CI_ACCOUNT, "app", "v1").is_none());
    assert!(!run.stderr.contains("panicked") && !run.stderr.contains("backtrace"));
}

#[test]
fn missing_id_token_variables_ask_for_the_permission() {
    let stack = Stack::start();
    let dir = tempfile::tempdir().unwrap();
    let layout = small_image(dir.path(), 8);

    let run = stack
        .action()
        .without("ACTIONS_ID_TOKEN_REQUEST_URL")
        .without("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
        .input("image", &layout.reference("v1"))
        .input("repository", "app")
        .run();

    assert_eq!(run.code, Some(1), "{}", run.log());
    assert!(
        run.error().contains("permissions: id-token: write"),
        "{}",
        run.log()
    );
    assert!(run.stdout.contains("::error"), "{}", run.log());
    assert!(
        stack.recorder.calls().is_empty(),
        "no AWS call without a token"
    );
}

#[test]
fn invalid_role_arn_is_named_before_any_network_call() {
    let stack = Stack::start();
    let dir = tempfile::tempdir().unwrap();
    let layout = small_image(dir.path(), 9);

    let run = stack
        .action()
        .input("image", &layout.reference("v1"))
        .input("repository", "app")
        .input("role-to-assume", "arn:aws:iam::111111111111:user/ci")
        .run();

    assert_eq!(run.code, Some(2), "{}", run.log());
    assert!(
        run.error().starts_with(
            "role-to-assume: `arn:aws:iam::111111111111:user/ci` is not an IAM role ARN"
        ),
        "{}",
        run.log()
    );
    assert_eq!(
        run.stdout
            .lines()
            .filter(|l| l.starts_with("::error"))
            .count(),
        1
    );
    assert!(stack.oidc.audiences().is_empty());
    assert!(stack.recorder.calls().is_empty());
}

#[test]
fn missing_repository_is_explained_then_created_on_request() {
    let stack = Stack::start();
    let dir = tempfile::tempdir().unwrap();
    let layout = small_image(dir.path(), 10);
    let push = |create: &str| {
        stack
            .action()
            .input("image", &layout.reference("v1"))
            .input("repository", "team/new-app")
            .input("create-repository", create)
            .run()
    };

    let refused = push("false");
    assert_eq!(refused.code, Some(1), "{}", refused.log());
    let error = refused.error();
    assert!(error.contains("BatchCheckLayerAvailability"), "{error}");
    assert!(error.contains("RepositoryNotFoundException"), "{error}");
    assert!(
        error.contains("team/new-app") && error.contains(CI_ACCOUNT),
        "{error}"
    );
    assert!(error.contains("create-repository: true"), "{error}");

    let created = push("true");
    assert!(created.ok(), "{}", created.log());
    assert_landed(&stack, CI_ACCOUNT, "team/new-app", "v1", &layout);
    assert_eq!(stack.recorder.calls_to("CreateRepository").len(), 1);
}

#[test]
fn immutable_tag_is_kept_on_its_digest() {
    let stack = Stack::start();
    stack.moto.create_repository(CI_ACCOUNT, "frozen", true);
    let first_dir = tempfile::tempdir().unwrap();
    let first = small_image(first_dir.path(), 11);
    let other_dir = tempfile::tempdir().unwrap();
    let other = small_image(other_dir.path(), 12);
    let push = |layout: &Layout| {
        stack
            .action()
            .input("image", &layout.reference("v1"))
            .input("repository", "frozen")
            .run()
    };

    assert!(push(&first).ok());
    let again = push(&first);
    assert!(
        again.ok(),
        "same digest under the same tag is a success: {}",
        again.log()
    );

    let conflict = push(&other);
    assert_eq!(conflict.code, Some(1), "{}", conflict.log());
    let error = conflict.error();
    assert!(
        error.contains("immutable") && error.contains(&first.digest),
        "{error}"
    );
    assert_landed(&stack, CI_ACCOUNT, "frozen", "v1", &first);
}

#[test]
fn secrets_are_masked_first_and_never_printed() {
    let stack = Stack::start();
    stack.moto.create_repository(REGISTRY_ACCOUNT, "app", false);
    let dir = tempfile::tempdir().unwrap();
    let layout = small_image(dir.path(), 13);

    let run = stack
        .action()
        .input("image", &layout.reference("v1"))
        .input("repository", "app")
        .input("cross-account-role", PUBLISHER_ROLE)
        .input("docker-login", "true")
        .env("RUNNER_DEBUG", "1")
        .run();
    assert!(run.ok(), "{}", run.log());

    let masks = run.masks();
    let token = stack.oidc.tokens().pop().expect("a token was issued");
    let config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(run.home.path().join(".docker/config.json")).expect("docker config"),
    )
    .unwrap();
    let registry = format!("{REGISTRY_ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com");
    let auth = config["auths"][&registry]["auth"]
        .as_str()
        .expect("auth")
        .to_owned();
    let decoded = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(&auth)
            .unwrap(),
    )
    .unwrap();
    let password = decoded.split_once(':').unwrap().1.to_owned();
    for secret in [
        REQUEST_TOKEN,
        token.as_str(),
        auth.as_str(),
        password.as_str(),
    ] {
        assert!(masks.iter().any(|m| m == secret), "{secret} not masked");
    }
    // Two sessions of three secrets each, plus the four above.
    assert!(masks.len() >= 10, "{masks:?}");
    // Each mask comes before any other line that could carry it.
    let first_mask_line = run
        .stdout
        .lines()
        .position(|l| l.starts_with("::add-mask::"))
        .unwrap();
    assert!(
        run.stdout
            .lines()
            .take(first_mask_line)
            .all(|l| !l.contains("::error")),
        "{}",
        run.log()
    );
    let unmasked_stdout: String = run
        .stdout
        .lines()
        .filter(|l| !l.starts_with("::add-mask::"))
        .collect::<Vec<_>>()
        .join("\n");
    for secret in &masks {
        for (place, text) in [
            ("stdout", &unmasked_stdout),
            ("stderr", &run.stderr),
            ("outputs", &run.output_file),
            ("summary", &run.summary),
        ] {
            assert!(
                !text.contains(secret.as_str()),
                "a secret is printed in {place}"
            );
        }
    }
    // Debug logging was on, and did show the calls.
    assert!(run.stdout.contains("UploadLayerPart"), "{}", run.log());
}

#[test]
fn umoci_layout_without_manifest_media_type_is_pushed_as_oci() {
    let stack = Stack::start();
    stack.moto.create_repository(CI_ACCOUNT, "umoci", false);
    let dir = tempfile::tempdir().unwrap();
    let layout_dir = dir.path().join("layout");
    let layout = layout_dir.to_str().unwrap();
    let rootfs = dir.path().join("bundle");
    umoci(&["init", "--layout", layout]);
    umoci(&["new", "--image", &format!("{layout}:base")]);
    umoci(&[
        "unpack",
        "--rootless",
        "--image",
        &format!("{layout}:base"),
        rootfs.to_str().unwrap(),
    ]);
    std::fs::write(rootfs.join("rootfs/hello.txt"), "hello from umoci\n").unwrap();
    umoci(&[
        "repack",
        "--image",
        &format!("{layout}:v2"),
        rootfs.to_str().unwrap(),
    ]);

    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout_dir.join("index.json")).unwrap()).unwrap();
    let descriptor = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["annotations"]["org.opencontainers.image.ref.name"] == "v2")
        .unwrap();
    let digest = descriptor["digest"].as_str().unwrap().to_owned();
    let manifest = std::fs::read(
        layout_dir
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:")),
    )
    .unwrap();
    let parsed: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    assert!(
        parsed.get("mediaType").is_none(),
        "umoci changed: the manifest names its type"
    );

    let run = stack
        .action()
        .input("image", &format!("oci:{layout}:v2"))
        .input("repository", "umoci")
        .run();

    assert!(run.ok(), "{}", run.log());
    assert_eq!(run.outputs["tags"], "v2", "the REF is the default tag");
    let (stored, bytes) = stack
        .moto
        .manifest(CI_ACCOUNT, "umoci", "v2")
        .expect("tag v2");
    assert_eq!(stored, digest);
    assert_eq!(bytes.as_bytes(), manifest.as_slice());
    let put = stack.recorder.calls_to("PutImage").pop().unwrap().json();
    assert_eq!(
        put["imageManifestMediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
}

#[test]
fn oci_archive_written_by_skopeo_is_read_in_place() {
    let stack = Stack::start();
    stack.moto.create_repository(CI_ACCOUNT, "archived", false);
    let dir = tempfile::tempdir().unwrap();
    let layout = write_layout(
        &dir.path().join("layout"),
        "v3",
        &[random_bytes(14, 12 * MIB)],
    );
    let archive = dir.path().join("image.tar");
    let status = std::process::Command::new("skopeo")
        .args([
            "copy",
            "--quiet",
            // Without it skopeo gzips the uncompressed layer on the way.
            "--preserve-digests",
            &layout.reference("v3"),
            &format!("oci-archive:{}:v3", archive.display()),
        ])
        .status()
        .expect("skopeo runs");
    assert!(status.success());

    let run = stack
        .action()
        .input("image", &format!("oci-archive:{}:v3", archive.display()))
        .input("repository", "archived")
        .run();

    assert!(run.ok(), "{}", run.log());
    assert_landed(&stack, CI_ACCOUNT, "archived", "v3", &layout);
}

#[test]
fn command_line_uses_the_default_credential_chain() {
    let stack = Stack::start();
    // moto files static keys under its default account.
    stack
        .moto
        .create_repository("123456789012", "laptop", false);
    let dir = tempfile::tempdir().unwrap();
    let layout = small_image(dir.path(), 15);

    let run = Action::bare(&stack.recorder)
        .env("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
        .env(
            "AWS_SECRET_ACCESS_KEY",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        )
        .env("AWS_REGION", REGION)
        .args(&[
            "push",
            "--image",
            &layout.reference("v1"),
            "--repository",
            "laptop",
        ])
        .run();

    assert!(run.ok(), "{}", run.log());
    let uri = format!(
        "123456789012.dkr.ecr.{REGION}.amazonaws.com/laptop@{}",
        layout.digest
    );
    assert_eq!(run.stdout.trim(), uri, "stdout is the image URI alone");
    assert!(
        !run.stdout.contains("::"),
        "no workflow commands outside Actions"
    );
    assert_eq!(stack.recorder.calls_to("GetCallerIdentity").len(), 1);
    assert!(
        stack
            .moto
            .manifest("123456789012", "laptop", "v1")
            .is_some()
    );
}

#[test]
fn every_declared_input_passed_as_the_runner_does_is_accepted() {
    // The runner sets INPUT_* for every input in action.yml, with its default or empty,
    // and RUNNER_DEBUG=1 on a debug re-run.
    let stack = Stack::start();
    stack.moto.create_repository(CI_ACCOUNT, "app", false);
    let dir = tempfile::tempdir().unwrap();
    let layout = small_image(dir.path(), 16);
    let mut action = stack.action().env("RUNNER_DEBUG", "1");
    for (name, value) in [
        ("tags", ""),
        ("audience", "sts.amazonaws.com"),
        ("role-session-name", "GitHubActions"),
        ("role-duration-seconds", "3600"),
        ("cross-account-role", ""),
        ("cross-account-external-id", ""),
        ("session-tags", "false"),
        ("registry-id", ""),
        ("create-repository", "false"),
        ("docker-login", "false"),
        ("concurrency", "4"),
        ("verbose", "false"),
    ] {
        action = action.input(name, value);
    }

    let run = action
        .input("image", &layout.reference("v1"))
        .input("repository", "app")
        .run();

    assert!(run.ok(), "{}", run.log());
    assert!(
        run.stdout.contains("UploadLayerPart"),
        "debug logging is on: {}",
        run.log()
    );
    assert_landed(&stack, CI_ACCOUNT, "app", "v1", &layout);
}

#[test]
fn part_whose_answer_was_lost_is_not_sent_twice_into_the_layer() {
    let stack = Stack::start();
    stack.moto.create_repository(CI_ACCOUNT, "flaky", false);
    let dir = tempfile::tempdir().unwrap();
    let layout = write_layout(dir.path(), "v1", &[random_bytes(17, 12 * MIB)]);
    stack.recorder.lose_answer_once("UploadLayerPart");

    let run = stack
        .action()
        .input("image", &layout.reference("v1"))
        .input("repository", "flaky")
        .input("concurrency", "1")
        .run();

    assert!(run.ok(), "{}", run.log());
    assert_landed(&stack, CI_ACCOUNT, "flaky", "v1", &layout);
    // The answer lost is the first UploadLayerPart's, the config's or the layer's first
    // part, whichever lane got there first: that part alone was sent twice (the SDK's
    // retry; ECR, here moto, had it and said so), and every upload went on from there.
    let mut parts: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    for call in stack.recorder.calls_to("UploadLayerPart") {
        let json = call.json();
        parts
            .entry(json["uploadId"].as_str().unwrap().to_owned())
            .or_default()
            .push(json["partFirstByte"].as_u64().unwrap());
    }
    let retried: Vec<&Vec<u64>> = parts
        .values()
        .filter(|p| p.len() > 1 && p[0] == p[1])
        .collect();
    assert_eq!(retried.len(), 1, "{parts:?}");
    for first_bytes in parts.values() {
        let mut sent = first_bytes.clone();
        sent.dedup();
        assert!(
            sent == [0] || sent == [0, 10 * MIB as u64],
            "each part once after the retry: {parts:?}"
        );
        assert!(first_bytes.len() <= sent.len() + 1, "{parts:?}");
    }
}

#[test]
fn unreadable_sts_answer_is_reported_without_its_body() {
    // An STS answer the SDK cannot read (a malformed expiry): it carries credentials
    // the tool has not masked yet, and the SDK keeps the raw answer in its error.
    let sts = serve_canned(
        "200 OK",
        "text/xml",
        "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>\
         <AccessKeyId>ASIALEAKEDKEY0000000</AccessKeyId>\
         <SecretAccessKey>LeakedSecretAccessKeyValue0000000000000</SecretAccessKey>\
         <SessionToken>LeakedSessionToken</SessionToken>\
         <Expiration>next tuesday</Expiration>\
         </Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>",
    );
    let stack = Stack::start();
    let dir = tempfile::tempdir().unwrap();
    let layout = small_image(dir.path(), 18);

    let run = stack
        .action()
        .env("AWS_ENDPOINT_URL_STS", &format!("http://127.0.0.1:{sts}"))
        .input("image", &layout.reference("v1"))
        .input("repository", "app")
        .run();

    assert_eq!(run.code, Some(1), "{}", run.log());
    assert!(
        run.error().starts_with("web-identity assume of"),
        "{}",
        run.log()
    );
    for leaked in ["ASIALEAKEDKEY", "LeakedSecret", "LeakedSessionToken"] {
        assert!(
            !run.log().contains(leaked),
            "{leaked} printed: {}",
            run.log()
        );
    }
}

/// A push whose AssumeRoleWithWebIdentity STS refuses (moto does not evaluate trust
/// policies, so the recorder answers STS's AccessDenied): the error line.
fn refused_web_identity(stack: &Stack, seed: u64) -> String {
    stack.recorder.xml_error_once(
        "AssumeRoleWithWebIdentity",
        "403 Forbidden",
        "AccessDenied",
        "Not authorized to perform sts:AssumeRoleWithWebIdentity",
    );
    let dir = tempfile::tempdir().unwrap();
    let layout = small_image(dir.path(), seed);
    let run = stack
        .action()
        .input("image", &layout.reference("v1"))
        .input("repository", "app")
        .run();
    assert_eq!(run.code, Some(1), "{}", run.log());
    run.error()
}

#[test]
fn denied_web_identity_assume_quotes_the_tokens_claims() {
    let stack = Stack::start();
    let error = refused_web_identity(&stack, 19);
    assert!(
        error.starts_with(&format!(
            "web-identity assume of {PUSH_ROLE} failed: AccessDenied: Not authorized"
        )),
        "{error}"
    );
    assert!(error.contains(&format!("sub `{SUB}` (an immutable subject: owner id {OWNER_ID} and repository id {REPO_ID} after `@`, as github.com writes them for repositories created, renamed or transferred since 2026-07-15 and for those opted in, so a trust written for `repo:octo-org/octo-repo:…` does not match it), aud `sts.amazonaws.com`, repository `octo-org/octo-repo`, ref `refs/heads/main`")), "{error}");
    assert!(
        error.contains(&format!(
            "\"token.actions.githubusercontent.com:sub\": \"{SUB}\" would let this job in; `ecr-push policy generate --github-repo octo-org/octo-repo --github-owner-id {OWNER_ID} --github-repo-id {REPO_ID} --branch main …` writes it for both forms"
        )),
        "{error}"
    );
    assert!(
        !error.contains(&stack.oidc.tokens()[0]),
        "the token itself is never shown"
    );
    assert!(
        stack
            .recorder
            .calls_to("BatchCheckLayerAvailability")
            .is_empty()
    );
}

#[test]
fn denied_classic_subject_says_its_form() {
    let stack = Stack::start();
    stack.oidc.classic_subjects();
    let error = refused_web_identity(&stack, 23);
    assert!(
        error.contains(&format!(
            "sub `{SUB_CLASSIC}` (the classic form, without the owner's and repository's ids), aud `sts.amazonaws.com`"
        )),
        "{error}"
    );
    assert!(
        error.contains(&format!(
            "\"token.actions.githubusercontent.com:sub\": \"{SUB_CLASSIC}\" would let this job in"
        )),
        "{error}"
    );
}

#[test]
fn denied_cross_account_assume_names_both_sides_and_tag_session() {
    let stack = Stack::start();
    stack.recorder.xml_error_once(
        "AssumeRole",
        "403 Forbidden",
        "AccessDenied",
        "User is not authorized to perform: sts:TagSession",
    );
    let dir = tempfile::tempdir().unwrap();
    let layout = small_image(dir.path(), 20);

    let run = stack
        .action()
        .input("image", &layout.reference("v1"))
        .input("repository", "app")
        .input("cross-account-role", PUBLISHER_ROLE)
        .input("session-tags", "true")
        .run();

    assert_eq!(run.code, Some(1), "{}", run.log());
    let error = run.error();
    assert!(
        error.starts_with(&format!(
            "cross-account assume of {PUBLISHER_ROLE} failed: AccessDenied"
        )),
        "{error}"
    );
    assert!(
        error.contains(&format!("the trust policy of {PUBLISHER_ROLE} must allow sts:AssumeRole and sts:TagSession (session-tags is on) for {PUSH_ROLE}")),
        "{error}"
    );
    assert!(
        error.contains(&format!("needs sts:AssumeRole on {PUBLISHER_ROLE}")),
        "{error}"
    );
}

#[test]
fn denied_ecr_call_names_action_resource_and_both_sides_across_accounts() {
    let stack = Stack::start();
    stack.recorder.json_error_once(
        "BatchCheckLayerAvailability",
        "400 Bad Request",
        "AccessDeniedException",
        "not authorized to perform: ecr:BatchCheckLayerAvailability",
    );
    let dir = tempfile::tempdir().unwrap();
    let layout = small_image(dir.path(), 21);

    let run = stack
        .action()
        .input("image", &layout.reference("v1"))
        .input("repository", "app")
        .input("registry-id", "333333333333")
        .run();

    assert_eq!(run.code, Some(1), "{}", run.log());
    let error = run.error();
    assert!(error.starts_with("ECR BatchCheckLayerAvailability failed for repository app in registry 333333333333 (us-east-1): AccessDeniedException"), "{error}");
    assert!(error.contains("needs ecr:BatchCheckLayerAvailability on arn:aws:ecr:us-east-1:333333333333:repository/app in its permissions policy, and the repository policy must allow it across accounts"), "{error}");
    assert!(
        error.contains("arn:aws:sts::111111111111:assumed-role/ecr-ci-push-role/"),
        "{error}"
    );
    assert!(stack.recorder.calls_to("PutImage").is_empty());
}

/// moto evaluates ECR actions against resource `*` only, so the role here holds the
/// generated push *actions* on `*`: this proves the action set is enough and no wider.
/// That the generated resources are the repository ARNs is the generator's own test.
#[test]
fn role_with_only_the_generated_push_actions_pushes_and_can_do_nothing_else() {
    let stack = Stack::start();
    stack
        .moto
        .create_repository(CI_ACCOUNT, "secure-flask", false);
    let generated = std::process::Command::new(env!("CARGO_BIN_EXE_ecr-push"))
        .args([
            "policy",
            "generate",
            "--account",
            CI_ACCOUNT,
            "--region",
            REGION,
            "--repository",
            "secure-flask",
            "--github-repo",
            "octo-org/octo-repo",
            "--branch",
            "main",
        ])
        .output()
        .unwrap();
    let documents: serde_json::Value = serde_json::from_slice(&generated.stdout).unwrap();
    let trust = documents["aws-github-oidc-trust.json"].to_string();
    let mut push = documents["aws-ecr-ci-push.json"].clone();
    assert_eq!(push["Statement"].as_array().unwrap().len(), 1);
    push["Statement"][0]["Resource"] = "*".into();
    stack.moto.iam(
        CI_ACCOUNT,
        &[
            ("Action", "CreateRole"),
            ("RoleName", "ecr-ci-push-role"),
            ("AssumeRolePolicyDocument", &trust),
        ],
    );
    stack.moto.iam(
        CI_ACCOUNT,
        &[
            ("Action", "PutRolePolicy"),
            ("RoleName", "ecr-ci-push-role"),
            ("PolicyName", "ecr-push"),
            ("PolicyDocument", &push.to_string()),
        ],
    );
    let credentials = stack.moto.web_identity_credentials(PUSH_ROLE);
    let dir = tempfile::tempdir().unwrap();
    let layout = small_image(dir.path(), 22);

    // The tool's AssumeRoleWithWebIdentity is unsigned by nature; every call after it
    // is authenticated and evaluated.
    stack.moto.enforce_iam_after(1);
    let run = stack
        .action()
        .input("image", &layout.reference("v1"))
        .input("repository", "secure-flask")
        .run();
    let role = stack.moto.ecr_as(&credentials);
    let denied = |result: Result<(), String>, action: &str| {
        let err = result.expect_err(&format!("{action} was allowed"));
        assert!(
            err.contains("AccessDenied") || err.contains("not authorized"),
            "{action}: {err}"
        );
    };
    let repository = "secure-flask";
    denied(
        stack
            .moto
            .block_on(
                // Manifests it may read (BatchGetImage), layers not.
                role.get_download_url_for_layer()
                    .repository_name(repository)
                    .layer_digest(&layout.layers[0].digest)
                    .send(),
            )
            .map(|_| ())
            .map_err(|e| format!("{}", aws_sdk_ecr::error::DisplayErrorContext(e))),
        "GetDownloadUrlForLayer",
    );
    denied(
        stack
            .moto
            .block_on(role.list_images().repository_name(repository).send())
            .map(|_| ())
            .map_err(|e| format!("{}", aws_sdk_ecr::error::DisplayErrorContext(e))),
        "ListImages",
    );
    denied(
        stack
            .moto
            .block_on(
                role.delete_repository()
                    .repository_name(repository)
                    .force(true)
                    .send(),
            )
            .map(|_| ())
            .map_err(|e| format!("{}", aws_sdk_ecr::error::DisplayErrorContext(e))),
        "DeleteRepository",
    );
    stack.moto.stop_enforcing_iam();
    assert!(
        run.ok(),
        "the generated actions were not enough: {}",
        run.log()
    );
    assert_landed(&stack, CI_ACCOUNT, "secure-flask", "v1", &layout);

    // One action fewer, and a push of a new image fails naming it.
    push["Statement"][0]["Action"]
        .as_array_mut()
        .unwrap()
        .retain(|a| a != "ecr:PutImage");
    stack.moto.iam(
        CI_ACCOUNT,
        &[
            ("Action", "PutRolePolicy"),
            ("RoleName", "ecr-ci-push-role"),
            ("PolicyName", "ecr-push"),
            ("PolicyDocument", &push.to_string()),
        ],
    );
    let other_dir = tempfile::tempdir().unwrap();
    let other = small_image(other_dir.path(), 23);
    stack.moto.enforce_iam_after(1);
    let refused = stack
        .action()
        .input("image", &other.reference("v1"))
        .input("repository", "secure-flask")
        .run();
    stack.moto.stop_enforcing_iam();
    assert_eq!(refused.code, Some(1), "{}", refused.log());
    assert!(
        refused.error().contains(
            "needs ecr:PutImage on arn:aws:ecr:us-east-1:111111111111:repository/secure-flask"
        ),
        "{}",
        refused.log()
    );
    assert_landed(&stack, CI_ACCOUNT, "secure-flask", "v1", &layout);
}

#[test]
fn throttled_parts_and_put_image_end_correct_only_later() {
    let stack = Stack::start();
    stack.moto.create_repository(CI_ACCOUNT, "app", false);
    let dir = tempfile::tempdir().unwrap();
    let layout = small_image(dir.path(), 9);

    // ECR's answer when the account's quota is used up, twice in a row for a part.
    stack.recorder.json_error_times(
        "UploadLayerPart",
        "400 Bad Request",
        "ThrottlingException",
        "Rate exceeded",
        2,
    );
    let run = stack
        .action()
        .input("image", &layout.reference("v1"))
        .input("repository", "app")
        .run();

    assert!(run.ok(), "{}", run.log());
    assert_landed(&stack, CI_ACCOUNT, "app", "v1", &layout);
    // Four blobs of one part each, two of the attempts throttled and sent again.
    assert_eq!(stack.recorder.calls_to("UploadLayerPart").len(), 6);
    assert!(run.summary.contains("UploadLayerPart 6"), "{}", run.summary);

    // A throttled PutImage waits too, and the tag lands.
    stack.recorder.json_error_times(
        "PutImage",
        "400 Bad Request",
        "ThrottlingException",
        "Rate exceeded",
        1,
    );
    let tagged = stack
        .action()
        .input("image", &layout.reference("v1"))
        .input("repository", "app")
        .input("tags", "v2")
        .run();
    assert!(tagged.ok(), "{}", tagged.log());
    assert_landed(&stack, CI_ACCOUNT, "app", "v2", &layout);
    assert!(tagged.summary.contains("PutImage 2"), "{}", tagged.summary);
}

/// On a terminal the running total is a bar redrawn in place, with the log's lines
/// above it; anywhere else (a pipe here, the Actions log) there is no control code.
#[test]
fn progress_is_a_bar_on_a_terminal_and_plain_lines_elsewhere() {
    let stack = Stack::start();
    let dir = tempfile::tempdir().unwrap();
    let layout = write_layout(
        dir.path(),
        "v1",
        &[random_bytes(31, 11 * MIB), random_bytes(32, 6 * MIB)],
    );
    // Long enough for the bar to be drawn several times.
    stack
        .recorder
        .delay("UploadLayerPart", std::time::Duration::from_millis(600));
    let laptop = |repository: &str| {
        Action::bare(&stack.recorder)
            .env("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
            .env(
                "AWS_SECRET_ACCESS_KEY",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            )
            .env("AWS_REGION", REGION)
            .env("TERM", "xterm")
            .args(&[
                "push",
                "--image",
                &layout.reference("v1"),
                "--repository",
                repository,
                "--create-repository",
            ])
    };

    let terminal = laptop("on-a-terminal").in_terminal().run();
    assert!(terminal.ok(), "{}", terminal.log());
    let shown = &terminal.stdout;
    assert!(shown.contains("\u{1b}["), "no bar drawn: {shown:?}");
    assert!(shown.contains("17.00 MiB"), "the bar's total: {shown:?}");
    assert!(shown.contains("pushed sha256:"), "{shown:?}");
    assert_landed(&stack, "123456789012", "on-a-terminal", "v1", &layout);

    let piped = laptop("in-a-pipe").run();
    assert!(piped.ok(), "{}", piped.log());
    assert!(piped.stderr.contains("pushed sha256:"), "{}", piped.log());
    for text in [&piped.stdout, &piped.stderr] {
        assert!(!text.contains('\u{1b}') && !text.contains('\r'), "{text:?}");
    }
}

/// The config and small layers go beside the large ones, not after them: with one blob
/// at a time, a small blob lands before the first large layer (it waits for a part of
/// it, not for all of it).
#[test]
fn small_blobs_do_not_wait_behind_large_ones() {
    let stack = Stack::start();
    stack.moto.create_repository(CI_ACCOUNT, "lanes", false);
    let dir = tempfile::tempdir().unwrap();
    let layout = write_layout(
        dir.path(),
        "v1",
        &[
            random_bytes(41, 11 * MIB),
            random_bytes(42, 12 * MIB),
            random_bytes(43, 1000),
        ],
    );
    stack
        .recorder
        .delay("UploadLayerPart", std::time::Duration::from_millis(300));

    let run = stack
        .action()
        .input("image", &layout.reference("v1"))
        .input("repository", "lanes")
        .input("concurrency", "1")
        .run();

    assert!(run.ok(), "{}", run.log());
    assert_landed(&stack, CI_ACCOUNT, "lanes", "v1", &layout);
    let completed: Vec<String> = stack
        .recorder
        .calls_to("CompleteLayerUpload")
        .iter()
        .map(|c| c.json()["layerDigests"][0].as_str().unwrap().to_owned())
        .collect();
    let at = |digest: &str| completed.iter().position(|d| d == digest).unwrap();
    let first_small = at(&layout.config.digest).min(at(&layout.layers[2].digest));
    let first_large = at(&layout.layers[0].digest).min(at(&layout.layers[1].digest));
    assert!(first_small < first_large, "{completed:?}");
    // One at a time in each lane: the large layers went largest first.
    assert!(at(&layout.layers[1].digest) < at(&layout.layers[0].digest));
}

/// `policy generate --create-repository` grants what `create-repository: true` calls
/// and a push without it is refused at CreateRepository. (moto evaluates ECR actions
/// against `*` only, so the statements' resources are widened here as above.)
#[test]
fn generated_create_repository_grant_is_what_creating_needs() {
    let stack = Stack::start();
    let generate = |create: bool| {
        let mut args = vec![
            "policy",
            "generate",
            "--account",
            CI_ACCOUNT,
            "--region",
            REGION,
            "--repository",
            "fresh/app",
            "--github-repo",
            "octo-org/octo-repo",
            "--github-owner-id",
            OWNER_ID,
            "--github-repo-id",
            REPO_ID,
            "--branch",
            "main",
        ];
        if create {
            args.push("--create-repository");
        }
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_ecr-push"))
            .args(&args)
            .output()
            .unwrap();
        let documents: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let mut push = documents["aws-ecr-ci-push.json"].clone();
        for statement in push["Statement"].as_array_mut().unwrap() {
            statement["Resource"] = "*".into();
        }
        (
            documents["aws-github-oidc-trust.json"].to_string(),
            push.to_string(),
        )
    };
    let (trust, with_create) = generate(true);
    stack.moto.iam(
        CI_ACCOUNT,
        &[
            ("Action", "CreateRole"),
            ("RoleName", "ecr-ci-push-role"),
            ("AssumeRolePolicyDocument", &trust),
        ],
    );
    let put_policy = |document: &str| {
        stack.moto.iam(
            CI_ACCOUNT,
            &[
                ("Action", "PutRolePolicy"),
                ("RoleName", "ecr-ci-push-role"),
                ("PolicyName", "ecr-push"),
                ("PolicyDocument", document),
            ],
        );
    };
    put_policy(&with_create);
    let dir = tempfile::tempdir().unwrap();
    let layout = small_image(dir.path(), 24);
    stack.moto.enforce_iam_after(1);
    let run = stack
        .action()
        .input("image", &layout.reference("v1"))
        .input("repository", "fresh/app")
        .input("create-repository", "true")
        .run();
    stack.moto.stop_enforcing_iam();
    assert!(
        run.ok(),
        "the generated grant did not create it: {}",
        run.log()
    );
    assert_eq!(stack.recorder.calls_to("CreateRepository").len(), 1);
    assert_landed(&stack, CI_ACCOUNT, "fresh/app", "v1", &layout);

    let (_, without_create) = generate(false);
    put_policy(&without_create);
    stack.moto.enforce_iam_after(1);
    let refused = stack
        .action()
        .input("image", &layout.reference("v1"))
        .input("repository", "fresh/other")
        .input("create-repository", "true")
        .run();
    stack.moto.stop_enforcing_iam();
    assert_eq!(refused.code, Some(1), "{}", refused.log());
    assert!(
        refused.error().contains("CreateRepository"),
        "{}",
        refused.error()
    );
    assert!(
        stack.recorder.calls_to("PutImage").len() == 1,
        "nothing pushed the second time"
    );
}

/// A registry named by its FIPS or dual-stack host is ECR: the account and region come
/// from the host, the push goes through ECR's API (here the endpoint override, moto),
/// and the URIs written out keep the host as it was given.
#[test]
fn fips_and_dual_stack_hosts_are_ecr() {
    let stack = Stack::start();
    let dir = tempfile::tempdir().unwrap();
    let layout = small_image(dir.path(), 25);
    for (host, repository) in [
        (
            "111111111111.dkr.ecr-fips.us-east-1.amazonaws.com",
            "fips/app",
        ),
        ("111111111111.dkr-ecr.us-east-1.on.aws", "dual/app"),
        (
            "111111111111.dkr-ecr-fips.us-east-1.on.aws",
            "dual-fips/app",
        ),
    ] {
        stack.moto.create_repository(CI_ACCOUNT, repository, false);
        let run = stack
            .action()
            .input("image", &layout.reference("v1"))
            .input("repository", repository)
            .input("registry", host)
            .run();
        assert!(run.ok(), "{host}: {}", run.log());
        assert_eq!(
            run.outputs["image-uri"],
            format!("{host}/{repository}@{}", layout.digest),
            "{host}"
        );
        assert_eq!(run.outputs["registry"], host);
        assert_landed(&stack, CI_ACCOUNT, repository, "v1", &layout);
        assert!(
            !stack.recorder.calls_to("PutImage").is_empty(),
            "{host}: pushed through ECR's API"
        );
        stack.recorder.forget();
    }
}
