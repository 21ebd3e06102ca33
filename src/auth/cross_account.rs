//! The optional second hop: STS AssumeRole, with the first hop's credentials, into
//! `cross-account-role` (role chaining, typically into the account that owns the
//! registry). With `session-tags` the job's GitHub context goes along as session tags;
//! when STS finds them too large the optional ones are dropped and the call is made
//! again with the required ones.

use aws_config::SdkConfig;
use aws_sdk_sts::error::ProvideErrorMetadata;
use aws_sdk_sts::types::Tag;

use super::{CrossAccount, Error, Hop, Request, masked_provider};
use crate::actions::Runtime;
use crate::names::account_of_arn;

/// IAM caps a session reached by role chaining at one hour, whatever was asked.
const CHAINED_MAX_SECONDS: i32 = 3600;
/// STS session tag values: at most 256 characters of `[\p{L}\p{Z}\p{N}_.:/=+\-@]`.
const MAX_TAG_VALUE_CHARS: usize = 256;

pub(super) async fn assume_cross_account(
    base: &SdkConfig,
    first: &Hop,
    auth: &Request,
    cross: &CrossAccount,
    runtime: &Runtime,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Hop, Error> {
    let endpoint = crate::sdk::Endpoint::default();
    let config = aws_sdk_sts::config::Builder::from(base)
        .credentials_provider(first.provider.clone())
        .interceptor(endpoint.clone())
        .build();
    let client = aws_sdk_sts::Client::from_conf(config);
    let mut tags = if cross.session_tags {
        session_tags(env)
    } else {
        Vec::new()
    };
    loop {
        let mut request = client
            .assume_role()
            .role_arn(&cross.role)
            .role_session_name(&auth.role_session_name)
            .duration_seconds(auth.role_duration_seconds.min(CHAINED_MAX_SECONDS))
            .set_external_id(cross.external_id.clone());
        for (key, value, _) in &tags {
            if let Ok(tag) = Tag::builder().key(*key).value(value).build() {
                request = request.tags(tag);
            }
        }
        match request.send().await {
            Ok(output) => {
                let credentials = output.credentials().ok_or_else(|| Error::CrossAccount {
                    role: cross.role.clone(),
                    reason: "STS answered without credentials".into(),
                    hint: String::new(),
                })?;
                let arn = output
                    .assumed_role_user()
                    .map(|u| u.arn().to_owned())
                    .unwrap_or_else(|| cross.role.clone());
                tracing::info!(
                    "{}: assumed with those credentials as session {}{}, in account {}",
                    cross.role,
                    auth.role_session_name,
                    if tags.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " with tags {}",
                            tags.iter()
                                .map(|(k, _, _)| *k)
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    },
                    account_of_arn(&arn).unwrap_or("?")
                );
                return Ok(Hop {
                    provider: masked_provider(credentials, runtime),
                    arn,
                });
            }
            Err(err)
                if err.code() == Some("PackedPolicyTooLarge")
                    && tags.iter().any(|(_, _, optional)| *optional) =>
            {
                tracing::info!("session tags too large for STS; sending the required ones only");
                tags.retain(|(_, _, optional)| !optional);
            }
            Err(err) => {
                let hint = match err.code() {
                    Some("AccessDenied") => format!(
                        "; the trust policy of {} must allow sts:AssumeRole{} for {}, and that role needs sts:AssumeRole on {} in its own permissions",
                        cross.role,
                        if tags.is_empty() {
                            ""
                        } else {
                            " and sts:TagSession (session-tags is on)"
                        },
                        role_of(&first.arn),
                        cross.role
                    ),
                    _ => String::new(),
                };
                return Err(Error::CrossAccount {
                    role: cross.role.clone(),
                    reason: crate::sdk::describe_at(&err, &endpoint),
                    hint,
                });
            }
        }
    }
}

/// The session tags of the cross-account hop: (key, value, optional). Optional ones are
/// dropped first when STS finds the packed tags too large.
fn session_tags(env: &impl Fn(&str) -> Option<String>) -> Vec<(&'static str, String, bool)> {
    [
        ("Repository", "GITHUB_REPOSITORY", false),
        ("Commit", "GITHUB_SHA", false),
        ("Actor", "GITHUB_ACTOR", true),
        ("Workflow", "GITHUB_WORKFLOW", true),
        ("Branch", "GITHUB_REF_NAME", true),
        ("RunId", "GITHUB_RUN_ID", true),
    ]
    .into_iter()
    .filter_map(|(key, variable, optional)| {
        let value = tag_value(&env(variable)?);
        (!value.is_empty()).then_some((key, value, optional))
    })
    .collect()
}

/// Replaces what STS refuses in a tag value and cuts it to the allowed length.
fn tag_value(raw: &str) -> String {
    raw.chars()
        .map(|c| {
            if c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(MAX_TAG_VALUE_CHARS)
        .collect()
}

/// `arn:aws:sts::1:assumed-role/NAME/SESSION` → `arn:aws:iam::1:role/NAME`, for messages.
fn role_of(arn: &str) -> String {
    let mut fields = arn.splitn(6, ':');
    match (fields.next(), fields.next(), fields.nth(2), fields.next()) {
        (Some("arn"), Some(partition), Some(account), Some(resource)) => {
            match resource
                .strip_prefix("assumed-role/")
                .and_then(|r| r.split('/').next())
            {
                Some(name) => format!("arn:{partition}:iam::{account}:role/{name}"),
                None => arn.to_owned(),
            }
        }
        _ => arn.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_tags_are_sanitised_and_ordered_required_first() {
        let env = |name: &str| match name {
            "GITHUB_REPOSITORY" => Some("org/app".to_owned()),
            "GITHUB_SHA" => Some("abc123".to_owned()),
            "GITHUB_WORKFLOW" => Some("Build & push (prod)".to_owned()),
            "GITHUB_RUN_ID" => Some(String::new()),
            _ => None,
        };
        assert_eq!(
            session_tags(&env),
            [
                ("Repository", "org/app".to_owned(), false),
                ("Commit", "abc123".to_owned(), false),
                ("Workflow", "Build _ push _prod_".to_owned(), true),
            ]
        );
        assert_eq!(tag_value(&"x".repeat(300)).len(), MAX_TAG_VALUE_CHARS);
    }

    #[test]
    fn assumed_role_arn_names_its_role() {
        assert_eq!(
            role_of("arn:aws:sts::111111111111:assumed-role/ci/GitHubActions"),
            "arn:aws:iam::111111111111:role/ci"
        );
        assert_eq!(role_of("arn:aws:iam::1:user/me"), "arn:aws:iam::1:user/me");
    }
}
