//! `targets` (issue 16): one step publishes one image to several registries, accounts
//! and regions, with one OIDC exchange, the source read once, and no tag anywhere until
//! every target holds everything. Each test runs the binary as the runner does against
//! moto, whose registries are keyed by account (the role's, for assumed credentials)
//! and by the region a request is signed for, so one moto holds all three targets.

use std::collections::HashMap;

use crate::support::*;

const MIB: usize = 1024 * 1024;

/// One target as moto keeps it, and as a line of `targets` names it.
#[derive(Clone, Copy, Debug)]
struct Place {
    account: &'static str,
    region: &'static str,
    repository: &'static str,
    role: Option<&'static str>,
    external_id: Option<&'static str>,
}

impl Place {
    fn host(&self) -> String {
        format!("{}.dkr.ecr.{}.amazonaws.com", self.account, self.region)
    }

    /// `HOST/REPOSITORY`, as messages and the summary name it.
    fn name(&self) -> String {
        format!("{}/{}", self.host(), self.repository)
    }

    fn line(&self) -> String {
        let mut line = self.name();
        if let Some(role) = self.role {
            line.push_str(&format!(",role={role}"));
        }
        if let Some(id) = self.external_id {
            line.push_str(&format!(",external-id={id}"));
        }
        line
    }

    fn uri(&self, digest: &str) -> String {
        format!("{}@{digest}", self.name())
    }

    fn create(&self, stack: &Stack, immutable: bool) {
        stack
            .moto
            .create_repository_in(self.account, self.region, self.repository, immutable);
    }

    /// What `tag` points at here: (digest, manifest bytes).
    fn tagged(&self, stack: &Stack, tag: &str) -> Option<(String, String)> {
        stack
            .moto
            .manifest_in(self.account, self.region, self.repository, tag)
    }

    /// The blobs of `layout` this target lacks.
    fn missing(&self, stack: &Stack, layout: &Layout) -> Vec<String> {
        let digests = layout.blob_digests();
        let available =
            stack
                .moto
                .available_blobs_in(self.account, self.region, self.repository, &digests);
        digests
            .into_iter()
            .filter(|d| !available.contains_key(d))
            .collect()
    }

    /// Every tag here points at the layout's manifest, byte for byte, and every blob is
    /// here with its size.
    fn assert_holds(&self, stack: &Stack, layout: &Layout, tags: &[&str]) {
        for tag in tags {
            let (digest, manifest) = self
                .tagged(stack, tag)
                .unwrap_or_else(|| panic!("{}: no tag {tag}", self.name()));
            assert_eq!(digest, layout.digest, "{}:{tag}", self.name());
            assert_eq!(
                manifest.as_bytes(),
                layout.manifest.as_slice(),
                "{}:{tag}: the manifest was re-serialised",
                self.name()
            );
        }
        let digests = layout.blob_digests();
        let available =
            stack
                .moto
                .available_blobs_in(self.account, self.region, self.repository, &digests);
        for blob in std::iter::once(&layout.config).chain(&layout.layers) {
            assert_eq!(
                available.get(&blob.digest),
                Some(&(blob.size as i64)),
                "{}: {}",
                self.name(),
                blob.digest
            );
        }
    }
}

/// A release's three targets: the CI account's own registry (no role: the first role's
/// credentials), a second account through a chained role, and a third account in
/// another region through its own role with an external id.
fn release() -> [Place; 3] {
    [
        Place {
            account: CI_ACCOUNT,
            region: REGION,
            repository: "release/app",
            role: None,
            external_id: None,
        },
        Place {
            account: REGISTRY_ACCOUNT,
            region: REGION,
            repository: "prod/app",
            role: Some(PUBLISHER_ROLE),
            external_id: None,
        },
        Place {
            account: DR_ACCOUNT,
            region: DR_REGION,
            repository: "dr/app",
            role: Some(DR_ROLE),
            external_id: Some("dr-release"),
        },
    ]
}

fn lines(places: &[Place]) -> String {
    places
        .iter()
        .map(Place::line)
        .collect::<Vec<_>>()
        .join("\n")
}

