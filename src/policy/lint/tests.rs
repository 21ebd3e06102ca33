//! Unit tests of `policy lint`: documents written the way people write them (trusts
//! per `sub` pattern, identity and repository policies per grant), and the rules and
//! severities a user would see for each.

use serde_json::{Value, json};

use super::{Finding, NotAPolicy, Severity, lint};

const PROVIDER: &str =
    "arn:aws:iam::402817365920:oidc-provider/token.actions.githubusercontent.com";
const SUB: &str = "token.actions.githubusercontent.com:sub";
const AUD: &str = "token.actions.githubusercontent.com:aud";

fn rules(document: &Value) -> Vec<(&'static str, Severity)> {
    lint(&document.to_string())
        .expect("a policy")
        .into_iter()
        .map(|f| (f.rule, f.severity))
        .collect()
}

fn has(document: &Value, rule: &str) -> Option<Severity> {
    rules(document)
        .into_iter()
        .find(|(r, _)| *r == rule)
        .map(|(_, s)| s)
}

fn trust(condition: Value) -> Value {
    json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow",
        "Principal": {"Federated": PROVIDER},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": condition}]})
}

fn sub_like(pattern: &str) -> Value {
    trust(json!({"StringEquals": {AUD: "sts.amazonaws.com"}, "StringLike": {SUB: pattern}}))
}

fn identity(action: Value, resource: Value) -> Value {
    json!({"Statement": [{"Effect": "Allow", "Action": action, "Resource": resource}]})
}

#[test]
fn sub_patterns_are_graded_by_who_they_let_in() {
    let cases: [(&str, &str, Severity); 11] = [
        ("*", "github-any-repository", Severity::Critical),
        ("repo:*", "github-any-repository", Severity::Critical),
        (
            "repo:*/*:ref:refs/heads/main",
            "github-any-repository",
            Severity::Critical,
        ),
        ("repo:octo-org/*", "github-org-wide", Severity::High),
        ("repo:octo-org@123/*", "github-org-wide", Severity::High),
        (
            "repo:octo-org*/octo-repo:ref:refs/heads/main",
            "github-lookalike",
            Severity::High,
        ),
        (
            "repo:octo-org/octo-repo*:ref:refs/heads/main",
            "github-lookalike",
            Severity::High,
        ),
        (
            "repo:octo-org@*/octo-repo@*:ref:refs/heads/main",
            "github-id-wildcard",
            Severity::High,
        ),
        (
            "repo:octo-org/octo-repo:*",
            "github-any-ref",
            Severity::Medium,
        ),
        (
            "repo:octo-org/octo-repo:pull_request",
            "github-pull-request",
            Severity::Medium,
        ),
        (
            "repo:octo-org/octo-repo:ref:refs/heads/main",
            "github-classic-only",
            Severity::Low,
        ),
    ];
    for (pattern, rule, severity) in cases {
        assert_eq!(
            has(&sub_like(pattern), rule),
            Some(severity),
            "{pattern}: {:?}",
            rules(&sub_like(pattern))
        );
    }
    // Wildcard ids under written names: the ids are open, the names are not.
    assert_eq!(
        has(
            &sub_like("repo:octo-org@*/octo-repo@*:ref:refs/heads/main"),
            "github-lookalike"
        ),
        None
    );
    // An org-wide pattern is not also reported as any repository.
    assert_eq!(
        has(&sub_like("repo:octo-org/*"), "github-any-repository"),
        None
    );
    // Ids pinned, names open: the names may change, nobody else gets in.
    assert_eq!(rules(&sub_like("repo:*@123/*@456:ref:refs/heads/main")), []);
    // Both forms of exactly one repository and ref: clean.
    let exact = trust(json!({"StringEquals": {AUD: "sts.amazonaws.com", SUB: [
        "repo:octo-org/octo-repo:ref:refs/heads/main",
        "repo:octo-org@123/octo-repo@456:ref:refs/heads/main"]}}));
    assert_eq!(rules(&exact), []);
}

