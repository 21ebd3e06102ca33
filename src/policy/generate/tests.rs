//! Unit tests of `policy generate`: the documents for each kind of setup (one
//! account, a registry in another account pushed to directly or through a chained
//! role, a promotion from another registry), and a property over random requests
//! that no statement is wider than it needs to be.

use super::{Attach, Document, Request, Source, Subject, generate};
use crate::policy::{PUSH_ACTIONS, statements, strings};

fn request() -> Request {
    Request {
        account: "111111111111".into(),
        region: "us-east-1".into(),
        repositories: vec!["secure-flask".into()],
        github_repo: "ORG/REPO".into(),
        github_ids: None,
        subjects: vec![Subject::Branch("main".into())],
        audience: "sts.amazonaws.com".into(),
        role_name: "ecr-ci-push-role".into(),
        registry_account: None,
        publisher_role: None,
        external_id: None,
        session_tags: false,
        docker_login: false,
        create_repository: false,
        signing_profile: None,
        registry_transport: false,
        scan_gate: false,
        source: None,
        targets: Vec::new(),
    }
}

#[test]
fn a_promotion_reads_the_source_as_the_role_that_pushes() {
    let mut r = request();
    r.registry_account = Some("222222222222".into());
    r.publisher_role = Some("publisher".into());
    r.source = Some(Source {
        account: "333333333333".into(),
        region: "eu-west-1".into(),
        repository: "dev/app".into(),
    });
    let documents = generate(&r);
    let source = find(&documents, "aws-ecr-source-repository-policy.json");
    assert_eq!(source.account, "333333333333");
    assert_eq!(
        source.attach,
        Attach::RepositoryPolicy {
            region: "eu-west-1".into(),
            repositories: vec!["dev/app".into()]
        }
    );
    let statement = &statements(&source.body)[0];
    // The chained role pushes, so it is the one the source must let in.
    assert_eq!(
        statement["Principal"]["AWS"],
        "arn:aws:iam::222222222222:role/publisher"
    );
    assert_eq!(
        strings(statement.get("Action")),
        ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
    );
    let push = find(&documents, "aws-ecr-ci-push.json");
    let pull = statements(&push.body)
        .into_iter()
        .find(|s| s["Sid"] == "PullFromSource")
        .expect("the push policy reads the source");
    assert_eq!(
        pull["Resource"],
        "arn:aws:ecr:eu-west-1:333333333333:repository/dev/app"
    );
    assert!(
        statements(&push.body)
            .iter()
            .any(|s| s["Action"] == "ecr:GetAuthorizationToken")
    );

    // A source in the pushing role's own account needs no repository policy.
    r.source = Some(Source {
        account: "222222222222".into(),
        region: "us-east-1".into(),
        repository: "dev/app".into(),
    });
    assert!(
        generate(&r)
            .iter()
            .all(|d| d.name != "aws-ecr-source-repository-policy.json")
    );
}

fn find<'a>(documents: &'a [Document], name: &str) -> &'a Document {
    documents.iter().find(|d| d.name == name).expect(name)
}

#[test]
fn default_push_policy_has_no_star_and_exactly_the_push_actions() {
    let documents = generate(&request());
    let push = &find(&documents, "aws-ecr-ci-push.json").body;
    assert_eq!(statements(push).len(), 1);
    let mut expected = PUSH_ACTIONS.to_vec();
    expected.push("ecr:BatchGetImage");
    assert_eq!(strings(statements(push)[0].get("Action")), expected);
    assert_eq!(
        statements(push)[0]["Resource"],
        "arn:aws:ecr:us-east-1:111111111111:repository/secure-flask"
    );
}

#[test]
fn the_scan_gate_adds_exactly_its_two_actions_on_the_repository() {
    let mut gated = request();
    gated.scan_gate = true;
    let documents = generate(&gated);
    let push = &find(&documents, "aws-ecr-ci-push.json").body;
    assert_eq!(statements(push).len(), 1);
    let mut expected = PUSH_ACTIONS.to_vec();
    expected.extend([
        "ecr:BatchGetImage",
        "ecr:StartImageScan",
        "ecr:DescribeImageScanFindings",
    ]);
    assert_eq!(strings(statements(push)[0].get("Action")), expected);
    assert_eq!(
        statements(push)[0]["Resource"],
        "arn:aws:ecr:us-east-1:111111111111:repository/secure-flask"
    );
}

