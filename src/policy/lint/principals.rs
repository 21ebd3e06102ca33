//! The rules on who a statement lets in: its Principal read with its conditions, for
//! repository, registry and trust policies. `*` is anyone unless a condition names who
//! (NARROWING_KEYS); a service principal acts for every account unless a condition ties
//! it to yours (SOURCE_KEYS); a whole account or an IAM user is wider than the role
//! that needs the access. GitHub's OIDC trusts have rules of their own, in trust.rs.

use super::actions::{READ, REPLICATION, WRITE, summary};
use super::statement::Statement;
use super::{AddFinding, Severity};
use crate::ecr_host::is_account_id;

/// Condition keys that name who a request comes from, or through which of the owner's
/// endpoints: with a positive operator on one of them, `Principal: "*"` is no longer
/// anyone. Not `aws:SourceIp`: an address says where a call comes from, not whose
/// credentials sign it.
const NARROWING_KEYS: [&str; 12] = [
    "aws:principalarn",
    "aws:principalaccount",
    "aws:principalorgid",
    "aws:principalorgpaths",
    "aws:sourcearn",
    "aws:sourceaccount",
    "aws:sourceorgid",
    "aws:sourceorgpaths",
    "aws:sourcevpc",
    "aws:sourcevpce",
    "aws:sourceowner",
    "aws:userid",
];

/// Keys that tie a service principal to the resource it acts for (the confused deputy).
const SOURCE_KEYS: [&str; 4] = [
    "aws:sourcearn",
    "aws:sourceaccount",
    "aws:sourceorgid",
    "aws:sourceorgpaths",
];

/// Every rule on who is let in, in the order their findings are listed.
pub(super) fn rules(statement: &Statement<'_>, add: &mut AddFinding<'_>) {
    let writes = statement.granted(&WRITE);
    principal_anyone(statement, &writes, add);
    service_no_source(statement, &writes, add);
    principal_account(statement, add);
    iam_user(statement, add);
}

fn principal_anyone(statement: &Statement<'_>, writes: &[&str], add: &mut AddFinding<'_>) {
    if !statement.anyone || statement.narrowed_by(&NARROWING_KEYS) || statement.is_github_trust() {
        return;
    }
    let reads = statement.granted(&READ);
    if !writes.is_empty() || statement.grants("sts:AssumeRoleWithWebIdentity") {
        add(
            "principal-anyone",
            Severity::Critical,
            format!(
                "Principal \"*\" with no condition on who: any AWS account, anyone's, can {}; name the role ARN, or narrow it with aws:PrincipalOrgID or aws:PrincipalArn",
                can(statement, writes)
            ),
        );
    } else if !reads.is_empty() || statement.actions.iter().any(|a| a.starts_with("ecr")) {
        add(
            "principal-anyone",
            Severity::High,
            "Principal \"*\" with no condition on who: anyone with an AWS account can pull these images; name the accounts or roles, or narrow it with aws:PrincipalOrgID".into(),
        );
    }
}

fn service_no_source(statement: &Statement<'_>, writes: &[&str], add: &mut AddFinding<'_>) {
    // ECR's own service principals (pull-through cache, replication) act for every
    // account's registry: a role they may assume needs the same condition.
    let ecr_service_assumes = statement.grants("sts:AssumeRole")
        && statement
            .services
            .iter()
            .any(|s| s.to_ascii_lowercase().ends_with(".ecr.amazonaws.com"));
    if ecr_service_assumes && !statement.narrowed_by(&SOURCE_KEYS) {
        add(
            "service-no-source",
            Severity::Medium,
            format!(
                "{} may assume this role with no aws:SourceAccount or aws:SourceArn condition: the service acting for any account's registry gets the role's permissions; add the condition naming your account",
                statement.services.join(", ")
            ),
        );
    } else if !statement.services.is_empty()
        && statement.registry_actions
        && !statement.narrowed_by(&SOURCE_KEYS)
    {
        let service = statement.services.join(", ");
        if writes.is_empty() {
            add(
                "service-no-source",
                Severity::Medium,
                format!(
                    "{service} with no aws:SourceArn or aws:SourceAccount condition: the service acting for any account's resources can read these images; add the condition naming yours"
                ),
            );
        } else {
            add(
                "service-no-source",
                Severity::High,
                format!(
                    "{service} with no aws:SourceArn or aws:SourceAccount condition: the service acting for any account's resources can {}; add the condition naming yours",
                    summary(writes)
                ),
            );
        }
    }
}

fn principal_account(statement: &Statement<'_>, add: &mut AddFinding<'_>) {
    let account_writes = writes_beyond_replication(statement);
    if account_writes.is_empty() {
        return;
    }
    let is_account = |p: &String| p.ends_with(":root") || is_account_id(p);
    for p in statement.aws.iter().filter(|p| is_account(p)) {
        add(
            "principal-account",
            Severity::Low,
            format!(
                "`{p}` is a whole account: every principal there whose own policy allows it can {}; name the role that needs it",
                can(statement, &account_writes)
            ),
        );
    }
}

fn iam_user(statement: &Statement<'_>, add: &mut AddFinding<'_>) {
    let users: Vec<String> = statement
        .aws
        .iter()
        .filter(|p| p.contains(":user/"))
        .map(|p| format!("`{p}`"))
        .collect();
    if !users.is_empty() {
        add(
            "iam-user",
            Severity::Low,
            format!(
                "{} {}, which means long-lived access keys; a role assumed with GitHub OIDC needs none",
                users.join(", "),
                if users.len() == 1 {
                    "is an IAM user"
                } else {
                    "are IAM users"
                }
            ),
        );
    }
}

/// What the principal can do, for a message: assume the role, else these writes.
fn can(statement: &Statement<'_>, writes: &[&str]) -> String {
    if statement.grants("sts:AssumeRole") {
        "assume this role".to_owned()
    } else {
        summary(writes)
    }
}

/// Writes other than what replication needs of a source account.
fn writes_beyond_replication(statement: &Statement<'_>) -> Vec<&'static str> {
    statement
        .granted(&WRITE)
        .into_iter()
        .filter(|a| !REPLICATION.contains(a))
        .collect()
}
