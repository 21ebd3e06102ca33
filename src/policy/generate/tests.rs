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
        source: None,
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
