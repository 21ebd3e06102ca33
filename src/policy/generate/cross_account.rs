//! The documents of a push that crosses accounts: with a chained publisher role, its
//! trust of exactly the CI role and the CI role's leave to assume it; without one, a
//! repository policy that lets the CI role push from its own account; and for a
//! promotion from another account's registry, the repository policy that lets the
//! pushing role read the source.

use serde_json::{Value, json};

use super::{Attach, Document, PULL_ACTIONS, Pusher, Request, Source, one_or_many, policy};

/// Role chaining: the publisher role's trust in the registry account, and the CI
/// role's permission to assume it.
pub(super) fn publisher(request: &Request, registry: &str, publisher: &str) -> [Document; 2] {
    [
        Document {
            name: "aws-ecr-publisher-trust.json".into(),
            account: registry.to_owned(),
            attach: Attach::Trust {
                role: publisher.to_owned(),
                path: None,
            },
            purpose: "lets exactly the CI role assume the publisher role in the registry account",
            body: publisher_trust(request, request.external_id.as_deref()),
        },
        Document {
            name: "aws-ecr-ci-assume-publisher.json".into(),
            account: request.account.clone(),
            attach: Attach::RolePolicy {
                role: request.role_name.clone(),
                policy: "assume-ecr-publisher".into(),
            },
            purpose: "lets the CI role assume the publisher role, and nothing else",
            body: assume_publishers(request, vec![request.publisher_arn(publisher)]),
        },
    ]
}

/// A publisher role's trust: exactly the CI role may assume it, with the external id
/// if it has one, and tag the session if session tags are asked for.
pub(super) fn publisher_trust(request: &Request, external_id: Option<&str>) -> Value {
    let mut assume = json!({
        "Sid": "AssumeFromCiRole",
        "Effect": "Allow",
        "Principal": { "AWS": request.role_arn() },
        "Action": "sts:AssumeRole",
    });
    if let Some(external_id) = external_id {
        assume["Condition"] = json!({ "StringEquals": { "sts:ExternalId": external_id } });
    }
    let mut statements = vec![assume];
    if request.session_tags {
        // Its own statement, as in AWS's session-tag examples: the external id
        // is a condition of the assume, and need not be in TagSession's context.
        statements.push(json!({
            "Sid": "TagSessionFromCiRole",
            "Effect": "Allow",
            "Principal": { "AWS": request.role_arn() },
            "Action": "sts:TagSession",
        }));
    }
    policy(Value::Array(statements))
}

/// The CI role's leave to assume exactly these roles (and to tag those sessions).
pub(super) fn assume_publishers(request: &Request, roles: Vec<String>) -> Value {
    let mut actions = vec!["sts:AssumeRole"];
    if request.session_tags {
        actions.push("sts:TagSession");
    }
    let sid = if roles.len() == 1 {
        "AssumePublisherRole"
    } else {
        "AssumePublisherRoles"
    };
    policy(json!([{
        "Sid": sid,
        "Effect": "Allow",
        "Action": one_or_many(actions),
        "Resource": one_or_many(roles),
    }]))
}

/// A direct push into another account's registry: the repository policy there.
pub(super) fn repository_policy(request: &Request, registry: &str) -> Document {
    Document {
        name: "aws-ecr-cross-account-repository-policy.json".into(),
        account: registry.to_owned(),
        attach: Attach::RepositoryPolicy {
            region: request.region.clone(),
            repositories: request.repositories.clone(),
        },
        purpose: "lets exactly the CI role push to the repository from its own account",
        body: policy(json!([{
            "Sid": "PushFromCiRole",
            "Effect": "Allow",
            "Principal": { "AWS": request.role_arn() },
            "Action": request.push_actions(),
        }])),
    }
}

/// A promotion from a repository in an account other than the pusher's: the
/// repository policy there.
pub(super) fn source_repository_policy(
    request: &Request,
    source: &Source,
    pusher: &Pusher,
) -> Document {
    let pusher = format!(
        "arn:{}:iam::{}:role/{}",
        request.partition(),
        pusher.account,
        pusher.role
    );
    Document {
        name: "aws-ecr-source-repository-policy.json".into(),
        account: source.account.clone(),
        attach: Attach::RepositoryPolicy {
            region: source.region.clone(),
            repositories: vec![source.repository.clone()],
        },
        purpose: "lets exactly the pushing role read the repository images are promoted from",
        body: policy(json!([{
            "Sid": "PromoteToRegistryAccount",
            "Effect": "Allow",
            "Principal": { "AWS": pusher },
            "Action": PULL_ACTIONS,
        }])),
    }
}