/// Each pattern of a list is probed on its own, and a wildcard before or inside a
/// name counts as much as one after it.
#[test]
fn every_pattern_of_a_list_is_probed() {
    let list = |second: &str| {
        trust(json!({"StringEquals": {AUD: "sts.amazonaws.com"},
            "StringLike": {SUB: ["repo:org/app:ref:refs/heads/main", second]}}))
    };
    assert_eq!(
        has(&list("repo:*/*:environment:prod"), "github-any-repository"),
        Some(Severity::Critical)
    );
    assert_eq!(
        has(&list("repo:other/*:ref:refs/heads/main"), "github-org-wide"),
        Some(Severity::High)
    );
    assert_eq!(
        has(&list("repo:org/lib:*"), "github-any-ref"),
        Some(Severity::Medium)
    );
    assert_eq!(
        has(&list("repo:org/lib*"), "github-lookalike"),
        Some(Severity::High)
    );
    let at_least_high = |document: &Value| {
        rules(document)
            .iter()
            .map(|(_, s)| *s)
            .min()
            .is_some_and(|s| s <= Severity::High)
    };
    for pattern in [
        "repo:o?g/app:ref:refs/heads/main",
        "repo:*org/app:ref:refs/heads/main",
        "repo:???/app:*",
    ] {
        assert!(
            at_least_high(&sub_like(pattern)),
            "{pattern}: {:?}",
            rules(&sub_like(pattern))
        );
    }
}

/// The claims an attacker's own job sets (visibility, workflow, runner, ref
/// protection) are taken as the trust accepts them, operators the evaluator does not
/// decide as holding, and a negated value is not read as what the trust means.
#[test]
fn every_claim_an_attacker_sets_is_set_as_the_trust_accepts() {
    let with = |extra: Value| {
        let mut condition = json!({"StringEquals": {AUD: "sts.amazonaws.com"}});
        for (operator, keys) in extra.as_object().unwrap() {
            for (k, v) in keys.as_object().unwrap() {
                condition[operator][k] = v.clone();
            }
        }
        trust(condition)
    };
    let public = with(json!({"StringLike": {SUB: "*"},
        "StringEquals": {"token.actions.githubusercontent.com:repository_visibility": "public"}}));
    assert_eq!(
        has(&public, "github-any-repository"),
        Some(Severity::Critical)
    );
    let workflow = with(json!({"StringLike": {SUB: "repo:*",
        "token.actions.githubusercontent.com:job_workflow_ref": "*/.github/workflows/deploy.yml@*"}}));
    assert_eq!(
        has(&workflow, "github-any-repository"),
        Some(Severity::Critical)
    );
    let runner = with(json!({"StringLike": {SUB: "repo:org/*"},
        "StringEquals": {"token.actions.githubusercontent.com:runner_environment": "self-hosted"}}));
    assert_eq!(has(&runner, "github-org-wide"), Some(Severity::High));
    let null = with(json!({"StringLike": {SUB: "*"}, "Null": {SUB: "false"}}));
    assert_eq!(
        has(&null, "github-any-repository"),
        Some(Severity::Critical)
    );
    let boolean = with(json!({"StringLike": {SUB: "repo:*"},
        "Bool": {"token.actions.githubusercontent.com:ref_protected": "true"}}));
    assert_eq!(
        has(&boolean, "github-any-repository"),
        Some(Severity::Critical)
    );
    let negated_aud = trust(json!({"StringNotEquals": {AUD: "other"}, "StringLike": {SUB: "*"}}));
    assert_eq!(
        has(&negated_aud, "github-any-repository"),
        Some(Severity::Critical)
    );
    assert_eq!(
        has(&negated_aud, "github-aud-missing"),
        Some(Severity::Medium)
    );
}