#[test]
fn a_cross_account_repository_policy_lets_the_scan_gate_in_too() {
    let mut gated = request();
    gated.scan_gate = true;
    gated.registry_account = Some("222222222222".into());
    let documents = generate(&gated);
    let granted: Vec<String> = documents
        .iter()
        .filter(|d| matches!(d.attach, Attach::RepositoryPolicy { .. }))
        .flat_map(|d| {
            statements(&d.body)
                .into_iter()
                .flat_map(|s| strings(s.get("Action")))
                .collect::<Vec<_>>()
        })
        .collect();
    for action in ["ecr:StartImageScan", "ecr:DescribeImageScanFindings"] {
        assert!(granted.iter().any(|a| a == action), "{action}: {granted:?}");
    }
}

#[test]
fn trust_uses_string_like_only_for_a_wildcard_subject() {
    let exact = generate(&request());
    let condition = &statements(&find(&exact, "aws-github-oidc-trust.json").body)[0]["Condition"];
    assert_eq!(
        condition["StringEquals"]["token.actions.githubusercontent.com:sub"],
        "repo:ORG/REPO:ref:refs/heads/main"
    );
    assert!(condition.get("StringLike").is_none());
    let mut tags = request();
    tags.subjects = vec![Subject::Tag("v*".into())];
    let wild = generate(&tags);
    let condition = &statements(&find(&wild, "aws-github-oidc-trust.json").body)[0]["Condition"];
    assert_eq!(
        condition["StringLike"]["token.actions.githubusercontent.com:sub"],
        "repo:ORG/REPO:ref:refs/tags/v*"
    );
    assert_eq!(
        condition["StringEquals"]["token.actions.githubusercontent.com:aud"],
        "sts.amazonaws.com"
    );
    assert!(
        condition["StringEquals"]
            .get("token.actions.githubusercontent.com:sub")
            .is_none()
    );
}

#[test]
fn chaining_puts_the_push_on_the_publisher_in_the_registry_account() {
    let mut r = request();
    r.registry_account = Some("222222222222".into());
    r.publisher_role = Some("ecr-publisher".into());
    r.external_id = Some("EXTERNAL_ID".into());
    r.session_tags = true;
    let documents = generate(&r);
    let push = find(&documents, "aws-ecr-ci-push.json");
    assert_eq!(push.account, "222222222222");
    assert_eq!(
        push.attach,
        Attach::RolePolicy {
            role: "ecr-publisher".into(),
            policy: "ecr-push".into()
        }
    );
    let trust = statements(&find(&documents, "aws-ecr-publisher-trust.json").body);
    assert_eq!(
        trust[0]["Principal"]["AWS"],
        "arn:aws:iam::111111111111:role/ecr-ci-push-role"
    );
    assert_eq!(strings(trust[0].get("Action")), ["sts:AssumeRole"]);
    assert_eq!(
        trust[0]["Condition"]["StringEquals"]["sts:ExternalId"],
        "EXTERNAL_ID"
    );
    // sts:TagSession in a statement of its own, for the same principal.
    assert_eq!(trust[1]["Principal"], trust[0]["Principal"]);
    assert_eq!(strings(trust[1].get("Action")), ["sts:TagSession"]);
    let assume = &statements(&find(&documents, "aws-ecr-ci-assume-publisher.json").body)[0];
    assert_eq!(
        assume["Resource"],
        "arn:aws:iam::222222222222:role/ecr-publisher"
    );
    assert!(
        documents
            .iter()
            .all(|d| d.name != "aws-ecr-cross-account-repository-policy.json")
    );
}

#[test]
fn direct_cross_account_push_gets_a_repository_policy_for_the_exact_role() {
    let mut r = request();
    r.registry_account = Some("222222222222".into());
    let documents = generate(&r);
    let repo =
        &statements(&find(&documents, "aws-ecr-cross-account-repository-policy.json").body)[0];
    assert_eq!(
        repo["Principal"]["AWS"],
        "arn:aws:iam::111111111111:role/ecr-ci-push-role"
    );
    assert!(
        repo.get("Resource").is_none(),
        "repository policies have no Resource"
    );
    let push = find(&documents, "aws-ecr-ci-push.json");
    assert_eq!(push.account, "111111111111");
    assert_eq!(
        statements(&push.body)[0]["Resource"],
        "arn:aws:ecr:us-east-1:222222222222:repository/secure-flask"
    );
}

