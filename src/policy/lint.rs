//! `policy lint`: the mistakes people copy from tutorials into ECR and IAM documents,
//! each with a severity and what to write instead. A document is read for what it is:
//! a trust policy (a Principal and an `sts:` action), a repository policy (a Principal
//! and `ecr:` actions, no Resource) or an identity policy (a Resource, no Principal).

use std::fmt;

use serde_json::Value;

use super::{GITHUB_OIDC_HOST, PUSH_ACTIONS, WRITE_ACTIONS, statements, strings, wildcard_match};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Critical,
    High,
    Medium,
    Low,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Critical => "critical",
            Self::High => "high",
            Self::Medium => "medium",
            Self::Low => "low",
        })
    }
}

#[derive(Debug, Clone)]
pub struct Finding {
    pub severity: Severity,
    /// `statement 1 (AllowAll)`, or `document`.
    pub location: String,
    pub message: String,
}

/// Lints one document; `name` (its file name) tells a pull-only or read-only persona.
pub fn lint(name: &str, text: &str) -> Vec<Finding> {
    let mut findings = Vec::new();
    let document: Value = match serde_json::from_str(text) {
        Ok(document) => document,
        Err(e) => {
            findings.push(Finding {
                severity: Severity::High,
                location: "document".into(),
                message: format!(
                    "not valid JSON ({e}); IAM refuses it as it is (JSON has no comments)"
                ),
            });
            // Tutorials annotate JSON with comments; what they annotate still deserves
            // a reading.
            match serde_json::from_str(&strip_comments(text)) {
                Ok(document) => document,
                Err(_) => return findings,
            }
        }
    };
    let read_only_name = ["pull", "read", "scan"]
        .iter()
        .any(|w| name.to_ascii_lowercase().contains(w));
    let list = statements(&document);
    if list.is_empty() {
        findings.push(Finding {
            severity: Severity::High,
            location: "document".into(),
            message: "it has no Statement".into(),
        });
    }
    for (index, statement) in list.into_iter().enumerate() {
        let location = match statement.get("Sid").and_then(Value::as_str) {
            Some(sid) => format!("statement {index} ({sid})"),
            None => format!("statement {index}"),
        };
        let mut add = |severity, message: String| {
            findings.push(Finding {
                severity,
                location: location.clone(),
                message,
            })
        };
        let allow = statement.get("Effect").and_then(Value::as_str) != Some("Deny");
        let actions = strings(statement.get("Action"));
        let has = |action: &str| actions.iter().any(|a| wildcard_match(a, action, true));
        let principal = statement.get("Principal");
        let resources = strings(statement.get("Resource"));

        for arn in arns_in(statement) {
            if let Some(account) = arn.split(':').nth(4)
                && !account.is_empty()
                && !(account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()))
            {
                add(
                    Severity::High,
                    format!(
                        "`{arn}` has `{account}` where a 12-digit account id belongs; IAM refuses it (a placeholder left in?)"
                    ),
                );
            }
        }
        if !allow {
            continue;
        }
        if statement.get("NotAction").is_some() || statement.get("NotResource").is_some() {
            add(
                Severity::Medium,
                "Allow with NotAction/NotResource grants everything not listed, including actions added later; list what is allowed".into(),
            );
        }
        if actions
            .iter()
            .any(|a| a == "*" || a.eq_ignore_ascii_case("ecr:*"))
        {
            add(
                Severity::High,
                format!(
                    "`{}` grants every ECR action, deletes included; list the actions needed",
                    actions.join(", ")
                ),
            );
        }

        if has("sts:AssumeRoleWithWebIdentity") && federated_github(principal) {
            github_trust(statement, &mut add);
        }
        if let Some(principal) = principal {
            principals(principal, &actions, &mut add);
        }
        let ecr_actions: Vec<&String> = actions.iter().filter(|a| a.starts_with("ecr:")).collect();
        if principal.is_some() && !ecr_actions.is_empty() && resources.is_empty() {
            // A repository policy.
            if has("ecr:GetAuthorizationToken") {
                add(
                    Severity::Medium,
                    "ecr:GetAuthorizationToken has no effect in a repository policy: it is granted in the caller's identity policy, on \"*\"".into(),
                );
            }
        }
        if principal.is_none() && resources.iter().any(|r| r == "*") {
            let writes: Vec<&str> = WRITE_ACTIONS.iter().copied().filter(|w| has(w)).collect();
            if !writes.is_empty() {
                add(
                    Severity::High,
                    format!(
                        "{} on Resource \"*\": every repository of the account, and of any account whose repository policy allows it; scope to arn:aws:ecr:REGION:ACCOUNT:repository/NAME",
                        writes.join(", ")
                    ),
                );
            } else if ecr_actions
                .iter()
                .any(|a| !a.eq_ignore_ascii_case("ecr:GetAuthorizationToken"))
            {
                add(
                    Severity::Low,
                    "read actions on Resource \"*\": every repository can be read; scope to the repositories needed".into(),
                );
            }
        }
        if read_only_name || location_says_read_only(&location) {
            let writes: Vec<&str> = WRITE_ACTIONS.iter().copied().filter(|w| has(w)).collect();
            if !writes.is_empty() {
                add(
                    Severity::High,
                    format!(
                        "a pull-only or read-only document holds write actions: {}",
                        writes.join(", ")
                    ),
                );
            }
        }
        if !read_only_name && PUSH_ACTIONS.iter().all(|a| has(a)) && has("ecr:BatchDeleteImage") {
            add(
                Severity::Medium,
                "a push policy that can also delete images: a compromised pipeline could erase releases".into(),
            );
        }
    }
    findings.sort_by_key(|f| f.severity);
    findings
}