#[test]
fn a_deny_closes_what_an_allow_opens() {
    // A Deny that keeps every other repository out closes the org-wide Allow.
    let mut denied = sub_like("repo:org/*");
    denied["Statement"].as_array_mut().unwrap().push(json!({
        "Effect": "Deny",
        "Principal": {"Federated": PROVIDER},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringNotLike": {SUB: ["repo:org/app:*", "repo:org@1/app@2:*"]}}}));
    assert_eq!(
        has(&denied, "github-org-wide"),
        None,
        "{:?}",
        rules(&denied)
    );
}

#[test]
fn a_fix_names_the_patterns_own_context() {
    // Not the context the probe filled in.
    let tags = lint(&sub_like("repo:org/*:ref:refs/tags/v*").to_string()).unwrap();
    assert!(
        tags.iter()
            .any(|f| f.message.contains("`repo:org/REPO:ref:refs/tags/v*`")),
        "{tags:?}"
    );
}

#[test]
fn other_claims_count_as_sts_counts_them() {
    // An org-wide sub, but the repository is pinned by its id.
    let pinned = trust(json!({
        "StringEquals": {AUD: "sts.amazonaws.com", "token.actions.githubusercontent.com:repository_id": "456"},
        "StringLike": {SUB: "repo:octo-org/*"}}));
    assert_eq!(
        has(&pinned, "github-org-wide"),
        None,
        "{:?}",
        rules(&pinned)
    );
    // No sub at all: open to the world, and refused by IAM since 2025.
    let open = trust(json!({"StringEquals": {AUD: "sts.amazonaws.com"}}));
    assert_eq!(has(&open, "github-sub-missing"), Some(Severity::Critical));
    let no_aud = trust(json!({"StringEquals": {SUB: "repo:o/r@1:ref:refs/heads/main"}}));
    assert_eq!(has(&no_aud, "github-aud-missing"), Some(Severity::Medium));
    let for_all = trust(json!({"StringEquals": {AUD: "sts.amazonaws.com"},
        "ForAllValues:StringLike": {SUB: "repo:octo-org/octo-repo:ref:refs/heads/main"}}));
    assert_eq!(
        has(&for_all, "github-for-all-values"),
        Some(Severity::Medium)
    );
    let literal =
        trust(json!({"StringEquals": {AUD: "sts.amazonaws.com", SUB: "repo:octo-org/*"}}));
    assert_eq!(has(&literal, "literal-wildcard"), Some(Severity::Medium));
    assert_eq!(
        has(&literal, "github-org-wide"),
        None,
        "StringEquals matches nothing"
    );
}

#[test]
fn an_enterprise_issuer_is_read_like_githubs_own() {
    let document = json!({"Statement": [{"Effect": "Allow",
        "Principal": {"Federated": "arn:aws:iam::402817365920:oidc-provider/token.actions.githubusercontent.com/octo-enterprise"},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {"token.actions.githubusercontent.com/octo-enterprise:aud": "sts.amazonaws.com"},
            "StringLike": {"token.actions.githubusercontent.com/octo-enterprise:sub": "repo:octo-org/*"}}}]});
    assert_eq!(
        rules(&document),
        [
            ("github-org-wide", Severity::High),
            ("github-classic-only", Severity::Low)
        ]
    );
}

#[test]
fn a_templated_provider_is_still_a_github_trust() {
    let document = json!({"Statement": [{"Effect": "Allow",
        "Principal": {"Federated": "arn:aws:iam::${AWS::AccountId}:oidc-provider/${OidcProvider}"},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringLike": {SUB: "repo:octo-org/*"}}}]});
    let found = rules(&document);
    assert!(
        found.contains(&("github-org-wide", Severity::High)),
        "{found:?}"
    );
    assert!(
        found.contains(&("github-aud-missing", Severity::Medium)),
        "{found:?}"
    );
    assert_eq!(
        found.iter().filter(|(r, _)| *r == "placeholder").count(),
        2,
        "{found:?}"
    );
    let wrong_action = json!({"Statement": [{"Effect": "Allow",
        "Principal": {"Federated": PROVIDER}, "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {SUB: "repo:o/r:ref:refs/heads/main"}}}]});
    assert_eq!(
        has(&wrong_action, "web-identity-action"),
        Some(Severity::Medium)
    );
}

#[test]
fn wildcard_resources_are_every_repository() {
    let push = json!([
        "ecr:InitiateLayerUpload",
        "ecr:UploadLayerPart",
        "ecr:CompleteLayerUpload",
        "ecr:PutImage"
    ]);
    for resource in [
        "*",
        "arn:aws:ecr:*:*:repository/*",
        "arn:aws:ecr:us-east-1:402817365920:repository/*",
    ] {
        assert_eq!(
            has(
                &identity(push.clone(), json!(resource)),
                "write-any-repository"
            ),
            Some(Severity::High),
            "{resource}"
        );
    }
    // A wildcard region or account is valid IAM, and one repository name is scoped.
    assert_eq!(
        rules(&identity(
            push.clone(),
            json!("arn:aws:ecr:*:*:repository/app")
        )),
        []
    );
    let public = identity(
        json!(["ecr-public:PutImage", "ecr-public:UploadLayerPart"]),
        json!("*"),
    );
    assert_eq!(has(&public, "write-any-repository"), Some(Severity::High));
    let reads = identity(
        json!(["ecr:GetAuthorizationToken", "ecr:BatchGetImage"]),
        json!("*"),
    );
    assert_eq!(rules(&reads), [("read-any-repository", Severity::Low)]);
    assert_eq!(
        rules(&identity(json!("ecr:GetAuthorizationToken"), json!("*"))),
        []
    );
    let everything = identity(json!("*"), json!("*"));
    let found = lint(&everything.to_string()).unwrap();
    assert_eq!(
        (found[0].rule, found[0].severity),
        ("all-actions", Severity::Critical)
    );
    assert!(
        found[0]
            .message
            .contains("every action of every AWS service"),
        "{}",
        found[0].message
    );
    let deletes = identity(
        json!(["ecr:PutImage", "ecr:BatchDeleteImage"]),
        json!("arn:aws:ecr:us-east-1:402817365920:repository/app"),
    );
    assert_eq!(rules(&deletes), [("push-can-delete", Severity::Medium)]);
}

#[test]
fn the_sid_says_nothing_of_what_a_statement_allows() {
    let document = json!({"Statement": [{"Sid": "ReadOnlyPull", "Effect": "Allow",
        "Action": ["ecr:PutImage", "ecr:BatchGetImage"],
        "Resource": "arn:aws:ecr:us-east-1:402817365920:repository/app"}]});
    assert_eq!(rules(&document), []);
}

#[test]
fn principals_are_judged_with_their_conditions() {
    let repository = |principal: Value, actions: Value, condition: Value| {
        let mut statement = json!({"Effect": "Allow", "Principal": principal, "Action": actions});
        if !condition.is_null() {
            statement["Condition"] = condition;
        }
        json!({"Statement": [statement]})
    };
    let pull = json!(["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]);
    let push = json!(["ecr:PutImage", "ecr:UploadLayerPart"]);
    assert_eq!(
        has(
            &repository(json!("*"), push.clone(), Value::Null),
            "principal-anyone"
        ),
        Some(Severity::Critical)
    );
    assert_eq!(
        has(
            &repository(json!({"AWS": "*"}), pull.clone(), Value::Null),
            "principal-anyone"
        ),
        Some(Severity::High)
    );
    let org = json!({"StringEquals": {"aws:PrincipalOrgID": "o-a1b2c3d4e5"}});
    assert_eq!(rules(&repository(json!("*"), pull.clone(), org)), []);
    let lambda = json!({"Service": "lambda.amazonaws.com"});
    assert_eq!(
        has(
            &repository(lambda.clone(), pull.clone(), Value::Null),
            "service-no-source"
        ),
        Some(Severity::Medium)
    );
    assert_eq!(
        has(
            &repository(
                lambda.clone(),
                json!(["ecr:SetRepositoryPolicy"]),
                Value::Null
            ),
            "service-no-source"
        ),
        Some(Severity::High)
    );
    let source = json!({"StringLike": {"aws:sourceArn": "arn:aws:lambda:us-east-1:402817365920:function:*"}});
    assert_eq!(rules(&repository(lambda, pull.clone(), source)), []);
    // ecr:* names GetAuthorizationToken only through the wildcard.
    let all = repository(
        json!({"AWS": "arn:aws:iam::583920174651:role/ci"}),
        json!("ecr:*"),
        Value::Null,
    );
    assert_eq!(rules(&all), [("all-actions", Severity::High)]);
    let named = repository(
        json!({"AWS": "arn:aws:iam::583920174651:role/ci"}),
        json!(["ecr:GetAuthorizationToken", "ecr:BatchGetImage"]),
        Value::Null,
    );
    assert_eq!(
        rules(&named),
        [("auth-token-in-repository-policy", Severity::Medium)]
    );
    // A read-only pull by another account is the documented cross-account grant.
    assert_eq!(
        rules(&repository(
            json!({"AWS": "arn:aws:iam::583920174651:root"}),
            pull,
            Value::Null
        )),
        []
    );
    assert_eq!(
        has(
            &repository(json!({"AWS": "583920174651"}), push, Value::Null),
            "principal-account"
        ),
        Some(Severity::Low)
    );
    // Replication: the source account's root is the principal ECR requires.
    let replication = json!({"Statement": [{"Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::583920174651:root"},
        "Action": ["ecr:CreateRepository", "ecr:ReplicateImage"],
        "Resource": "arn:aws:ecr:us-west-2:402817365920:repository/*"}]});
    assert_eq!(rules(&replication), []);
}

#[test]
fn placeholders_and_sids_are_one_finding_each() {
    let document = json!({"Statement": [
        {"Sid": "Push", "Effect": "Allow", "Action": "ecr:PutImage",
         "Resource": ["arn:aws:ecr:us-east-1:ACCOUNT_ID:repository/a", "arn:aws:ecr:us-east-1:ACCOUNT_ID:repository/b"]},
        {"Sid": "Push", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:role/ci"},
         "Action": "ecr:BatchGetImage", "Condition": {"StringEquals": {"aws:PrincipalTag/team": "${TEAM}"}}},
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/${aws:username}/*"},
        {"Effect": "Allow", "Action": "ecr:BatchGetImage", "Resource": "arn:aws:ecr:us-east-1:ACCOUNT_ID:repository/c"}]});
    let found = lint(&document.to_string()).unwrap();
    let placeholders: Vec<&Finding> = found.iter().filter(|f| f.rule == "placeholder").collect();
    assert_eq!(placeholders.len(), 3, "{found:?}");
    let account = placeholders
        .iter()
        .find(|f| f.message.starts_with("`ACCOUNT_ID`"))
        .unwrap();
    assert!(
        account
            .message
            .contains("statement 0 Resource and statement 3 Resource"),
        "{}",
        account.message
    );
    let documentation = placeholders
        .iter()
        .find(|f| f.message.starts_with("`123456789012`"))
        .unwrap();
    assert_eq!(
        documentation.severity,
        Severity::High,
        "a principal nobody here owns"
    );
    assert!(
        found
            .iter()
            .any(|f| f.rule == "duplicate-sid" && f.message.contains("statements 0 and 1"))
    );
}

#[test]
fn what_is_not_a_policy_is_an_input_error() {
    assert!(
        matches!(lint("{\"Statement\": [] # x\n}"), Err(NotAPolicy::Json(_, hint)) if hint.contains("comments"))
    );
    assert!(matches!(lint("[1, 2]"), Err(NotAPolicy::NoStatement)));
    assert!(matches!(
        lint("{\"Resources\": {}}"),
        Err(NotAPolicy::NoStatement)
    ));
}

#[test]
fn what_the_generator_writes_is_clean() {
    use crate::policy::generate::{Request, Source, Subject, generate};
    let mut request = Request {
        account: "402817365920".into(),
        region: "us-east-1".into(),
        repositories: vec!["app".into()],
        github_repo: "org/app".into(),
        github_ids: Some(("123456".into(), "456789".into())),
        subjects: vec![Subject::Branch("main".into()), Subject::Tag("v*".into())],
        audience: "sts.amazonaws.com".into(),
        role_name: "ci".into(),
        registry_account: Some("583920174651".into()),
        publisher_role: None,
        external_id: None,
        session_tags: false,
        docker_login: true,
        create_repository: true,
        signing_profile: Some(
            "arn:aws:signer:us-east-1:583920174651:/signing-profiles/release".into(),
        ),
        registry_transport: true,
        scan_gate: true,
        source: Some(Source {
            account: "731905284613".into(),
            region: "us-east-1".into(),
            repository: "dev/app".into(),
        }),
        targets: Vec::new(),
    };
    for document in generate(&request) {
        let found = lint(&document.body.to_string()).unwrap();
        assert!(found.is_empty(), "{}: {found:?}", document.name);
    }
    // Without the ids, the trust is correct for an older repository only.
    request.github_ids = None;
    let trust = &generate(&request)[0];
    let found = lint(&trust.body.to_string()).unwrap();
    assert_eq!(
        found.iter().map(|f| f.rule).collect::<Vec<_>>(),
        ["github-classic-only"]
    );
}

#[test]
fn what_the_generator_writes_for_targets_is_clean() {
    use crate::policy::generate::{Request, Source, Subject, generate};
    let lines = "\
406817235904.dkr.ecr.us-east-1.amazonaws.com/app
583920174651.dkr.ecr.us-east-1.amazonaws.com/app
692031485762.dkr.ecr.us-east-1.amazonaws.com/app,role=arn:aws:iam::692031485762:role/ecr-publisher
731905284613.dkr.ecr.eu-west-1.amazonaws.com/app,role=arn:aws:iam::731905284613:role/ecr-publisher,external-id=release-1
localhost:5000/mirror/app";
    let request = Request {
        account: "406817235904".into(),
        region: "us-east-1".into(),
        repositories: Vec::new(),
        github_repo: "org/app".into(),
        github_ids: Some(("123456".into(), "456789".into())),
        subjects: vec![Subject::Tag("v*".into())],
        audience: "sts.amazonaws.com".into(),
        role_name: "ci".into(),
        registry_account: None,
        publisher_role: None,
        external_id: None,
        session_tags: true,
        docker_login: true,
        create_repository: true,
        signing_profile: Some(
            "arn:aws:signer:eu-west-1:731905284613:/signing-profiles/release".into(),
        ),
        registry_transport: true,
        scan_gate: false,
        source: Some(Source {
            account: "820143659271".into(),
            region: "us-east-1".into(),
            repository: "dev/app".into(),
        }),
        targets: crate::targets::parse([lines]).unwrap(),
    };
    request.check_targets().unwrap();
    let documents = generate(&request);
    // Trusts, the CI role's two, two per chained role, one repository policy, two
    // personas per account, the source's repository policy.
    assert_eq!(documents.len(), 1 + 2 + 2 * 2 + 1 + 2 * 4 + 1);
    for document in documents {
        let found = lint(&document.body.to_string()).unwrap();
        assert!(found.is_empty(), "{}: {found:?}", document.name);
    }
}