fn push(stack: &Stack, image: &str, targets: &str, tags: &str) -> Run {
    stack
        .action()
        .input("image", image)
        .input("targets", targets)
        .input("tags", tags)
        .run()
}

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

/// How many calls to `action` the recorder saw for `account`'s registry.
fn calls_for(stack: &Stack, action: &str, account: &str) -> usize {
    stack
        .recorder
        .calls_to(action)
        .iter()
        .filter(|c| c.registry_id().as_deref() == Some(account))
        .count()
}

/// PutImage calls that carried a tag.
fn tag_writes(stack: &Stack) -> Vec<Call> {
    stack
        .recorder
        .calls_to("PutImage")
        .into_iter()
        .filter(|c| c.body.contains("imageTag"))
        .collect()
}

/// The `targets` output, one object per target.
fn targets_output(run: &Run) -> Vec<serde_json::Value> {
    let text = run.outputs.get("targets").map(String::as_str);
    serde_json::from_str(text.unwrap_or_default())
        .unwrap_or_else(|e| panic!("targets output is not a JSON array ({e}): {text:?}"))
}

#[test]
fn one_step_lands_the_same_bytes_in_three_accounts_and_two_regions() {
    let stack = Stack::start();
    let places = release();
    for place in &places {
        place.create(&stack, false);
    }
    let dir = tempfile::tempdir().unwrap();
    let layout = small_image(dir.path(), 1601);
    // A comment line, a blank one and a trailing comment: line order is target order.
    let [a, b, c] = places.map(|p| p.line());
    let targets = format!("# where the release goes\n{a}\n\n{b}\n{c}  # disaster recovery\n");

    let run = push(&stack, &layout.reference("v1"), &targets, "v1,stable");

    assert!(run.ok(), "{}", run.log());
    for place in &places {
        place.assert_holds(&stack, &layout, &["v1", "stable"]);
        let sent = stack.recorder.uploaded_layers_to(place.account);
        for digest in layout.blob_digests() {
            let bytes = sent
                .get(&digest)
                .unwrap_or_else(|| panic!("{}: {digest} never completed", place.name()));
            assert_eq!(sha256(bytes), digest, "{}", place.name());
        }
    }
    // One token, one web-identity session, each chained role assumed once from it.
    assert_eq!(stack.oidc.tokens().len(), 1);
    let web = stack.recorder.calls_to("AssumeRoleWithWebIdentity");
    assert_eq!(web.len(), 1);
    assert_eq!(web[0].form("RoleArn").as_deref(), Some(PUSH_ROLE));
    let hops = stack.recorder.calls_to("AssumeRole");
    let mut roles: Vec<(Option<String>, Option<String>)> = hops
        .iter()
        .map(|h| (h.form("RoleArn"), h.form("ExternalId")))
        .collect();
    roles.sort();
    assert_eq!(
        roles,
        [
            (Some(PUBLISHER_ROLE.to_owned()), None),
            (Some(DR_ROLE.to_owned()), Some("dr-release".to_owned())),
        ]
    );
    // The third target's calls are signed for its own region.
    for call in stack.recorder.calls_to("PutImage") {
        let expected = if call.registry_id().as_deref() == Some(DR_ACCOUNT) {
            DR_REGION
        } else {
            REGION
        };
        assert_eq!(call.region, expected, "{}", call.body);
    }

    let first = &places[0];
    assert_eq!(run.outputs["registry"], first.host());
    assert_eq!(run.outputs["image-uri"], first.uri(&layout.digest));
    assert_eq!(run.outputs["digest"], layout.digest);
    assert_eq!(run.outputs["tags"], "v1,stable");
    let uris: Vec<String> = places.iter().map(|p| p.uri(&layout.digest)).collect();
    assert_eq!(run.outputs["image-uris"], uris.join("\n"));
    assert_targets_output(&stack, &run, &places, &layout);
    assert_summary_rows(&run.summary, &places);
}

