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
    let mut trust_actions = vec!["sts:AssumeRole"];
    let mut assume = json!({
        "Sid": "AssumeFromCiRole",
        "Effect": "Allow",
        "Principal": { "AWS": request.role_arn() },
        "Action": "sts:AssumeRole",
    });
    if let Some(external_id) = &request.external_id {
        assume["Condition"] = json!({ "StringEquals": { "sts:ExternalId": external_id } });
    }
    let mut statements = vec![assume];
    if request.session_tags {
        trust_actions.push("sts:TagSession");
        // Its own statement, as in AWS's session-tag examples: the external id
        // is a condition of the assume, and need not be in TagSession's context.
        statements.push(json!({
            "Sid": "TagSessionFromCiRole",
            "Effect": "Allow",
            "Principal": { "AWS": request.role_arn() },
            "Action": "sts:TagSession",
        }));
    }
    [
        Document {
            name: "aws-ecr-publisher-trust.json",
            account: registry.to_owned(),
            attach: Attach::Trust {
                role: publisher.to_owned(),
            },
            purpose: "lets exactly the CI role assume the publisher role in the registry account",
            body: policy(Value::Array(statements)),
        },
        Document {
            name: "aws-ecr-ci-assume-publisher.json",
            account: request.account.clone(),
            attach: Attach::RolePolicy {
                role: request.role_name.clone(),
                policy: "assume-ecr-publisher".into(),
            },
            purpose: "lets the CI role assume the publisher role, and nothing else",
            body: policy(json!([{
                "Sid": "AssumePublisherRole",
                "Effect": "Allow",
                "Action": one_or_many(trust_actions),
                "Resource": request.publisher_arn(publisher),
            }])),
        },
    ]
}

/// A direct push into another account's registry: the repository policy there.
pub(super) fn repository_policy(request: &Request, registry: &str) -> Document {
    Document {
        name: "aws-ecr-cross-account-repository-policy.json",
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
        name: "aws-ecr-source-repository-policy.json",
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