fn location_says_read_only(location: &str) -> bool {
    let sid = location.to_ascii_lowercase();
    sid.contains("pull") || sid.contains("readonly") || sid.contains("read-only")
}

fn federated_github(principal: Option<&Value>) -> bool {
    principal
        .map(|p| strings(p.get("Federated")))
        .unwrap_or_default()
        .iter()
        .any(|f| f.contains(GITHUB_OIDC_HOST))
}

/// The rules for a statement that lets GitHub Actions tokens in.
fn github_trust(statement: &Value, add: &mut impl FnMut(Severity, String)) {
    let sub_key = format!("{GITHUB_OIDC_HOST}:sub");
    let aud_key = format!("{GITHUB_OIDC_HOST}:aud");
    let mut sub_values: Vec<(String, String)> = Vec::new();
    let mut has_aud = false;
    if let Some(block) = statement.get("Condition").and_then(Value::as_object) {
        for (operator, keys) in block {
            for (key, values) in keys.as_object().into_iter().flatten() {
                if key.eq_ignore_ascii_case(&sub_key) {
                    sub_values.extend(
                        strings(Some(values))
                            .into_iter()
                            .map(|v| (operator.clone(), v)),
                    );
                }
                if key.eq_ignore_ascii_case(&aud_key) {
                    has_aud = true;
                }
            }
        }
    }
    if sub_values.is_empty() {
        add(
            Severity::Critical,
            format!(
                "no `{sub_key}` condition: any GitHub Actions job of any repository on earth can assume this role; require StringEquals {sub_key} = repo:ORG/REPO:ref:refs/heads/BRANCH"
            ),
        );
    }
    for (operator, value) in &sub_values {
        let wildcard = operator.contains("Like");
        let after_repo = value.strip_prefix("repo:").unwrap_or(value);
        if wildcard && (value == "*" || value.starts_with("repo:*") || value.starts_with('*')) {
            add(
                Severity::Critical,
                format!(
                    "`{sub_key}` matches `{value}`: any repository on earth; name the repository"
                ),
            );
        } else if wildcard
            && after_repo
                .split('/')
                .next()
                .is_some_and(|org| !org.contains('*'))
            && after_repo
                .split(':')
                .next()
                .is_some_and(|r| r.ends_with("/*"))
        {
            add(
                Severity::Medium,
                format!(
                    "`{sub_key}` matches `{value}`: every repository of the organization; name the repository"
                ),
            );
        } else if wildcard && after_repo.split(':').nth(1) == Some("*") {
            add(
                Severity::Low,
                format!(
                    "`{sub_key}` matches `{value}`: every branch, tag, environment and pull request of the repository; name the branch or environment"
                ),
            );
        }
        if !wildcard && value.contains(['*', '?']) && operator.starts_with("StringEquals") {
            add(
                Severity::High,
                format!(
                    "{operator} takes `{value}` literally, so no token matches; use StringLike for a wildcard"
                ),
            );
        }
    }
    if !has_aud {
        add(
            Severity::High,
            format!(
                "no `{aud_key}` condition: tokens minted for any audience are accepted; require StringEquals {aud_key} = sts.amazonaws.com"
            ),
        );
    }
}

/// Rules on who is let in.
fn principals(principal: &Value, actions: &[String], add: &mut impl FnMut(Severity, String)) {
    let writes = WRITE_ACTIONS
        .iter()
        .any(|w| actions.iter().any(|a| wildcard_match(a, w, true)));
    let aws = match principal {
        Value::String(s) if s == "*" => vec!["*".to_owned()],
        other => strings(other.get("AWS")),
    };
    for p in aws {
        if p == "*" {
            add(
                if writes {
                    Severity::Critical
                } else {
                    Severity::High
                },
                "Principal \"*\": anyone with an AWS account; name the role ARN".into(),
            );
        } else if p.ends_with(":root") || (p.len() == 12 && p.bytes().all(|b| b.is_ascii_digit())) {
            add(
                Severity::Medium,
                format!(
                    "`{p}` is the whole account: every principal its own policies allow gets in; name the role ARN that needs it"
                ),
            );
        } else if p.contains(":user/") {
            add(
                Severity::Low,
                format!(
                    "`{p}` is an IAM user, which means long-lived access keys; a role assumed with GitHub OIDC needs none"
                ),
            );
        }
    }
}