/// The `targets` output: per target in line order, where it is, what it got, and the
/// calls it took (as the recorder counted them for that account).
fn assert_targets_output(stack: &Stack, run: &Run, places: &[Place], layout: &Layout) {
    let targets = targets_output(run);
    assert_eq!(targets.len(), places.len(), "{targets:?}");
    let blobs = layout.blob_digests().len() as u64;
    let bytes: u64 = std::iter::once(&layout.config)
        .chain(&layout.layers)
        .map(|b| b.size as u64)
        .sum();
    for (target, place) in targets.iter().zip(places) {
        let name = place.name();
        assert_eq!(target["host"], place.host().as_str(), "{name}");
        assert_eq!(target["account"], place.account, "{name}");
        assert_eq!(target["region"], place.region, "{name}");
        assert_eq!(target["repository"], place.repository, "{name}");
        assert_eq!(target["uri"], place.uri(&layout.digest).as_str(), "{name}");
        assert_eq!(
            target["tags"],
            serde_json::json!(["v1", "stable"]),
            "{name}"
        );
        assert_eq!(target["bytes_uploaded"], bytes, "{name}");
        assert_eq!(target["blobs_uploaded"], blobs, "{name}");
        assert_eq!(target["blobs_skipped"], 0, "{name}");
        for action in ["InitiateLayerUpload", "CompleteLayerUpload", "PutImage"] {
            assert_eq!(
                target["calls"][action],
                calls_for(stack, action, place.account) as u64,
                "{name}: {action} in {target}"
            );
        }
    }
}

/// The job summary has a table row for each target, naming it and no other.
fn assert_summary_rows(summary: &str, places: &[Place]) {
    let names: Vec<String> = places.iter().map(Place::name).collect();
    for name in &names {
        let row = summary.lines().find(|l| {
            l.starts_with('|')
                && l.contains(name.as_str())
                && names.iter().filter(|n| l.contains(n.as_str())).count() == 1
        });
        assert!(row.is_some(), "no summary row for {name}:\n{summary}");
    }
}

#[test]
fn a_registry_source_is_fetched_once_for_every_target() {
    let stack = Stack::start();
    let places = release();
    for place in &places {
        place.create(&stack, false);
    }
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let layout = write_layout(
        dir.path(),
        "v1",
        &[
            random_bytes(1611, 3 * MIB),
            random_bytes(1612, 200 * 1024),
            empty_layer(),
        ],
    );
    registry.skopeo_copy(&layout.reference("v1"), "team/app:v1");
    // The recorder stands in front of the source registry and counts what it is asked.
    let source = Recorder::start(registry.port);
    let image = format!("docker://127.0.0.1:{}/team/app:v1", source.port);

    let run = push(&stack, &image, &lines(&places), "v1");

    assert!(run.ok(), "{}", run.log());
    for place in &places {
        place.assert_holds(&stack, &layout, &["v1"]);
    }
    let blob_gets: Vec<String> = source
        .calls()
        .into_iter()
        .filter(|c| c.method == "GET" && c.path.contains("/blobs/"))
        .map(|c| c.path)
        .collect();
    let mut fetched: HashMap<String, usize> = HashMap::new();
    for path in &blob_gets {
        let digest = path.rsplit('/').next().unwrap_or_default().to_owned();
        *fetched.entry(digest).or_default() += 1;
    }
    let expected: HashMap<String, usize> =
        layout.blob_digests().into_iter().map(|d| (d, 1)).collect();
    assert_eq!(fetched, expected, "blob GETs at the source: {blob_gets:#?}");
}

