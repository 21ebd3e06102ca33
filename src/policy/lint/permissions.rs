//! The rules on what a statement lets be done and on what: Action and NotAction,
//! Resource and NotResource. They hold for every kind of document, identity policies
//! and repository or registry policies alike; who is let in is principals.rs's.

use super::actions::{READ, REPLICATION, WRITE, summary};
use super::statement::Statement;
use super::{AddFinding, Severity};

/// Every rule on Action and Resource, in the order their findings are listed.
pub(super) fn rules(statement: &Statement<'_>, add: &mut AddFinding<'_>) {
    not_action(statement, add);
    all_actions(statement, add);
    auth_token_in_repository_policy(statement, add);
    any_repository(statement, add);
    push_can_delete(statement, add);
}

fn not_action(statement: &Statement<'_>, add: &mut AddFinding<'_>) {
    // NotResource beside a list of another service's actions is a deliberate carve-out
    // (AWS's own managed policies use it); beside registry actions it opens every
    // repository not listed, those created later included.
    if statement.not_action || (statement.not_resource && statement.registry_actions) {
        add(
            "not-action",
            Severity::Medium,
            "Allow with NotAction or NotResource grants everything not listed, actions and repositories added later included; list what is allowed".into(),
        );
    }
}

fn all_actions(statement: &Statement<'_>, add: &mut AddFinding<'_>) {
    let identity = !statement.has_principal;
    if statement.actions.iter().any(|a| a == "*") {
        let (severity, message) = if identity && statement.resources.iter().any(|r| r == "*") {
            (
                Severity::Critical,
                "Action \"*\" on Resource \"*\": every action of every AWS service on everything, an administrator; list the actions needed",
            )
        } else {
            (
                Severity::High,
                "Action \"*\": every action of every AWS service, not only ECR's; list the actions needed",
            )
        };
        add("all-actions", severity, message.into());
    } else if let Some(a) = statement
        .actions
        .iter()
        .find(|a| a.eq_ignore_ascii_case("ecr:*") || a.eq_ignore_ascii_case("ecr-public:*"))
    {
        add(
            "all-actions",
            Severity::High,
            format!(
                "`{a}`: every action of the registry, deleting images and repositories and changing repository policies among them; list the actions needed"
            ),
        );
    }
}

fn auth_token_in_repository_policy(statement: &Statement<'_>, add: &mut AddFinding<'_>) {
    if statement.has_principal
        && statement.resources.is_empty()
        && statement.names("ecr:GetAuthorizationToken")
    {
        add(
            "auth-token-in-repository-policy",
            Severity::Medium,
            "ecr:GetAuthorizationToken in a repository policy: ECR refuses such a policy (\"Invalid repository policy provided\"), and it would have no effect there; grant it in the caller's identity policy, on \"*\", and remove it here".into(),
        );
    }
}

/// `write-any-repository`, or for a statement that only reads, `read-any-repository`.
fn any_repository(statement: &Statement<'_>, add: &mut AddFinding<'_>) {
    let Some(resource) = statement.any_repository() else {
        return;
    };
    let writes: Vec<&str> = statement
        .granted(&WRITE)
        .into_iter()
        .filter(|a| *a != "sts:AssumeRole")
        .collect();
    let replication_only =
        statement.has_principal && writes.iter().all(|a| REPLICATION.contains(a));
    if !writes.is_empty() && !replication_only {
        add(
            "write-any-repository",
            Severity::High,
            format!(
                "{} on `{resource}`: every repository of the registry, and of any account whose repository policy lets this principal in; scope to arn:aws:ecr:REGION:ACCOUNT:repository/NAME",
                summary(&writes)
            ),
        );
    } else if writes.is_empty() {
        let reads = statement.granted(&READ);
        if !reads.is_empty() {
            add(
                "read-any-repository",
                Severity::Low,
                format!(
                    "{} on `{resource}`: every repository can be read; scope to the repositories needed",
                    summary(&reads)
                ),
            );
        }
    }
}

fn push_can_delete(statement: &Statement<'_>, add: &mut AddFinding<'_>) {
    let deletes: Vec<&str> = ["ecr:BatchDeleteImage", "ecr:DeleteRepository"]
        .into_iter()
        .filter(|a| statement.names(a))
        .collect();
    if statement.grants("ecr:PutImage") && !deletes.is_empty() {
        add(
            "push-can-delete",
            Severity::Medium,
            format!(
                "a statement that pushes can also {}: a compromised pipeline could erase releases; grant deletes to a separate cleanup role",
                if deletes.len() == 2 {
                    "delete images and the repository"
                } else if deletes[0] == "ecr:BatchDeleteImage" {
                    "delete images"
                } else {
                    "delete the repository"
                }
            ),
        );
    }
}
