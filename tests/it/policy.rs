//! `ecr-push policy`: the documents it writes are the ones the repository ships (the
//! README's IAM section and docs/iam/policies), `check` decides like STS, and `lint`
//! finds the mistakes of the textbook documents users copy.

mod targets;

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
    "--github-owner-id",
    "123456",
    "--github-repo-id",
    "456789",
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
    for good in [
        "repo:ORG/REPO:ref:refs/heads/main",
        "repo:ORG@123456/REPO@456789:ref:refs/heads/main",
    ] {
        let output = ecr_push(&[
            "policy",
            "check",
            "--trust",
            trust.to_str().unwrap(),
            "--token",
            &token(good),
        ]);
        assert!(output.status.success(), "{good}: {}", stdout(&output));
        assert!(stdout(&output).starts_with("allowed: statement 0 (GitHubActionsOidc)"));
    }

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
        !text.contains("immutable subject"),
        "both forms are in the trust: {text}"
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
    // Each file's findings, exactly: `severity[rule]: where: the start of what it says`.
    let expectations: [(&str, &[&str]); 7] = [
        (
            "answer-repository-policy.json",
            &[
                "medium[placeholder]: document: `accountb-id` is a placeholder, not a value (in statement 0 Principal and statement 1 Principal)",
                "medium[auth-token-in-repository-policy]: statement 1 (AllowAll): ecr:GetAuthorizationToken in a repository policy: ECR refuses such a policy",
                "low[iam-user]: statement 0 (AllowPull): `arn:aws:iam::accountb-id:user/pull-user-1`, `arn:aws:iam::accountb-id:user/pull-user-2` are IAM users",
                "low[iam-user]: statement 1 (AllowAll): `arn:aws:iam::accountb-id:user/push-user` is an IAM user",
            ],
        ),
        (
            "answer-publisher-trust.json",
            &[
                "medium[placeholder]: document: `AccountA-ID` is a placeholder",
                "low[iam-user]: statement 0: `arn:aws:iam::AccountA-ID:user/Username` is an IAM user",
            ],
        ),
        (
            "answer-user-assume.json",
            &["medium[placeholder]: document: `AccountB-ID` is a placeholder"],
        ),
        (
            "aws-ecr-ci-push.json",
            &[
                "high[write-any-repository]: statement 0 (ECRPush): ecr:InitiateLayerUpload, ecr:UploadLayerPart, ecr:CompleteLayerUpload and 2 more on `*`: every repository",
                "medium[push-can-delete]: statement 0 (ECRPush): a statement that pushes can also delete images",
            ],
        ),
        (
            "aws-github-oidc-trust.json",
            &[
                "high[github-org-wide]: statement 0: `repo:ORG/*` lets every repository of `ORG`, today's and tomorrow's, assume this role",
                "medium[github-aud-missing]: statement 0: no `token.actions.githubusercontent.com:aud` condition",
                "medium[placeholder]: document: `ACCOUNT_ID` is a placeholder",
                "low[github-classic-only]: statement 0: every `sub` pattern (`repo:ORG/*`) has the classic form `repo:OWNER/REPO:…`; a repository created, renamed or transferred on github.com since 2026-07-15 (or opted in) has immutable subjects `repo:ORG@OWNER_ID/REPO@REPO_ID:…`",
            ],
        ),
        (
            // Named pull-only: judged by what it holds, a write on every repository.
            "aws-ecr-readonly-pull.json",
            &["high[write-any-repository]: statement 0 (ECRReadOnlyPull): ecr:PutImage on `*`"],
        ),
        (
            "aws-ecr-scanner.json",
            &[
                "low[read-any-repository]: statement 0 (ECRScanner): ecr:BatchGetImage, ecr:DescribeImages, ecr:DescribeRepositories and 2 more on `*`",
            ],
        ),
    ];
    for (file, wanted) in expectations {
        let (code, text) = lint(file);
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("]: "))
            .map(|l| l.split_once(".json: ").map_or(l, |(_, rest)| rest))
            .collect();
        assert_eq!(lines.len(), wanted.len(), "{file}:\n{text}");
        for w in wanted {
            assert!(
                lines.iter().any(|l| l.starts_with(w)),
                "{file}: missing `{w}` in\n{text}"
            );
        }
        let serious = text.contains(": critical[") || text.contains(": high[");
        assert_eq!(code, Some(if serious { 1 } else { 0 }), "{file}");
    }

    // JSON with a comment is not a policy IAM takes: an input error, one line, exit 2.
    let output = ecr_push(&[
        "policy",
        "lint",
        fixtures.join("aws-ecr-scanner.json").to_str().unwrap(),
        fixtures
            .join("answer-publisher-permissions.json")
            .to_str()
            .unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        stdout(&output),
        "",
        "nothing is said of the other file either"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("answer-publisher-permissions.json: not valid JSON (")
            && stderr
                .trim_end()
                .ends_with("; JSON has no comments: remove them"),
        "{stderr}"
    );

    // --fail-on: the scanner's worst is low, which passes the default and fails `low`.
    let scanner = fixtures.join("aws-ecr-scanner.json");
    for (fail_on, code) in [("critical", 0), ("high", 0), ("medium", 0), ("low", 1)] {
        let output = ecr_push(&[
            "policy",
            "lint",
            "--fail-on",
            fail_on,
            scanner.to_str().unwrap(),
        ]);
        assert_eq!(output.status.code(), Some(code), "--fail-on {fail_on}");
    }

    // What the generator ships is templates: their one finding each is the stand-in
    // account left in, and with real accounts put in they are clean.
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/iam/policies");
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&shipped).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let filled = dir.path().join(path.file_name().unwrap());
        std::fs::write(
            &filled,
            text.replace("111111111111", "406817235904")
                .replace("222222222222", "583920174651"),
        )
        .unwrap();
        files.push((path, filled));
    }
    let as_templates: Vec<&str> = files.iter().map(|(p, _)| p.to_str().unwrap()).collect();
    let output = ecr_push(&[&["policy", "lint"][..], &as_templates].concat());
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("]: ")).collect();
    assert_eq!(lines.len(), files.len(), "{text}");
    assert!(
        lines.iter().all(|l| l
            .contains("[placeholder]: document: `111111111111` is a placeholder")
            || l.contains("[placeholder]: document: `222222222222` is a placeholder")),
        "{text}"
    );
    let filled: Vec<&str> = files.iter().map(|(_, f)| f.to_str().unwrap()).collect();
    let output = ecr_push(&[&["policy", "lint", "--fail-on", "low"][..], &filled].concat());
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
    assert!(stdout(&output).contains(": critical[github-sub-missing]: statement 0: no `token.actions.githubusercontent.com:sub` condition: any GitHub Actions job of any repository on earth can assume this role; IAM refuses to create or update such a trust since June 2025"), "{}", stdout(&output));
}