/// One to five targets in three accounts of `region`, some through a role.
fn random_targets(region: &str, next: &mut impl FnMut(u64) -> u64) -> Vec<crate::targets::Target> {
    let partition = crate::ecr_host::partition(region);
    let lines: Vec<String> = (0..=next(4))
        .map(|i| {
            let account = ["111111111111", "222222222222", "333333333333"][next(3) as usize];
            let host = crate::ecr_host::EcrHost::standard(account, region);
            let mut line = format!("{host}/team{i}/app");
            if next(2) == 1 {
                let owner = ["111111111111", "222222222222", "333333333333"][next(3) as usize];
                line += &format!(",role=arn:{partition}:iam::{owner}:role/publisher");
                if next(2) == 1 {
                    line += ",external-id=x-1";
                }
            }
            line
        })
        .collect();
    crate::targets::parse(lines.iter().map(String::as_str)).expect("good lines")
}

/// Property: whatever the input, no statement has a wildcard action, and the only
/// `*` resource is GetAuthorizationToken's.
#[test]
fn no_generated_statement_is_wider_than_needed() {
    let mut seed: u64 = 0x5eed;
    let mut next = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let regions = [
        "us-east-1",
        "eu-west-3",
        "cn-north-1",
        "us-gov-west-1",
        "ap-south-2",
    ];
    for _ in 0..500 {
        let mut r = request();
        r.region = regions[next(regions.len() as u64) as usize].into();
        r.repositories = (0..=next(3))
            .map(|i| format!("team{i}/app-{}", next(100)))
            .collect();
        r.subjects = (0..=next(2))
            .map(|_| match next(4) {
                0 => Subject::Branch(format!("release/{}", next(9))),
                1 => Subject::Tag("v*".into()),
                2 => Subject::Environment("prod".into()),
                _ => Subject::PullRequest,
            })
            .collect();
        r.github_ids = (next(2) == 1).then(|| ("123456".into(), "456789".into()));
        r.create_repository = next(2) == 1;
        if next(2) == 1 {
            r.registry_account = Some("222222222222".into());
            if next(2) == 1 {
                r.publisher_role = Some("publisher".into());
                r.session_tags = next(2) == 1;
                r.external_id = (next(2) == 1).then(|| "x-1".into());
            }
        }
        r.docker_login = next(2) == 1;
        r.registry_transport = next(2) == 1;
        r.source = (next(2) == 1).then(|| Source {
            account: "333333333333".into(),
            region: r.region.clone(),
            repository: format!("dev/app-{}", next(9)),
        });
        if next(3) == 0 {
            r.targets = random_targets(&r.region, &mut next);
            r.repositories = Vec::new();
            (r.registry_account, r.publisher_role, r.external_id) = (None, None, None);
        }
        for document in generate(&r) {
            for statement in statements(&document.body) {
                let actions = strings(statement.get("Action"));
                assert!(!actions.is_empty() && statement.get("NotAction").is_none());
                for action in &actions {
                    assert!(!action.contains('*'), "{}: {action}", document.name);
                }
                let resources = strings(statement.get("Resource"));
                if resources.iter().any(|r| r.contains('*')) {
                    assert_eq!(resources, ["*"], "{}", document.name);
                    assert_eq!(actions, ["ecr:GetAuthorizationToken"], "{}", document.name);
                }
                for resource in &resources {
                    assert!(
                        resource == "*"
                            || resource.starts_with(&format!(
                                "arn:{}:",
                                crate::ecr_host::partition(&r.region)
                            )),
                        "{resource}"
                    );
                }
                if let Some(principal) = statement.get("Principal") {
                    assert_ne!(principal, "*");
                    let text = principal.to_string();
                    assert!(!text.contains(":root"), "{text}");
                }
            }
            if document.name == "aws-ecr-ci-push.json"
                && !r.create_repository
                && !r.docker_login
                && !r.registry_transport
                && r.source.is_none()
            {
                assert_eq!(
                    statements(&document.body).len(),
                    1,
                    "no * statement by default"
                );
            }
        }
    }
}

/// A request for the push's `targets` lines, with the CI role in 111111111111.
fn with_targets(lines: &str) -> Request {
    let mut r = request();
    r.repositories = Vec::new();
    r.targets = crate::targets::parse([lines]).expect("good lines");
    r
}

const THREE_ACCOUNTS: &str = "\
111111111111.dkr.ecr.us-east-1.amazonaws.com/app
222222222222.dkr.ecr.us-east-1.amazonaws.com/app,role=arn:aws:iam::222222222222:role/ecr-publisher
333333333333.dkr.ecr.eu-west-1.amazonaws.com/app,role=arn:aws:iam::333333333333:role/ecr-publisher,external-id=release-1
";