/// The recorder refuses every InitiateLayerUpload of `refused`'s account, as ECR does a
/// role its policy does not allow; the release of `layout` to `places` is pushed.
fn push_with_a_refusing_target(
    stack: &Stack,
    places: &[Place],
    refused: &Place,
    layout: &Layout,
) -> Run {
    let message = format!(
        "User: arn:aws:sts::{account}:assumed-role/ecr-publisher/GitHubActions is not authorized to perform: ecr:InitiateLayerUpload on resource: arn:aws:ecr:{region}:{account}:repository/{repository} because no identity-based policy allows the ecr:InitiateLayerUpload action",
        account = refused.account,
        region = refused.region,
        repository = refused.repository,
    );
    stack.recorder.refuse_for(
        "InitiateLayerUpload",
        refused.account,
        "400 Bad Request",
        "AccessDeniedException",
        &message,
    );
    push(stack, &layout.reference("v1"), &lines(places), "v1,stable")
}

#[test]
fn a_target_that_refuses_its_uploads_stops_every_tag_and_is_named() {
    let stack = Stack::start();
    let places = release();
    for place in &places {
        place.create(&stack, false);
    }
    let dir = tempfile::tempdir().unwrap();
    let layout = small_image(dir.path(), 1621);
    let refused = places[1];

    let run = push_with_a_refusing_target(&stack, &places, &refused, &layout);

    assert_eq!(run.code, Some(1), "{}", run.log());
    assert!(
        calls_for(&stack, "InitiateLayerUpload", refused.account) > 0,
        "the refusal was never met"
    );
    let error = run.error();
    assert!(error.starts_with("targets: "), "{error}");
    assert!(
        error.contains(&format!("{} (account {})", refused.name(), refused.account)),
        "{error}"
    );
    assert!(error.contains("InitiateLayerUpload"), "{error}");
    assert!(
        error.contains("no tag was written on any target"),
        "{error}"
    );
    for other in [places[0], places[2]] {
        assert!(
            !error.contains(&format!("{} (account", other.name())),
            "{} did not fail: {error}",
            other.name()
        );
    }
    assert!(tag_writes(&stack).is_empty(), "{:#?}", tag_writes(&stack));
    for place in &places {
        for tag in ["v1", "stable"] {
            assert!(
                place.tagged(&stack, tag).is_none(),
                "{}:{tag}",
                place.name()
            );
        }
    }
}

#[test]
fn a_rerun_after_a_refusal_uploads_only_what_is_missing_and_finishes() {
    let stack = Stack::start();
    let places = release();
    for place in &places {
        place.create(&stack, false);
    }
    let dir = tempfile::tempdir().unwrap();
    let layout = small_image(dir.path(), 1631);
    let refused = places[1];
    let failed = push_with_a_refusing_target(&stack, &places, &refused, &layout);
    assert_eq!(failed.code, Some(1), "{}", failed.log());
    let missing: Vec<Vec<String>> = places.iter().map(|p| p.missing(&stack, &layout)).collect();
    assert_eq!(missing[1].len(), layout.blob_digests().len(), "{missing:?}");
    for (place, lacks) in places.iter().zip(&missing) {
        if place.account == refused.account {
            continue;
        }
        assert!(lacks.is_empty(), "{}: lacks {lacks:?}", place.name());
        let untagged = stack.moto.manifest_by_digest_in(
            place.account,
            place.region,
            place.repository,
            &layout.digest,
        );
        assert!(untagged.is_some(), "{}: phase 1 unfinished", place.name());
    }
    // The policy is fixed; the same step runs again.
    stack.recorder.calm();
    stack.recorder.forget();

    let rerun = push(
        &stack,
        &layout.reference("v1"),
        &lines(&places),
        "v1,stable",
    );

    assert!(rerun.ok(), "{}", rerun.log());
    for (place, lacks) in places.iter().zip(&missing) {
        place.assert_holds(&stack, &layout, &["v1", "stable"]);
        assert_eq!(
            calls_for(&stack, "InitiateLayerUpload", place.account),
            lacks.len(),
            "{}",
            place.name()
        );
        let mut sent: Vec<String> = stack
            .recorder
            .uploaded_layers_to(place.account)
            .into_keys()
            .collect();
        sent.sort();
        let mut lacks = lacks.clone();
        lacks.sort();
        assert_eq!(sent, lacks, "{}", place.name());
    }
    let targets = targets_output(&rerun);
    let blobs = layout.blob_digests().len();
    for ((target, place), lacks) in targets.iter().zip(&places).zip(&missing) {
        assert_eq!(target["blobs_uploaded"], lacks.len(), "{}", place.name());
        assert_eq!(
            target["blobs_skipped"],
            blobs - lacks.len(),
            "{}",
            place.name()
        );
    }
}

