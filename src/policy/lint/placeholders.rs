//! The `placeholder` rule: values left as a tutorial wrote them (`${…}` that is no IAM
//! policy variable, `<…>`, `YOUR_…`, an ARN whose account is no account id, the
//! accounts AWS's documentation makes up). Each is one finding for the document,
//! naming every place it stands, at the severity of the worst of them.

use std::collections::BTreeMap;

use super::statement::Statement;
use super::{Finding, Severity, list_of};
use crate::ecr_host::is_account_id;
use crate::policy::github_claim;
use crate::sub_claim::SubClaim;

/// Each placeholder of a document: the worst severity it stands at, and where.
#[derive(Default)]
pub(super) struct Placeholders(BTreeMap<String, (Severity, Vec<String>)>);

impl Placeholders {
    /// Records each placeholder left in statement `index`, with where it stands.
    pub(super) fn note(&mut self, index: usize, statement: &Statement<'_>) {
        let fields = [
            ("Principal", statement.aws.iter().collect::<Vec<_>>()),
            ("Federated principal", statement.federated.iter().collect()),
            ("Resource", statement.resources.iter().collect()),
            (
                "Condition",
                statement
                    .conditions
                    .iter()
                    .flat_map(|(_, _, v)| v)
                    .collect(),
            ),
        ];
        for (_, key, values) in &statement.conditions {
            for value in values {
                for text in keyed_placeholders(key, value) {
                    self.add(
                        &text,
                        Severity::Medium,
                        format!("statement {index} Condition"),
                    );
                }
            }
        }
        for value in statement.aws.iter().chain(&statement.federated) {
            if let Some(text) = principal_placeholder(value) {
                self.add(
                    &text,
                    Severity::Medium,
                    format!("statement {index} Principal"),
                );
            }
        }
        for (field, values) in fields {
            for value in values {
                let place = format!("statement {index} {field}");
                for text in placeholder_texts(value) {
                    let severity = if field == "Principal" && is_example_account(&text) {
                        Severity::High
                    } else {
                        Severity::Medium
                    };
                    self.add(&text, severity, place.clone());
                }
            }
        }
    }

    fn add(&mut self, text: &str, severity: Severity, place: String) {
        let entry = self
            .0
            .entry(text.to_owned())
            .or_insert((severity, Vec::new()));
        entry.0 = entry.0.min(severity);
        if !entry.1.contains(&place) {
            entry.1.push(place);
        }
    }

    /// One finding per placeholder, in the order of their texts.
    pub(super) fn findings(self) -> impl Iterator<Item = Finding> {
        self.0
            .into_iter()
            .map(|(text, (severity, places))| Finding {
                rule: "placeholder",
                severity,
                location: "document".into(),
                message: format!(
                    "`{text}` is a placeholder, not a value (in {}); put in the real one",
                    list_of(places.into_iter())
                ),
            })
    }
}

/// Account ids of the kind the AWS and GitHub documentation and tutorials make up
/// (`123456789012`, `111122223333`, `012345678910`, `123456123456`, `111111111111`): the
/// chance that one is the reader's own is nil.
fn is_example_account(id: &str) -> bool {
    if !is_account_id(id) {
        return false;
    }
    let b = id.as_bytes();
    let uniform = |part: &[u8]| part.iter().all(|c| *c == part[0]);
    uniform(b)
        || b.chunks(4).all(uniform)
        || ["123456789", "012345678", "987654321"]
            .iter()
            .any(|run| id.contains(run))
        || b[..6] == b[6..]
}

/// The placeholders in one value: `${…}` that is not an IAM policy variable, `<…>`,
/// an ARN's account field that is no account id, AWS's documentation accounts.
fn placeholder_texts(value: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        let inner = &rest[start + 2..start + len];
        // `${aws:username}`, `${aws:PrincipalTag/team}`, `${*}`: IAM's own variables.
        let variable =
            (inner.contains(':') && !inner.contains("::")) || ["*", "?", "$"].contains(&inner);
        if !variable {
            found.push(rest[start..=start + len].to_owned());
        }
        rest = &rest[start + len + 1..];
    }
    let mut rest = value;
    while let Some(start) = rest.find('<') {
        let Some(len) = rest[start..].find('>') else {
            break;
        };
        if len > 1 {
            found.push(rest[start..=start + len].to_owned());
        }
        rest = &rest[start + len + 1..];
    }
    if value.starts_with("arn:")
        && let Some(account) = value.split(':').nth(4)
        && !account.is_empty()
        && account != "aws"
        && !account.contains(['*', '?', '$', '<'])
        && !is_account_id(account)
    {
        found.push(account.to_owned());
    }
    for run in value.split(|c: char| !c.is_ascii_digit()) {
        if is_example_account(run) {
            found.push(run.to_owned());
        }
    }
    // `YOUR_GITHUB_USERNAME`, `your-org`: what tutorials ask the reader to replace.
    for word in value.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-')) {
        let lower = word.to_ascii_lowercase();
        if (lower.starts_with("your_") || lower.starts_with("your-")) && word.len() > 5 {
            found.push(word.to_owned());
        }
    }
    found
}

/// A principal ARN's account field that is no account id: IAM takes no wildcard there
/// (`arn:aws:iam::*****:…` is a redacted id, not a pattern).
fn principal_placeholder(value: &str) -> Option<String> {
    let account = value.strip_prefix("arn:")?.split(':').nth(3)?;
    account.contains('*').then(|| account.to_owned())
}

/// Placeholders only the key tells: a `sub` whose ids are words (`@OWNER_ID`), an
/// organization id that is not `o-` and 10 to 32 letters or digits.
fn keyed_placeholders(key: &str, value: &str) -> Vec<String> {
    let key = key.to_ascii_lowercase();
    let mut found = Vec::new();
    if github_claim(&key).as_deref() == Some("sub")
        && let Some(sub) = SubClaim::parse(value)
    {
        for id in [sub.owner_id, sub.repo_id].into_iter().flatten() {
            if !id.contains(['*', '?', '$', '<']) && !id.bytes().all(|b| b.is_ascii_digit()) {
                found.push(format!("@{id}"));
            }
        }
    }
    let org = match key.as_str() {
        "aws:principalorgid" | "aws:resourceorgid" | "aws:sourceorgid" => Some(value),
        "aws:principalorgpaths" | "aws:resourceorgpaths" | "aws:sourceorgpaths" => {
            value.split('/').next()
        }
        _ => None,
    };
    if let Some(org) = org.filter(|o| !o.contains(['*', '?', '$', '<']))
        && !org.strip_prefix("o-").is_some_and(|rest| {
            (10..=32).contains(&rest.len())
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                // `o-xxxxxxxxxx`: the shape of an id, x-ed out.
                && !rest.bytes().all(|b| b == b'x')
        })
    {
        found.push(org.to_owned());
    }
    found
}