#[test]
fn targets_chain_into_exactly_their_roles_and_push_exactly_their_repositories() {
    let documents = generate(&with_targets(THREE_ACCOUNTS));
    let assume = find(&documents, "aws-ecr-ci-assume-publisher.json");
    assert_eq!(assume.account, "111111111111");
    let statement = &statements(&assume.body)[0];
    assert_eq!(strings(statement.get("Action")), ["sts:AssumeRole"]);
    assert_eq!(
        strings(statement.get("Resource")),
        [
            "arn:aws:iam::222222222222:role/ecr-publisher",
            "arn:aws:iam::333333333333:role/ecr-publisher"
        ]
    );
    // The line without role= is pushed with the CI role's own credentials.
    let ci_push = find(&documents, "aws-ecr-ci-push.json");
    assert_eq!(
        ci_push.attach,
        Attach::RolePolicy {
            role: "ecr-ci-push-role".into(),
            policy: "ecr-push".into()
        }
    );
    assert_eq!(
        statements(&ci_push.body)[0]["Resource"],
        "arn:aws:ecr:us-east-1:111111111111:repository/app"
    );
    for (account, region, external_id) in [
        ("222222222222", "us-east-1", None),
        ("333333333333", "eu-west-1", Some("release-1")),
    ] {
        let trust = find(
            &documents,
            &format!("aws-ecr-publisher-trust-{account}-ecr-publisher.json"),
        );
        assert_eq!(trust.account, account);
        let assume = &statements(&trust.body)[0];
        assert_eq!(
            assume["Principal"]["AWS"],
            "arn:aws:iam::111111111111:role/ecr-ci-push-role"
        );
        assert_eq!(
            assume["Condition"]["StringEquals"]["sts:ExternalId"].as_str(),
            external_id
        );
        let push = find(
            &documents,
            &format!("aws-ecr-publisher-push-{account}-ecr-publisher.json"),
        );
        assert_eq!(push.account, account);
        assert_eq!(
            statements(&push.body)[0]["Resource"],
            format!("arn:aws:ecr:{region}:{account}:repository/app").as_str()
        );
    }
    // Every role pushes within its own account: no repository policy is needed.
    assert!(
        documents
            .iter()
            .all(|d| !matches!(d.attach, Attach::RepositoryPolicy { .. })),
        "{:?}",
        documents.iter().map(|d| &d.name).collect::<Vec<_>>()
    );
    let mut names: Vec<&str> = documents.iter().map(|d| d.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), documents.len(), "one file name per document");
}

#[test]
fn a_repository_in_another_account_than_its_pusher_gets_a_policy_for_exactly_that_role() {
    let documents = generate(&with_targets(
        "\
444444444444.dkr.ecr.us-east-1.amazonaws.com/app
444444444444.dkr.ecr.eu-west-1.amazonaws.com/app
444444444444.dkr.ecr.eu-west-1.amazonaws.com/web
555555555555.dkr.ecr.us-east-1.amazonaws.com/app,role=arn:aws:iam::222222222222:role/path/publisher",
    ));
    let policies: Vec<&Document> = documents
        .iter()
        .filter(|d| matches!(d.attach, Attach::RepositoryPolicy { .. }))
        .collect();
    let found: Vec<(&str, &Attach, &serde_json::Value)> = policies
        .iter()
        .map(|d| {
            let statement = &statements(&d.body)[0];
            (
                d.account.as_str(),
                &d.attach,
                &statement["Principal"]["AWS"],
            )
        })
        .collect();
    let ci = "arn:aws:iam::111111111111:role/ecr-ci-push-role";
    let publisher = "arn:aws:iam::222222222222:role/path/publisher";
    let repositories = |region: &str, names: &[&str]| Attach::RepositoryPolicy {
        region: region.into(),
        repositories: names.iter().map(|n| (*n).to_owned()).collect(),
    };
    assert_eq!(
        found,
        [
            (
                "444444444444",
                &repositories("us-east-1", &["app"]),
                &ci.into()
            ),
            (
                "444444444444",
                &repositories("eu-west-1", &["app", "web"]),
                &ci.into()
            ),
            (
                "555555555555",
                &repositories("us-east-1", &["app"]),
                &publisher.into()
            ),
        ]
    );
    for policy in policies {
        assert!(statements(&policy.body)[0].get("Resource").is_none());
    }
    // The role with a path is created at it, in its own account, not the registry's.
    let trust = find(
        &documents,
        "aws-ecr-publisher-trust-222222222222-publisher.json",
    );
    assert_eq!(
        trust.attach,
        Attach::Trust {
            role: "publisher".into(),
            path: Some("/path/".into())
        }
    );
    let ci_push = find(&documents, "aws-ecr-ci-push.json");
    assert_eq!(
        strings(statements(&ci_push.body)[0].get("Resource")),
        [
            "arn:aws:ecr:us-east-1:444444444444:repository/app",
            "arn:aws:ecr:eu-west-1:444444444444:repository/app",
            "arn:aws:ecr:eu-west-1:444444444444:repository/web"
        ]
    );
}