#[test]
fn an_immutable_tag_on_one_target_moves_no_tag_on_any() {
    let stack = Stack::start();
    let places = release();
    places[0].create(&stack, false);
    places[1].create(&stack, true);
    places[2].create(&stack, false);
    let old_dir = tempfile::tempdir().unwrap();
    let old = small_image(old_dir.path(), 1641);
    let new_dir = tempfile::tempdir().unwrap();
    let new = small_image(new_dir.path(), 1651);
    // The release before: v1 on the first two targets.
    let before = push(&stack, &old.reference("v1"), &lines(&places[..2]), "v1");
    assert!(before.ok(), "{}", before.log());
    stack.recorder.forget();

    let run = push(&stack, &new.reference("v1"), &lines(&places), "v1,latest");

    assert_eq!(run.code, Some(1), "{}", run.log());
    let error = run.error();
    assert!(error.contains(&places[1].name()), "{error}");
    assert!(
        error.contains("immutable") && error.contains(&old.digest),
        "{error}"
    );
    assert!(error.contains("no tag was moved on any target"), "{error}");
    assert!(tag_writes(&stack).is_empty(), "{:#?}", tag_writes(&stack));
    for place in &places[..2] {
        let (digest, manifest) = place.tagged(&stack, "v1").expect("v1 is still there");
        assert_eq!(digest, old.digest, "{}: v1 moved", place.name());
        assert_eq!(manifest.as_bytes(), old.manifest.as_slice());
    }
    assert!(places[2].tagged(&stack, "v1").is_none());
    for place in &places {
        assert!(place.tagged(&stack, "latest").is_none(), "{}", place.name());
    }
}

#[test]
fn bad_target_lines_are_each_one_error_before_any_call() {
    let stack = Stack::start();
    let dir = tempfile::tempdir().unwrap();
    let layout = small_image(dir.path(), 1661);
    let ecr = format!("{CI_ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com");
    let cases: Vec<(String, usize, &str)> = vec![
        (format!("# release\n\n{ecr}"), 3, "has no repository"),
        (format!("{ecr}/app\ndocker://{ecr}/app"), 2, "has a scheme"),
        (format!("{ecr}/app:v1"), 1, "carries a tag or digest"),
        (format!("{ecr}/Team/App"), 1, "the repository"),
        (
            format!("{ecr}/app,role=arn:aws:iam::1111:role/p"),
            1,
            "role=",
        ),
        (
            format!("{ecr}/app,external-id=abc"),
            1,
            "external-id= is set but role= is not",
        ),
        (
            format!("{ecr}/app,colour=blue"),
            1,
            "`colour` is not an option of a target",
        ),
        (format!("{ecr}/app,role"), 1, "is not KEY=VALUE"),
        (format!("{ecr}/app\n{ecr}/app"), 2, "again (line 1)"),
        (
            format!("registry.example.com/app,role={PUBLISHER_ROLE}"),
            1,
            "role= is for ECR",
        ),
        ("public.ecr.aws/app".into(), 1, "is ECR Public"),
        ("not_a host/app".into(), 1, "is not a registry host"),
    ];
    for (targets, line, part) in cases {
        let run = push(&stack, &layout.reference("v1"), &targets, "v1");
        assert_input_error(&stack, &run, &format!("targets: line {line} "), &targets);
        assert!(run.error().contains(part), "{targets:?}: {}", run.error());
    }
    // `--targets` repeated on the command line: the lines are numbered across them.
    let run = Action::bare(&stack.recorder)
        .args(&[
            "push",
            "--image",
            &layout.reference("v1"),
            "--targets",
            &format!("{ecr}/app"),
            "--targets",
            &format!("{ecr}/other\n{ecr}/app"),
        ])
        .run();
    assert_input_error(&stack, &run, "targets: line 3 ", "--targets");
    // `targets` replaces the inputs of one destination: both is an error naming both.
    for (input, value) in [
        ("repository", "app"),
        ("registry", ecr.as_str()),
        ("registry-id", CI_ACCOUNT),
        ("cross-account-role", PUBLISHER_ROLE),
        ("cross-account-external-id", "release"),
    ] {
        let run = stack
            .action()
            .input("image", &layout.reference("v1"))
            .input("targets", &format!("{ecr}/app"))
            .input(input, value)
            .run();
        assert_input_error(&stack, &run, "", input);
        let error = run.error();
        assert!(
            error.contains("targets") && error.contains(input),
            "{input}: {error}"
        );
    }
}