/// A second, independent reading of IAM's string conditions, for the generated trust:
/// every key of every operator must hold, any value of a key may match, `*` and `?` are
/// wildcards for StringLike only.
fn independent_allows(trust: &serde_json::Value, claims: &serde_json::Value) -> bool {
    fn glob(pattern: &[u8], text: &[u8]) -> bool {
        match (pattern.first(), text.first()) {
            (None, None) => true,
            (Some(b'*'), _) => {
                glob(&pattern[1..], text) || (!text.is_empty() && glob(pattern, &text[1..]))
            }
            (Some(b'?'), Some(_)) => glob(&pattern[1..], &text[1..]),
            (Some(p), Some(t)) if p == t => glob(&pattern[1..], &text[1..]),
            _ => false,
        }
    }
    trust["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .any(|statement| {
            statement["Effect"] == "Allow"
                && statement["Action"] == "sts:AssumeRoleWithWebIdentity"
                && statement["Condition"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .all(|(operator, keys)| {
                        keys.as_object().unwrap().iter().all(|(key, wanted)| {
                            let claim = key
                                .strip_prefix("token.actions.githubusercontent.com:")
                                .unwrap();
                            let Some(actual) = claims[claim].as_str() else {
                                return false;
                            };
                            let wanted: Vec<&str> = match wanted {
                                serde_json::Value::String(s) => vec![s.as_str()],
                                other => other
                                    .as_array()
                                    .unwrap()
                                    .iter()
                                    .map(|v| v.as_str().unwrap())
                                    .collect(),
                            };
                            wanted.iter().any(|w| match operator.as_str() {
                                "StringEquals" => *w == actual,
                                "StringLike" => glob(w.as_bytes(), actual.as_bytes()),
                                other => panic!("the generator wrote {other}"),
                            })
                        })
                    })
        })
}

