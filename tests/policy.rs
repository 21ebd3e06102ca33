//! `ecr-push policy`: the documents it writes are the ones the repository ships (the
//! README's IAM section and docs/iam/policies), `check` decides like STS, and `lint`
//! finds the mistakes of the textbook documents users copy.

use std::path::Path;
use std::process::{Command, Output};

fn ecr_push(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ecr-push"))
        .args(args)
        .output()
        .expect("run ecr-push")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

const PLACEHOLDERS: &[&str] = &[
    "--account",
    "111111111111",
    "--region",
    "us-east-1",
    "--repository",
    "secure-flask",
    "--github-repo",
    "ORG/REPO",
    "--branch",
    "main",
];

#[test]
fn readme_iam_section_is_the_commands_own_output() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let mut blocks = 0;
    for chunk in readme.split("<!-- BEGIN ecr-push ").skip(1) {
        let (args, rest) = chunk.split_once(" -->\n").expect("a BEGIN line");
        let (body, _) = rest.split_once("<!-- END -->").expect("an END marker");
        let args: Vec<&str> = args.split_whitespace().collect();
        let output = ecr_push(&args);
        assert!(output.status.success(), "{args:?}");
        assert_eq!(
            body,
            stdout(&output),
            "README block for {args:?} drifted: regenerate it"
        );
        blocks += 1;
    }
    assert_eq!(blocks, 3, "single account, chaining, direct");
}

#[test]
fn shipped_policy_files_are_the_commands_own_output() {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/iam/policies");
    let variants: [(&[&str], &[&str]); 3] = [
        (
            &[],
            &[
                "aws-github-oidc-trust.json",
                "aws-ecr-ci-push.json",
                "aws-ecr-readonly-pull.json",
                "aws-ecr-scanner.json",
            ],
        ),
        (
            &[
                "--registry-account",
                "222222222222",
                "--publisher-role",
                "ecr-publisher",
                "--external-id",
                "EXTERNAL_ID",
                "--session-tags",
            ],
            &[
                "aws-ecr-publisher-trust.json",
                "aws-ecr-ci-assume-publisher.json",
            ],
        ),
        (
            &["--registry-account", "222222222222"],
            &["aws-ecr-cross-account-repository-policy.json"],
        ),
    ];
    let mut compared = 0;
    for (extra, files) in variants {
        let dir = tempfile::tempdir().unwrap();
        let mut args = vec!["policy", "generate"];
        args.extend_from_slice(PLACEHOLDERS);
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--out-dir", dir.path().to_str().unwrap()]);
        assert!(ecr_push(&args).status.success(), "{args:?}");
        for file in files {
            let generated = std::fs::read_to_string(dir.path().join(file)).unwrap();
            let committed = std::fs::read_to_string(shipped.join(file)).unwrap();
            assert_eq!(committed, generated, "{file} drifted: regenerate it");
            compared += 1;
        }
    }
    let on_disk = std::fs::read_dir(&shipped).unwrap().count();
    assert_eq!(on_disk, compared, "a shipped policy file has no generator");
}

#[test]
fn every_format_holds_the_same_documents() {
    let mut args = vec!["policy", "generate"];
    args.extend_from_slice(PLACEHOLDERS);
    args.extend_from_slice(&[
        "--registry-account",
        "222222222222",
        "--publisher-role",
        "pub",
    ]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&ecr_push(&args))).unwrap();
    let trust = &json["aws-ecr-publisher-trust.json"];
    assert_eq!(
        trust["Statement"][0]["Principal"]["AWS"],
        "arn:aws:iam::111111111111:role/ecr-ci-push-role"
    );
    for format in ["aws-cli", "cloudformation", "terraform", "markdown"] {
        let mut with_format = args.clone();
        with_format.extend_from_slice(&["--format", format]);
        let text = stdout(&ecr_push(&with_format));
        assert!(
            text.contains("arn:aws:iam::222222222222:role/pub"),
            "{format}"
        );
        assert!(
            text.contains("repo:ORG/REPO:ref:refs/heads/main"),
            "{format}"
        );
        assert!(text.contains("222222222222"), "{format}");
    }
    let cloudformation = stdout(&ecr_push(
        &[args.as_slice(), &["--format", "cloudformation"]].concat(),
    ));
    let stacks: Vec<&str> = cloudformation
        .split("--- # stack for account ")
        .skip(1)
        .collect();
    assert_eq!(stacks.len(), 2, "one stack per account");
    for stack in stacks {
        let (_, template) = stack.split_once('\n').unwrap();
        let template: serde_json::Value =
            serde_json::from_str(template).expect("valid JSON template");
        assert!(
            template["Resources"]
                .as_object()
                .is_some_and(|r| !r.is_empty())
        );
    }
}