/// An input error: exit code 2, one error line starting with `starts`, and neither a
/// token asked for nor a call made.
fn assert_input_error(stack: &Stack, run: &Run, starts: &str, case: &str) {
    assert_eq!(run.code, Some(2), "{case:?}: {}", run.log());
    assert!(run.error().starts_with(starts), "{case:?}: {}", run.error());
    let errors = run
        .stdout
        .lines()
        .chain(run.stderr.lines())
        .filter(|l| l.starts_with("::error") || l.starts_with("error: "))
        .count();
    assert_eq!(errors, 1, "{case:?}: {}", run.log());
    assert!(
        stack.recorder.calls().is_empty(),
        "{case:?}: a call was made"
    );
    assert!(
        stack.oidc.tokens().is_empty(),
        "{case:?}: a token was asked for"
    );
}

#[test]
fn digest_file_holds_the_digest_for_one_target_or_several() {
    let stack = Stack::start();
    let places = release();
    for place in &places {
        place.create(&stack, false);
    }
    stack.moto.create_repository(CI_ACCOUNT, "single", false);
    let dir = tempfile::tempdir().unwrap();
    let layout = small_image(dir.path(), 1671);
    let out = tempfile::tempdir().unwrap();

    let single_file = out.path().join("single.digest");
    // The runner sets every declared input: `targets` comes empty beside `repository`.
    let single = stack
        .action()
        .input("image", &layout.reference("v1"))
        .input("repository", "single")
        .input("targets", "")
        .input("digest-file", &single_file.display().to_string())
        .run();
    let several_file = out.path().join("several.digest");
    let several = stack
        .action()
        .input("image", &layout.reference("v1"))
        .input("targets", &lines(&places))
        .input("digest-file", &several_file.display().to_string())
        .run();

    for (run, file) in [(single, single_file), (several, several_file)] {
        assert!(run.ok(), "{}", run.log());
        let text =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert_eq!(text.trim_end_matches('\n'), layout.digest, "{text:?}");
        assert_eq!(text.lines().count(), 1, "{text:?}");
    }
}

/// A registry that is not ECR is a target beside ECR ones: its login is the Docker
/// config's (none here), and its account and region are null in the output.
#[test]
fn an_oci_registry_is_a_target_beside_ecr() {
    let stack = Stack::start();
    let ecr = release()[0];
    ecr.create(&stack, false);
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let layout = small_image(dir.path(), 1681);
    let targets = format!("{}\n{}/mirror/app", ecr.line(), registry.host());

    let run = push(&stack, &layout.reference("v1"), &targets, "v1");

    assert!(run.ok(), "{}", run.log());
    ecr.assert_holds(&stack, &layout, &["v1"]);
    assert_eq!(registry.manifest("mirror/app:v1"), layout.manifest);
    let uris = format!(
        "{}\n{}/mirror/app@{}",
        ecr.uri(&layout.digest),
        registry.host(),
        layout.digest
    );
    assert_eq!(run.outputs["image-uris"], uris);
    let targets = targets_output(&run);
    assert_eq!(targets[1]["host"], registry.host().as_str());
    assert!(targets[1]["account"].is_null(), "{}", targets[1]);
    assert!(targets[1]["region"].is_null(), "{}", targets[1]);
}