#[test]
fn generated_trust_admits_this_repository_in_both_forms_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
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
        "octo-org/octo-repo",
        "--github-owner-id",
        "190583734",
        "--github-repo-id",
        "873419205",
        "--branch",
        "main",
        "--tag",
        "v*",
        "--out-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.stderr.is_empty(), "no note when the ids are given");
    let trust_file = dir.path().join("aws-github-oidc-trust.json");
    let trust: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&trust_file).unwrap()).unwrap();
    let cases = [
        ("repo:octo-org/octo-repo:ref:refs/heads/main", true),
        (
            "repo:octo-org@190583734/octo-repo@873419205:ref:refs/heads/main",
            true,
        ),
        ("repo:octo-org/octo-repo:ref:refs/tags/v1.2.0", true),
        (
            "repo:octo-org@190583734/octo-repo@873419205:ref:refs/tags/v1.2.0",
            true,
        ),
        // The same names under other ids: a recycled owner or repository.
        (
            "repo:octo-org@190583735/octo-repo@873419205:ref:refs/heads/main",
            false,
        ),
        (
            "repo:octo-org@190583734/octo-repo@873419206:ref:refs/heads/main",
            false,
        ),
        (
            "repo:octo-org@190583734/octo-repo@873419205:ref:refs/heads/feature",
            false,
        ),
        ("repo:octo-org/octo-repo:ref:refs/heads/feature", false),
        (
            "repo:octo-org@190583734/octo-repo@873419205:pull_request",
            false,
        ),
        ("repo:octo-org/octo-repo-fork:ref:refs/heads/main", false),
        (
            "repo:octo-org-evil@1/octo-repo@873419205:ref:refs/heads/main",
            false,
        ),
    ];
    for (sub, expected) in cases {
        let claims = serde_json::json!({"sub": sub, "aud": "sts.amazonaws.com"});
        assert_eq!(
            independent_allows(&trust, &claims),
            expected,
            "independent: {sub}"
        );
        let claims_file = dir.path().join("claims.json");
        std::fs::write(&claims_file, claims.to_string()).unwrap();
        let output = ecr_push(&[
            "policy",
            "check",
            "--trust",
            trust_file.to_str().unwrap(),
            "--claims",
            claims_file.to_str().unwrap(),
        ]);
        assert_eq!(
            output.status.success(),
            expected,
            "policy check: {sub}: {}",
            stdout(&output)
        );
    }
}

