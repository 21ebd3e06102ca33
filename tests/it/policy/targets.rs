//! `policy generate --targets`: the same lines as the push's, every account's documents
//! for them, in every format, clean under `policy lint`, and the lines that cannot be
//! joined up refused with the line named.

use super::{ecr_push, stdout};

/// A release to three accounts and two regions: the CI account's own repository, a
/// second account through a chained role, a third in another region through its own
/// role with an external id; and a mirror that is not ECR.
const TARGETS: &str = "
# release
406817235904.dkr.ecr.us-east-1.amazonaws.com/app
583920174651.dkr.ecr.us-east-1.amazonaws.com/app,role=arn:aws:iam::583920174651:role/ecr-publisher
731905284613.dkr.ecr.eu-west-1.amazonaws.com/app,role=arn:aws:iam::731905284613:role/ecr-publisher,external-id=release-1
localhost:5000/mirror/app
";

fn generate(extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "policy",
        "generate",
        "--account",
        "406817235904",
        "--github-repo",
        "octo-org/octo-repo",
        "--github-owner-id",
        "190583734",
        "--github-repo-id",
        "873419205",
        "--tag",
        "v*",
    ];
    args.extend_from_slice(extra);
    ecr_push(&args)
}

#[test]
fn three_targets_get_each_accounts_documents_and_lint_finds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let output = generate(&[
        "--targets",
        TARGETS,
        "--out-dir",
        dir.path().to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        "note: targets line 6 `localhost:5000/mirror/app`: localhost:5000 is not ECR; its login comes from the Docker config, and no IAM document is written for it"
    );
    let mut files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut expected = vec![
        "aws-github-oidc-trust.json".to_owned(),
        "aws-ecr-ci-assume-publisher.json".to_owned(),
        "aws-ecr-ci-push.json".to_owned(),
    ];
    for account in ["406817235904", "583920174651", "731905284613"] {
        expected.push(format!("aws-ecr-readonly-pull-{account}.json"));
        expected.push(format!("aws-ecr-scanner-{account}.json"));
    }
    for account in ["583920174651", "731905284613"] {
        expected.push(format!(
            "aws-ecr-publisher-trust-{account}-ecr-publisher.json"
        ));
        expected.push(format!(
            "aws-ecr-publisher-push-{account}-ecr-publisher.json"
        ));
    }
    expected.sort();
    assert_eq!(files, expected);

    let read = |name: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.path().join(name)).unwrap()).unwrap()
    };
    let assume = read("aws-ecr-ci-assume-publisher.json");
    assert_eq!(
        assume["Statement"][0]["Resource"],
        serde_json::json!([
            "arn:aws:iam::583920174651:role/ecr-publisher",
            "arn:aws:iam::731905284613:role/ecr-publisher"
        ])
    );
    let trust = read("aws-ecr-publisher-trust-731905284613-ecr-publisher.json");
    assert_eq!(
        trust["Statement"][0]["Condition"]["StringEquals"]["sts:ExternalId"],
        "release-1"
    );
    let push = read("aws-ecr-publisher-push-731905284613-ecr-publisher.json");
    assert_eq!(
        push["Statement"][0]["Resource"],
        "arn:aws:ecr:eu-west-1:731905284613:repository/app"
    );

    let paths: Vec<String> = expected
        .iter()
        .map(|f| dir.path().join(f).to_string_lossy().into_owned())
        .collect();
    let mut lint = vec!["policy", "lint", "--fail-on", "low"];
    lint.extend(paths.iter().map(String::as_str));
    let output = ecr_push(&lint);
    assert!(output.status.success(), "{}", stdout(&output));
    assert!(
        stdout(&output).contains(&format!("0 findings in {} documents", expected.len())),
        "{}",
        stdout(&output)
    );
}

