//! `policy lint`: what each statement of an IAM or ECR policy document lets happen
//! that a least-privilege setup would not allow, graded by that, with the change that
//! fixes it. The rules are listed in docs/iam/lint.md, where each has a name.
//!
//! Every rule reads what a statement says (Effect, Action, Resource, Principal,
//! Condition), never a `Sid` or a file name. A GitHub OIDC trust is judged by asking
//! the evaluator of `policy check` whether made-up jobs would get in (another
//! repository, another owner, a look-alike name, other ids, a pull request, in both
//! `sub` forms), so every operator and key counts as STS would count it, and a trust
//! that pins its repository through another claim is not reported as open.
//!
//! This file reads the document and runs the rules in the order their findings are
//! listed; the rules are grouped by what they read: permissions.rs (Action and
//! Resource), principals.rs (who is let in), trust.rs (GitHub OIDC trusts, with the
//! made-up jobs of probe.rs) and placeholders.rs (values left as a tutorial wrote
//! them). statement.rs reads a statement once for all of them; actions.rs lists the
//! actions they grade by.

mod actions;
mod permissions;
mod placeholders;
mod principals;
mod probe;
mod statement;
#[cfg(test)]
mod tests;
mod trust;

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use super::{statements, strings, wildcard_match};
use placeholders::Placeholders;
use statement::Statement;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
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
    /// The rule's name in docs/iam/lint.md.
    pub rule: &'static str,
    pub severity: Severity,
    /// `statement 1 (AllowAll)`, or `document`.
    pub location: String,
    pub message: String,
}

/// Why a text is not a policy document to lint.
#[derive(Debug, thiserror::Error)]
pub enum NotAPolicy {
    #[error("not valid JSON ({0}){1}")]
    Json(serde_json::Error, &'static str),
    #[error("not a policy document: it has no Statement")]
    NoStatement,
}

/// Where a rule on one statement puts what it finds: the rule's name, the severity and
/// the message; the caller knows where the statement stands.
type AddFinding<'a> = dyn FnMut(&'static str, Severity, String) + 'a;

/// Lints one document.
pub fn lint(text: &str) -> Result<Vec<Finding>, NotAPolicy> {
    let document = read(text)?;
    let list = statements(&document);
    if list.is_empty() {
        return Err(NotAPolicy::NoStatement);
    }
    let denies = web_identity_denies(&list);
    let mut findings = Vec::new();
    let mut placeholders = Placeholders::default();
    let mut sids: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (index, raw) in list.into_iter().enumerate() {
        let location = match raw.get("Sid").and_then(Value::as_str) {
            Some(sid) => {
                sids.entry(sid).or_default().push(index);
                format!("statement {index} ({sid})")
            }
            None => format!("statement {index}"),
        };
        let statement = Statement::read(raw);
        placeholders.note(index, &statement);
        if !statement.allow {
            continue;
        }
        statement_rules(&statement, &denies, &mut |rule, severity, message| {
            findings.push(Finding {
                rule,
                severity,
                location: location.clone(),
                message,
            })
        });
    }
    findings.extend(duplicate_sids(sids));
    findings.extend(placeholders.findings());
    findings.sort_by_key(|f| f.severity);
    Ok(findings)
}

/// The document, or why it is not JSON.
fn read(text: &str) -> Result<Value, NotAPolicy> {
    serde_json::from_str(text).map_err(|e| {
        let hint = if has_comment(text) {
            "; JSON has no comments: remove them"
        } else {
            ""
        };
        NotAPolicy::Json(e, hint)
    })
}

/// The document's Deny statements for web identity: each keeps its jobs out of every
/// Allow of the document.
fn web_identity_denies<'a>(list: &[&'a Value]) -> Vec<&'a Value> {
    list.iter()
        .copied()
        .filter(|s| {
            s.get("Effect")
                .and_then(Value::as_str)
                .is_some_and(|e| e.eq_ignore_ascii_case("Deny"))
                && strings(s.get("Action"))
                    .iter()
                    .any(|a| wildcard_match(a, "sts:AssumeRoleWithWebIdentity", true))
        })
        .collect()
}

/// The rules on one Allow statement, in the order their findings are listed.
fn statement_rules(statement: &Statement<'_>, denies: &[&Value], add: &mut AddFinding<'_>) {
    permissions::rules(statement, add);
    principals::rules(statement, add);
    if statement.is_github_trust() {
        trust::github(statement, denies, add);
    }
    trust::web_identity_action(statement, add);
}

/// `duplicate-sid`: one finding for each Sid that stands in more than one statement.
fn duplicate_sids(sids: BTreeMap<&str, Vec<usize>>) -> impl Iterator<Item = Finding> {
    sids.into_iter()
        .filter(|(_, at)| at.len() > 1)
        .map(|(sid, at)| Finding {
            rule: "duplicate-sid",
            severity: Severity::Medium,
            location: "document".into(),
            message: format!(
                "Sid `{sid}` stands in statements {}: IAM refuses a policy whose Sids are not unique; rename all but one",
                list_of(at.iter().map(usize::to_string))
            ),
        })
}

/// `a`, `a and b`, `a, b and c`.
fn list_of(items: impl Iterator<Item = String>) -> String {
    let items: Vec<String> = items.collect();
    match items.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

/// A `#` or `//` comment outside a string: what tutorials annotate JSON with.
fn has_comment(text: &str) -> bool {
    text.lines().any(|line| {
        let (mut in_string, mut escaped) = (false, false);
        let bytes = line.as_bytes();
        for (i, &b) in bytes.iter().enumerate() {
            match b {
                _ if escaped => escaped = false,
                b'\\' if in_string => escaped = true,
                b'"' => in_string = !in_string,
                b'#' if !in_string => return true,
                b'/' if !in_string && bytes.get(i + 1) == Some(&b'/') => return true,
                _ => {}
            }
        }
        false
    })
}