#[test]
fn generate_takes_subjects_as_users_write_them() {
    let generate = |extra: &[&str]| {
        let mut args = vec![
            "policy",
            "generate",
            "--account",
            "111111111111",
            "--region",
            "us-east-1",
            "--repository",
            "app",
            "--github-repo",
            "octo-org/octo-repo",
        ];
        args.extend_from_slice(extra);
        let output = ecr_push(&args);
        let json = serde_json::from_slice::<serde_json::Value>(&output.stdout).ok();
        (
            output.status.code(),
            json,
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let sub = |json: &serde_json::Value| {
        json["aws-github-oidc-trust.json"]["Statement"][0]["Condition"].clone()
    };
    // A full ref where a name belongs is the same name.
    let (code, short, _) = generate(&["--branch", "main"]);
    assert_eq!(code, Some(0));
    let (_, full, _) = generate(&["--branch", "refs/heads/main"]);
    assert_eq!(sub(&short.unwrap()), sub(&full.unwrap()));
    let (_, tag, _) = generate(&["--tag", "refs/tags/v*"]);
    assert_eq!(
        sub(&tag.unwrap())["StringLike"]["token.actions.githubusercontent.com:sub"],
        "repo:octo-org/octo-repo:ref:refs/tags/v*"
    );
    // A ref of the other kind, or some other ref, is refused, naming the fix.
    let (code, _, stderr) = generate(&["--branch", "refs/tags/v1"]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("branch: `refs/tags/v1` is a tag, not a branch: give --tag v1"),
        "{stderr}"
    );
    let (code, _, stderr) = generate(&["--tag", "refs/pull/1/merge"]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("tag: `refs/pull/1/merge` is not a tag name"),
        "{stderr}"
    );
    // Several subjects: one statement, StringLike for all once one is a pattern.
    let (_, several, _) = generate(&[
        "--branch",
        "main",
        "--tag",
        "v*",
        "--github-owner-id",
        "190583734",
        "--github-repo-id",
        "873419205",
    ]);
    assert_eq!(
        sub(&several.unwrap())["StringLike"]["token.actions.githubusercontent.com:sub"],
        serde_json::json!([
            "repo:octo-org/octo-repo:ref:refs/heads/main",
            "repo:octo-org@190583734/octo-repo@873419205:ref:refs/heads/main",
            "repo:octo-org/octo-repo:ref:refs/tags/v*",
            "repo:octo-org@190583734/octo-repo@873419205:ref:refs/tags/v*",
        ])
    );
    // Without the ids: the classic form, and one line saying what a new repository needs.
    let (_, _, stderr) = generate(&["--branch", "main"]);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("note: the trust allows only classic subjects (repo:octo-org/octo-repo:…); a repository created, renamed or transferred on github.com since 2026-07-15"), "{stderr}");
    assert!(
        stderr.contains("gh api repos/octo-org/octo-repo --jq '.owner.id, .id'")
            && stderr.contains("GITHUB_REPOSITORY_OWNER_ID and GITHUB_REPOSITORY_ID"),
        "{stderr}"
    );
    // The registry account is another account, or left out.
    let (code, _, stderr) = generate(&["--branch", "main", "--registry-account", "111111111111"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("registry-account: 111111111111 is --account itself; leave --registry-account out for a push within one account"), "{stderr}");
    // Ids are digits, and come in pairs.
    let (code, _, stderr) = generate(&[
        "--branch",
        "main",
        "--github-owner-id",
        "octo-org",
        "--github-repo-id",
        "1",
    ]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("github-owner-id: `octo-org` is not a GitHub id"),
        "{stderr}"
    );
    let (code, _, _) = generate(&["--branch", "main", "--github-owner-id", "190583734"]);
    assert_eq!(code, Some(2), "one id without the other");
    // A URL where ORG/REPO belongs says which to give.
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
        "https://github.com/octo-org/octo-repo.git",
        "--branch",
        "main",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("github-repo: `https://github.com/octo-org/octo-repo.git` is not ORG/REPO; give it as `octo-org/octo-repo`"));
    // create-repository: exactly ecr:CreateRepository, on the repository; managed
    // signing: signer:SignPayload on the profile.
    let (_, created, _) = generate(&[
        "--branch",
        "main",
        "--create-repository",
        "--signing-profile",
        "arn:aws:signer:us-east-1:111111111111:/signing-profiles/release",
    ]);
    let push = &created.unwrap()["aws-ecr-ci-push.json"]["Statement"];
    assert_eq!(
        push[1],
        serde_json::json!({"Sid": "CreateRepository", "Effect": "Allow", "Action": "ecr:CreateRepository",
            "Resource": "arn:aws:ecr:us-east-1:111111111111:repository/app"})
    );
    assert_eq!(
        push[2],
        serde_json::json!({"Sid": "SignOnPush", "Effect": "Allow", "Action": "signer:SignPayload",
            "Resource": "arn:aws:signer:us-east-1:111111111111:/signing-profiles/release"})
    );
    let (code, _, stderr) = generate(&["--branch", "main", "--signing-profile", "release"]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains(
            "signing-profile: `release` is not arn:aws:signer:REGION:ACCOUNT:/signing-profiles/NAME"
        ),
        "{stderr}"
    );
    // A promotion keeps working with the ids.
    let (code, promoted, _) = generate(&[
        "--branch",
        "main",
        "--github-owner-id",
        "190583734",
        "--github-repo-id",
        "873419205",
        "--promote-from",
        "333333333333.dkr.ecr.eu-west-1.amazonaws.com/dev/app",
    ]);
    assert_eq!(code, Some(0));
    let promoted = promoted.unwrap();
    assert!(promoted["aws-ecr-source-repository-policy.json"].is_object());
    assert_eq!(
        sub(&promoted)["StringEquals"]["token.actions.githubusercontent.com:sub"][1],
        "repo:octo-org@190583734/octo-repo@873419205:ref:refs/heads/main"
    );
}

#[test]
fn check_names_an_immutable_subject_and_keeps_request_keys_apart() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, value: serde_json::Value| {
        let path = dir.path().join(name);
        std::fs::write(&path, value.to_string()).unwrap();
        path
    };
    let provider = "arn:aws:iam::111111111111:oidc-provider/token.actions.githubusercontent.com";
    let classic = write(
        "classic.json",
        serde_json::json!({"Statement": [{"Effect": "Allow",
        "Principal": {"Federated": provider}, "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {"token.actions.githubusercontent.com:aud": "sts.amazonaws.com"},
            "StringLike": {"token.actions.githubusercontent.com:sub": "repo:octo-org/octo-repo:ref:refs/heads/*"}}}]}),
    );
    let immutable = write(
        "claims.json",
        serde_json::json!({
        "sub": "repo:octo-org@190583734/octo-repo@873419205:ref:refs/heads/main",
        "aud": "sts.amazonaws.com", "repository_owner_id": "190583734", "repository_id": "873419205"}),
    );
    let output = ecr_push(&[
        "policy",
        "check",
        "--trust",
        classic.to_str().unwrap(),
        "--claims",
        immutable.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    assert!(text.contains("the token's sub `repo:octo-org@190583734/octo-repo@873419205:ref:refs/heads/main` is an immutable subject (owner id 190583734, repository id 873419205 after `@`"), "{text}");
    assert!(
        text.trim_end().ends_with("and the trust matches only its classic form `repo:octo-org/octo-repo:ref:refs/heads/main`; add `repo:octo-org@190583734/octo-repo@873419205:ref:refs/heads/*`"),
        "{text}"
    );
    // An org-wide classic pattern gets its owner-pinned twin, and that twin lets the
    // token in; a denial for another reason (the audience) gets no such hint.
    for (pattern, aud, twin) in [
        (
            "repo:octo-org/*",
            "sts.amazonaws.com",
            Some("repo:octo-org@190583734/*"),
        ),
        (
            "repo:octo-org/octo-*:ref:refs/heads/*",
            "sts.amazonaws.com",
            Some("repo:octo-org@190583734/octo-*:ref:refs/heads/*"),
        ),
        ("repo:octo-org/*", "other", None),
    ] {
        let trust = |subs: Vec<&str>| {
            write(
                "org.json",
                serde_json::json!({"Statement": [{"Effect": "Allow",
            "Principal": {"Federated": provider}, "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {"token.actions.githubusercontent.com:aud": aud},
                "StringLike": {"token.actions.githubusercontent.com:sub": subs}}}]}),
            )
        };
        let check = |file: &Path| {
            ecr_push(&[
                "policy",
                "check",
                "--trust",
                file.to_str().unwrap(),
                "--claims",
                immutable.to_str().unwrap(),
            ])
        };
        let output = check(&trust(vec![pattern]));
        assert_eq!(output.status.code(), Some(1));
        let text = stdout(&output);
        match twin {
            Some(twin) => {
                assert!(
                    text.trim_end().ends_with(&format!("; add `{twin}`")),
                    "{text}"
                );
                assert!(
                    check(&trust(vec![pattern, twin])).status.success(),
                    "{twin} lets it in"
                );
            }
            None => assert!(!text.contains("immutable subject"), "{text}"),
        }
    }

    let timed = write(
        "timed.json",
        serde_json::json!({"Statement": [{"Effect": "Allow",
        "Principal": {"Federated": provider}, "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {"token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
            "token.actions.githubusercontent.com:sub": "repo:octo-org@190583734/octo-repo@873419205:ref:refs/heads/main"},
            "DateLessThan": {"aws:CurrentTime": "2027-01-01T00:00:00Z"}}}]}),
    );
    let output = ecr_push(&[
        "policy",
        "check",
        "--trust",
        timed.to_str().unwrap(),
        "--claims",
        immutable.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stdout(&output));
    assert_eq!(
        stdout(&output),
        "allowed if the request meets what the token cannot tell: statement 0 lets a token with sub `repo:octo-org@190583734/octo-repo@873419205:ref:refs/heads/main` assume the role when\n  - DateLessThan aws:CurrentTime `2027-01-01T00:00:00Z`\n"
    );
}

