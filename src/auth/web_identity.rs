//! The first hop with `role-to-assume`: STS AssumeRoleWithWebIdentity with the job's
//! OIDC token, on a client with no credentials at all.
//!
//! A refused token is the fix nobody can see from the job: the trust policy is in
//! another place, and the token's claims are not in the log. So a denial says which
//! claims the token has (they are not secrets, the token is), which form its subject
//! takes, and the condition that would let this job in.

use aws_config::SdkConfig;
use aws_sdk_sts::error::ProvideErrorMetadata;

use super::{Error, Hop, Request, claim_text, jwt_claims, masked_provider};
use crate::actions::Runtime;
use crate::names::account_of_arn;
use crate::sub_claim::{self, SubClaim};

pub(super) async fn assume_web_identity(
    base: &SdkConfig,
    auth: &Request,
    role: &str,
    token: &str,
    runtime: &Runtime,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Hop, Error> {
    let endpoint = crate::sdk::Endpoint::default();
    let config = aws_sdk_sts::config::Builder::from(base)
        .interceptor(endpoint.clone())
        .build();
    let output = aws_sdk_sts::Client::from_conf(config)
        .assume_role_with_web_identity()
        .role_arn(role)
        .role_session_name(&auth.role_session_name)
        .duration_seconds(auth.role_duration_seconds)
        .web_identity_token(token)
        .send()
        .await
        .map_err(|err| {
            let hint = match err.code() {
                Some("AccessDenied") => denied_token_hint(role, token, env),
                Some("InvalidIdentityToken") => format!(
                    "; the account of {role} needs an IAM OIDC provider for https://token.actions.githubusercontent.com with client id (audience) `{}`",
                    auth.audience
                ),
                Some("ValidationError") => format!(
                    "; role-duration-seconds ({}) must not exceed the role's maximum session duration",
                    auth.role_duration_seconds
                ),
                _ => String::new(),
            };
            Error::WebIdentity {
                role: role.to_owned(),
                reason: crate::sdk::describe_at(&err, &endpoint),
                hint,
            }
        })?;
    let arn = output
        .assumed_role_user()
        .map(|u| u.arn().to_owned())
        .unwrap_or_else(|| role.to_owned());
    let credentials = output.credentials().ok_or_else(|| Error::WebIdentity {
        role: role.to_owned(),
        reason: "STS answered without credentials".into(),
        hint: String::new(),
    })?;
    let claims = jwt_claims(token).unwrap_or_default();
    let claim = |name: &str| claim_text(&claims, name).unwrap_or_else(|| "?".into());
    tracing::info!(
        "{role}: assumed with the job's token (sub `{}`, aud `{}`) as session {}, in account {}",
        claim("sub"),
        claim("aud"),
        auth.role_session_name,
        account_of_arn(&arn).unwrap_or("?")
    );
    Ok(Hop {
        provider: masked_provider(credentials, runtime),
        arn,
    })
}

/// What a denied web-identity assume needs said: the claims the trust policy saw (they
/// are not secrets, the token is), which `sub` form they have, and the condition that
/// would let them in.
fn denied_token_hint(role: &str, token: &str, env: &impl Fn(&str) -> Option<String>) -> String {
    let claims = jwt_claims(token).unwrap_or_default();
    let claim = |name: &str| claims.get(name).and_then(|v| v.as_str()).map(str::to_owned);
    let sub = claim("sub").unwrap_or_else(|| "?".into());
    let aud = claim_text(&claims, "aud").unwrap_or_else(|| "?".into());
    let parsed = SubClaim::parse(&sub);
    let form = match &parsed {
        Some(s) if s.is_immutable() => format!(
            " (an immutable subject: owner id {} and repository id {} after `@`, as github.com writes them for repositories created, renamed or transferred since 2026-07-15 and for those opted in, so a trust written for `{}` does not match it)",
            s.owner_id.unwrap_or_default(),
            s.repo_id.unwrap_or_default(),
            sub_claim::subject(s.owner, None, s.repo, Some("…"))
        ),
        Some(_) => " (the classic form, without the owner's and repository's ids)".to_owned(),
        None => " (a customised subject template)".to_owned(),
    };
    let mut seen = format!("sub `{sub}`{form}, aud `{aud}`");
    for name in ["repository", "ref", "environment"] {
        if let Some(value) = claim(name) {
            seen.push_str(&format!(", {name} `{value}`"));
        }
    }
    // The ids: from the token's own claims, else from the runner's variables.
    let id = |claim_name: &str, variable: &str| {
        claim_text(&claims, claim_name)
            .or_else(|| env(variable))
            .filter(|v| sub_claim::is_id(v))
    };
    let ids = id("repository_owner_id", "GITHUB_REPOSITORY_OWNER_ID")
        .zip(id("repository_id", "GITHUB_REPOSITORY_ID"));
    let generate = parsed.as_ref().and_then(|s| {
        // Git allows `$`, `;` and backquotes in a branch name: quoted, so that a
        // command copied from the log runs nothing else.
        let quoted = |name: &str| {
            if name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._/-".contains(&b))
            {
                name.to_owned()
            } else {
                format!("'{}'", name.replace('\'', "'\\''"))
            }
        };
        let subject = match s.context?.split_once(':') {
            Some(("ref", r)) if r.starts_with("refs/heads/") => {
                format!("--branch {}", quoted(&r["refs/heads/".len()..]))
            }
            Some(("ref", r)) if r.starts_with("refs/tags/") => {
                format!("--tag {}", quoted(&r["refs/tags/".len()..]))
            }
            Some(("environment", e)) => format!("--environment {}", quoted(e)),
            None if s.context == Some("pull_request") => "--pull-request".to_owned(),
            _ => return None,
        };
        Some(match &ids {
            Some((o, r)) => format!(
                "; `ecr-push policy generate --github-repo {}/{} --github-owner-id {o} --github-repo-id {r} {subject} …` writes it for both forms",
                s.owner, s.repo
            ),
            None => format!(
                "; `ecr-push policy generate --github-repo {}/{} {subject} …` writes it",
                s.owner, s.repo
            ),
        })
    });
    format!(
        "; the trust policy of {role} does not let this job in. Its token has {seen}. A statement for the federated principal oidc-provider/token.actions.githubusercontent.com with StringEquals \"token.actions.githubusercontent.com:aud\": \"{aud}\", \"token.actions.githubusercontent.com:sub\": \"{sub}\" would let this job in{} (ecr-push policy check --trust FILE --token … names the condition that fails)",
        generate.unwrap_or_default()
    )
}