#[test]
fn every_format_keeps_the_accounts_of_three_targets_apart() {
    let render = |format: &str| stdout(&generate(&["--targets", TARGETS, "--format", format]));
    let json: serde_json::Value = serde_json::from_str(&render("json")).unwrap();
    assert_eq!(json.as_object().unwrap().len(), 13);

    let terraform = render("terraform");
    let mut resources: Vec<&str> = terraform
        .lines()
        .filter(|l| l.starts_with("resource "))
        .collect();
    let count = resources.len();
    resources.sort_unstable();
    resources.dedup();
    assert_eq!(
        resources.len(),
        count,
        "a resource name twice:\n{terraform}"
    );
    assert!(terraform.contains("resource \"aws_iam_role\" \"ecr_publisher_583920174651\""));
    assert!(terraform.contains("  provider = aws.account_731905284613\n"));

    let cloudformation = render("cloudformation");
    let stacks: Vec<&str> = cloudformation
        .split("--- # stack for account ")
        .skip(1)
        .collect();
    assert_eq!(stacks.len(), 3, "one stack per account");
    for stack in stacks {
        let (_, template) = stack.split_once('\n').unwrap();
        let template: serde_json::Value = serde_json::from_str(template).unwrap();
        assert!(
            template["Resources"]
                .as_object()
                .is_some_and(|r| !r.is_empty())
        );
    }

    let commands = render("aws-cli");
    for account in ["406817235904", "583920174651", "731905284613"] {
        assert!(
            commands.contains(&format!(
                "# ── In account {account} (run with its credentials) ──"
            )),
            "{commands}"
        );
    }
    assert!(commands.contains("\"sts:ExternalId\": \"release-1\""));
}

#[test]
fn targets_replace_the_single_registry_options_and_bad_lines_are_named() {
    let output = generate(&["--targets", TARGETS, "--repository", "app"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("'--targets <LINE>' cannot be used with '--repository <NAME>'"),
        "{stderr}"
    );
    for (lines, wants) in [
        (
            "583920174651.dkr.ecr.us-east-1.amazonaws.com/app,role=arn:aws:iam::583920174651:role/p\n583920174651.dkr.ecr.us-east-1.amazonaws.com/web,role=arn:aws:iam::583920174651:role/p,external-id=x-1",
            "targets: line 2 `583920174651.dkr.ecr.us-east-1.amazonaws.com/web`: gives arn:aws:iam::583920174651:role/p external-id=x-1, and line 1 no external-id",
        ),
        ("localhost:5000/mirror/app", "targets: lists no ECR target"),
        (
            "583920174651.dkr.ecr.us-east-1.amazonaws.com/App",
            "targets: line 1 `583920174651.dkr.ecr.us-east-1.amazonaws.com/App`: the repository",
        ),
    ] {
        let output = generate(&["--targets", lines]);
        assert_eq!(output.status.code(), Some(2), "{lines}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(wants), "{stderr}");
    }
}

#[test]
fn the_scan_gate_of_a_release_is_granted_on_the_one_repository_it_scans() {
    // The first ECR line is scanned; the CI role pushes it, and its neighbour in the same
    // account and region, across accounts.
    let targets = "
583920174651.dkr.ecr.us-east-1.amazonaws.com/app
583920174651.dkr.ecr.us-east-1.amazonaws.com/other
406817235904.dkr.ecr.us-east-1.amazonaws.com/app
";
    let dir = tempfile::tempdir().unwrap();
    let output = generate(&[
        "--targets",
        targets,
        "--scan-gate",
        "--out-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let read = |name: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.path().join(name)).unwrap()).unwrap()
    };
    let scanned = "arn:aws:ecr:us-east-1:583920174651:repository/app";
    let push = read("aws-ecr-ci-push.json");
    let statements = push["Statement"].as_array().unwrap();
    let scan: Vec<&serde_json::Value> = statements
        .iter()
        .filter(|s| s["Sid"] == "ScanGate")
        .collect();
    assert_eq!(scan.len(), 1, "{push}");
    assert_eq!(
        scan[0]["Action"],
        serde_json::json!(["ecr:StartImageScan", "ecr:DescribeImageScanFindings"])
    );
    assert_eq!(scan[0]["Resource"], scanned);
    let pushing = statements
        .iter()
        .find(|s| s["Sid"] == "PushToRepository")
        .unwrap();
    assert!(
        !pushing["Action"].to_string().contains("Scan"),
        "every repository may scan: {push}"
    );

    // The scanned repository's policy is its own document, with the gate's statement;
    // its neighbour's has none.
    let base = "aws-ecr-cross-account-repository-policy-583920174651-us-east-1";
    let policies = [
        read(&format!("{base}.json")),
        read(&format!("{base}-2.json")),
    ];
    let scanning: Vec<&serde_json::Value> = policies
        .iter()
        .filter(|p| p.to_string().contains("StartImageScan"))
        .collect();
    assert_eq!(scanning.len(), 1, "{policies:?}");
    let paths: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path().to_string_lossy().into_owned())
        .filter(|p| p.ends_with(".json"))
        .collect();
    let mut lint = vec!["policy", "lint", "--fail-on", "low"];
    lint.extend(paths.iter().map(String::as_str));
    let output = ecr_push(&lint);
    assert!(output.status.success(), "{}", stdout(&output));
}