/// Scores `policy lint` on a corpus of published documents (its corpus.json names each
/// one's source, the findings an IAM reviewer expects and those that must not appear),
/// over (document, rule) pairs; a finding no reviewer expects counts against precision,
/// whether or not it is listed as absent. Returns the files, for the binary to read.
fn score_corpus(folder: &str, floor: f64) -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(folder);
    let corpus: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("corpus.json")).unwrap()).unwrap();
    assert!(corpus.len() >= 40, "{} documents", corpus.len());
    let (mut hits, mut misses, mut extras, mut wrong) = (0, Vec::new(), Vec::new(), Vec::new());
    let mut files = Vec::new();
    for entry in &corpus {
        let file = entry["file"].as_str().unwrap();
        assert!(
            entry["source"]
                .as_str()
                .is_some_and(|s| s.starts_with("https://")),
            "{file} names no source"
        );
        let set = |key: &str| -> std::collections::BTreeSet<String> {
            entry[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect()
        };
        let (expected, absent) = (set("expect"), set("absent"));
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        let found: std::collections::BTreeSet<String> = ecr_push::policy::lint::lint(&text)
            .unwrap_or_else(|e| panic!("{file}: {e}"))
            .into_iter()
            .map(|f| f.rule.to_owned())
            .collect();
        wrong.extend(found.intersection(&absent).map(|r| format!("{file}: {r}")));
        hits += found.intersection(&expected).count();
        misses.extend(expected.difference(&found).map(|r| format!("{file}: {r}")));
        extras.extend(found.difference(&expected).map(|r| format!("{file}: {r}")));
        files.push(dir.join(file));
    }
    let recall = hits as f64 / (hits + misses.len()) as f64;
    let precision = hits as f64 / (hits + extras.len()) as f64;
    eprintln!(
        "{folder}: {} documents, {hits} expected findings raised, {} missed, {} not expected: recall {:.1} %, precision {:.1} %\nmissed: {misses:#?}\nnot expected: {extras:#?}",
        corpus.len(),
        misses.len(),
        extras.len(),
        recall * 100.0,
        precision * 100.0
    );
    assert!(
        wrong.is_empty(),
        "raised where they must not be:\n{}",
        wrong.join("\n")
    );
    assert!(
        recall >= floor && precision >= floor,
        "recall {recall:.3}, precision {precision:.3}\nmissed:\n{}\nnot expected:\n{}",
        misses.join("\n"),
        extras.join("\n")
    );
    files
}

#[test]
fn lint_holds_up_on_published_documents() {
    let mut files = score_corpus("tests/fixtures/lint-corpus", 0.95);
    files.extend(score_corpus("tests/fixtures/lint-corpus-heldout", 0.95));
    // And the binary reads them all in one go without a crash.
    let mut args = vec!["policy".to_owned(), "lint".to_owned()];
    args.extend(files.iter().map(|f| f.to_str().unwrap().to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = ecr_push(&args);
    assert!(
        matches!(output.status.code(), Some(0 | 1)),
        "{:?}",
        output.status
    );
    assert!(
        output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