#[test]
fn a_target_on_another_registry_has_no_document_and_no_assume_without_a_role() {
    let documents = generate(&with_targets(
        "localhost:5000/mirror/app\n111111111111.dkr.ecr.us-east-1.amazonaws.com/app",
    ));
    let text =
        serde_json::to_string(&documents.iter().map(|d| &d.body).collect::<Vec<_>>()).unwrap();
    assert!(!text.contains("localhost") && !text.contains("mirror"));
    assert!(
        documents
            .iter()
            .all(|d| d.name != "aws-ecr-ci-assume-publisher.json")
    );
}

#[test]
fn with_targets_the_source_is_read_as_the_ci_role_that_chains() {
    let mut r = with_targets(THREE_ACCOUNTS);
    r.session_tags = true;
    r.source = Some(Source {
        account: "444444444444".into(),
        region: "us-east-1".into(),
        repository: "dev/app".into(),
    });
    let documents = generate(&r);
    // The source is read once for every target, with the first role's credentials.
    let source = find(&documents, "aws-ecr-source-repository-policy.json");
    assert_eq!(
        statements(&source.body)[0]["Principal"]["AWS"],
        "arn:aws:iam::111111111111:role/ecr-ci-push-role"
    );
    let ci_push = find(&documents, "aws-ecr-ci-push.json");
    assert!(
        statements(&ci_push.body)
            .iter()
            .any(|s| s["Sid"] == "PullFromSource")
    );
    for document in documents
        .iter()
        .filter(|d| d.name.contains("publisher-push"))
    {
        assert!(
            statements(&document.body)
                .iter()
                .all(|s| s["Sid"] != "PullFromSource"),
            "{}",
            document.name
        );
    }
    let assume = &statements(&find(&documents, "aws-ecr-ci-assume-publisher.json").body)[0];
    assert_eq!(
        strings(assume.get("Action")),
        ["sts:AssumeRole", "sts:TagSession"]
    );
    let trust = find(
        &documents,
        "aws-ecr-publisher-trust-222222222222-ecr-publisher.json",
    );
    assert_eq!(
        strings(statements(&trust.body)[1].get("Action")),
        ["sts:TagSession"]
    );
}

#[test]
fn lines_that_iam_cannot_join_up_are_each_one_error() {
    let role = |account: &str| format!("role=arn:aws:iam::{account}:role/publisher");
    let a = "222222222222.dkr.ecr.us-east-1.amazonaws.com/app";
    for (lines, wants) in [
        (
            format!("{a}\n333333333333.dkr.ecr.cn-north-1.amazonaws.com.cn/app"),
            "line 2 `333333333333.dkr.ecr.cn-north-1.amazonaws.com.cn/app`: is in partition aws-cn, and the CI role (region us-east-1) in aws",
        ),
        (
            format!("{a}\n222222222222.dkr.ecr-fips.us-east-1.amazonaws.com/app"),
            "line 2 `222222222222.dkr.ecr-fips.us-east-1.amazonaws.com/app`: is the repository of line 1 again",
        ),
        (
            format!(
                "{a},{r}\n{a}2,{r},external-id=x-1",
                r = role("222222222222")
            ),
            "gives arn:aws:iam::222222222222:role/publisher external-id=x-1, and line 1 no external-id",
        ),
        (
            format!("{a},role=arn:aws:iam::111111111111:role/ci/ecr-ci-push-role"),
            "role= is the CI role (arn:aws:iam::111111111111:role/ecr-ci-push-role)",
        ),
        (
            "localhost:5000/app".to_owned(),
            "targets: lists no ECR target",
        ),
    ] {
        let err = with_targets(&lines)
            .check_targets()
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("targets: "), "{err}");
        assert!(err.contains(wants), "{lines}: {err}");
    }
    let mut tags = with_targets(a);
    tags.session_tags = true;
    let err = tags.check_targets().unwrap_err().to_string();
    assert!(
        err.starts_with("session-tags: no target has role="),
        "{err}"
    );
    assert!(with_targets(THREE_ACCOUNTS).check_targets().is_ok());
}