/// The text without `#` and `//` comments outside strings.
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let (mut in_string, mut escaped) = (false, false);
        let mut cut = line.len();
        let bytes = line.as_bytes();
        for (i, &b) in bytes.iter().enumerate() {
            match b {
                _ if escaped => escaped = false,
                b'\\' if in_string => escaped = true,
                b'"' => in_string = !in_string,
                b'#' if !in_string => {
                    cut = i;
                    break;
                }
                b'/' if !in_string && bytes.get(i + 1) == Some(&b'/') => {
                    cut = i;
                    break;
                }
                _ => {}
            }
        }
        out.push_str(&line[..cut]);
        out.push('\n');
    }
    out
}

/// Every ARN in a statement's Principal and Resource.
fn arns_in(statement: &Value) -> Vec<String> {
    let mut arns = strings(statement.get("Resource"));
    if let Some(principal) = statement.get("Principal") {
        for kind in ["AWS", "Federated"] {
            arns.extend(strings(principal.get(kind)));
        }
    }
    arns.retain(|a| a.starts_with("arn:"));
    arns
}

#[cfg(test)]
mod tests {
    use super::*;

    fn severities(name: &str, text: &str) -> Vec<(Severity, String)> {
        lint(name, text)
            .into_iter()
            .map(|f| (f.severity, f.message))
            .collect()
    }

    #[test]
    fn oidc_trust_without_sub_is_critical_and_without_aud_high() {
        let text = r#"{"Statement": {"Effect": "Allow",
            "Principal": {"Federated": "arn:aws:iam::111111111111:oidc-provider/token.actions.githubusercontent.com"},
            "Action": "sts:AssumeRoleWithWebIdentity"}}"#;
        let found = severities("trust.json", text);
        assert_eq!(found[0].0, Severity::Critical, "{found:?}");
        assert!(found[0].1.contains("any repository on earth"));
        assert!(
            found
                .iter()
                .any(|(s, m)| *s == Severity::High && m.contains(":aud"))
        );
    }

    #[test]
    fn sub_wildcards_are_graded_by_how_much_they_open() {
        let trust = |op: &str, sub: &str| {
            let aud = "token.actions.githubusercontent.com:aud";
            let mut condition = serde_json::json!({"StringEquals": {aud: "sts.amazonaws.com"}});
            condition[op]["token.actions.githubusercontent.com:sub"] = sub.into();
            serde_json::json!({"Statement": {"Effect": "Allow",
                "Principal": {"Federated": "arn:aws:iam::111111111111:oidc-provider/token.actions.githubusercontent.com"},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": condition}})
            .to_string()
        };
        let worst = |op, sub| severities("t.json", &trust(op, sub)).first().map(|f| f.0);
        assert_eq!(worst("StringLike", "*"), Some(Severity::Critical));
        assert_eq!(worst("StringLike", "repo:*"), Some(Severity::Critical));
        assert_eq!(worst("StringLike", "repo:org/*"), Some(Severity::Medium));
        assert_eq!(worst("StringLike", "repo:org/app:*"), Some(Severity::Low));
        assert_eq!(
            worst("StringEquals", "repo:org/app:ref:refs/tags/v*"),
            Some(Severity::High)
        );
        assert_eq!(
            worst("StringEquals", "repo:org/app:ref:refs/heads/main"),
            None
        );
    }

    #[test]
    fn commented_json_is_refused_and_still_read() {
        let text = "{\"Statement\": {\"Effect\": \"Allow\", \"Action\": \"ecr:PutImage\",\n  \"Resource\": \"*\" # or the ARN // \"x\"\n}}";
        let found = severities("p.json", text);
        assert!(found[0].1.starts_with("not valid JSON"), "{found:?}");
        assert!(
            found.iter().any(|(_, m)| m.contains("on Resource \"*\"")),
            "{found:?}"
        );
        assert_eq!(
            strip_comments("\"a#b\" # c\n\"u//v\" // w"),
            "\"a#b\" \n\"u//v\" \n"
        );
    }

    #[test]
    fn what_the_generator_writes_is_clean() {
        use crate::policy::generate::{Request, Subject, generate};
        let request = Request {
            account: "111111111111".into(),
            region: "us-east-1".into(),
            repositories: vec!["app".into()],
            github_repo: "org/app".into(),
            subject: Subject::Tag("v*".into()),
            audience: "sts.amazonaws.com".into(),
            role_name: "ci".into(),
            registry_account: Some("222222222222".into()),
            publisher_role: None,
            external_id: None,
            session_tags: false,
            docker_login: true,
            registry_transport: true,
            source: Some(crate::policy::generate::Source {
                account: "333333333333".into(),
                region: "us-east-1".into(),
                repository: "dev/app".into(),
            }),
        };
        for document in generate(&request) {
            let found = lint(document.name, &document.body.to_string());
            assert!(found.is_empty(), "{}: {found:?}", document.name);
        }
    }
}