#[test]
fn bad_generate_input_names_the_option() {
    let output = ecr_push(&[
        "policy",
        "generate",
        "--account",
        "1234",
        "--region",
        "us-east-1",
        "--repository",
        "app",
        "--github-repo",
        "o/r",
        "--branch",
        "main",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("account: `1234` is not an AWS account id"),
        "{stderr}"
    );
    let output = ecr_push(&[
        "policy",
        "generate",
        "--account",
        "111111111111",
        "--region",
        "us-east-1",
        "--repository",
        "app",
        "--github-repo",
        "o/r",
    ]);
    assert_eq!(output.status.code(), Some(2), "a subject is required");
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[test]
fn check_decides_like_sts_and_never_prints_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let trust = dir.path().join("trust.json");
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/docs/iam/policies/aws-github-oidc-trust.json"
        ),
        &trust,
    )
    .unwrap();
    let token = |sub: &str| {
        format!(
            "{}.{}.c2lnbmF0dXJlLW5vdC1jaGVja2Vk",
            b64(br#"{"alg":"RS256"}"#),
            b64(
                serde_json::json!({"sub": sub, "aud": "sts.amazonaws.com", "ref": "refs/heads/x"})
                    .to_string()
                    .as_bytes()
            )
        )
    };
    let good = token("repo:ORG/REPO:ref:refs/heads/main");
    let output = ecr_push(&[
        "policy",
        "check",
        "--trust",
        trust.to_str().unwrap(),
        "--token",
        &good,
    ]);
    assert!(output.status.success(), "{}", stdout(&output));
    assert!(stdout(&output).starts_with("allowed: statement 0 (GitHubActionsOidc)"));

    let bad = token("repo:ORG/REPO:ref:refs/heads/feature");
    let output = ecr_push(&[
        "policy",
        "check",
        "--trust",
        trust.to_str().unwrap(),
        "--token",
        &bad,
    ]);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    assert!(
        text.contains("the token has `repo:ORG/REPO:ref:refs/heads/feature`"),
        "{text}"
    );
    assert!(
        !text.contains(&bad) && !text.contains("c2lnbmF0dXJl"),
        "the token is printed"
    );

    let claims = dir.path().join("claims.json");
    std::fs::write(
        &claims,
        r#"{"sub": "repo:org/repo:ref:refs/heads/main", "aud": "sts.amazonaws.com"}"#,
    )
    .unwrap();
    let output = ecr_push(&[
        "policy",
        "check",
        "--trust",
        trust.to_str().unwrap(),
        "--claims",
        claims.to_str().unwrap(),
    ]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "sub values are case-sensitive"
    );
    assert!(
        stdout(&output).contains("differ only in case"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn lint_finds_the_textbook_mistakes() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/textbook");
    let lint = |file: &str| {
        let output = ecr_push(&["policy", "lint", fixtures.join(file).to_str().unwrap()]);
        (output.status.code(), stdout(&output))
    };
    let expectations: [(&str, &[&str]); 8] = [
        (
            "answer-repository-policy.json",
            &[
                "high: statement 0 (AllowPull): `arn:aws:iam::accountb-id:user/pull-user-1` has `accountb-id` where a 12-digit account id belongs",
                "medium: statement 1 (AllowAll): ecr:GetAuthorizationToken has no effect in a repository policy",
                "low: statement 1 (AllowAll): `arn:aws:iam::accountb-id:user/push-user` is an IAM user",
            ],
        ),
        (
            "answer-publisher-trust.json",
            &[
                "`AccountA-ID` where a 12-digit account id belongs",
                "is an IAM user",
            ],
        ),
        (
            "answer-publisher-permissions.json",
            &[
                "high: document: not valid JSON",
                "ecr:InitiateLayerUpload, ecr:UploadLayerPart, ecr:CompleteLayerUpload, ecr:PutImage on Resource \"*\"",
            ],
        ),
        (
            "answer-user-assume.json",
            &["`AccountB-ID` where a 12-digit account id belongs"],
        ),
        (
            "aws-ecr-ci-push.json",
            &[
                "high: statement 0 (ECRPush):",
                "on Resource \"*\"",
                "medium: statement 0 (ECRPush): a push policy that can also delete images",
            ],
        ),
        (
            "aws-github-oidc-trust.json",
            &[
                "high: statement 0: no `token.actions.githubusercontent.com:aud` condition",
                "medium: statement 0: `token.actions.githubusercontent.com:sub` matches `repo:ORG/*`: every repository of the organization",
                "`ACCOUNT_ID` where a 12-digit account id belongs",
            ],
        ),
        (
            "aws-ecr-readonly-pull.json",
            &[
                "high: statement 0 (ECRReadOnlyPull): a pull-only or read-only document holds write actions: ecr:PutImage",
            ],
        ),
        (
            "aws-ecr-scanner.json",
            &["low: statement 0 (ECRScanner): read actions on Resource \"*\""],
        ),
    ];
    for (file, wanted) in expectations {
        let (code, text) = lint(file);
        for w in wanted {
            assert!(text.contains(w), "{file}: missing `{w}` in\n{text}");
        }
        let serious = text.contains(": critical: ") || text.contains(": high: ");
        assert_eq!(code, Some(if serious { 1 } else { 0 }), "{file}");
    }
    // What the generator ships is clean.
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/iam/policies");
    let files: Vec<String> = std::fs::read_dir(&shipped)
        .unwrap()
        .map(|e| e.unwrap().path().to_str().unwrap().to_owned())
        .collect();
    let mut args = vec!["policy", "lint"];
    args.extend(files.iter().map(String::as_str));
    let output = ecr_push(&args);
    assert!(output.status.success(), "{}", stdout(&output));
    assert!(
        stdout(&output).contains(&format!("0 findings in {} documents", files.len())),
        "{}",
        stdout(&output)
    );
}

#[test]
fn lint_flags_an_oidc_trust_open_to_every_repository_as_critical() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("trust.json");
    std::fs::write(
        &file,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow",
          "Principal":{"Federated":"arn:aws:iam::111111111111:oidc-provider/token.actions.githubusercontent.com"},
          "Action":"sts:AssumeRoleWithWebIdentity",
          "Condition":{"StringEquals":{"token.actions.githubusercontent.com:aud":"sts.amazonaws.com"}}}]}"#,
    )
    .unwrap();
    let output = ecr_push(&["policy", "lint", file.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout(&output).contains(": critical: statement 0: no `token.actions.githubusercontent.com:sub` condition: any GitHub Actions job of any repository on earth"), "{}", stdout(&output));
}
