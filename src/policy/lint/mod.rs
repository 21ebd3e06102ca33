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
    let document: Value = serde_json::from_str(text).map_err(|e| {
        let hint = if has_comment(text) {
            "; JSON has no comments: remove them"
        } else {
            ""
        };
        NotAPolicy::Json(e, hint)
    })?;
    let list = statements(&document);
    if list.is_empty() {
        return Err(NotAPolicy::NoStatement);
    }
    let mut findings = Vec::new();
    let mut placeholders = Placeholders::default();
    let mut sids: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    // A Deny for web identity keeps its jobs out of every Allow of the document.
    let denies: Vec<&Value> = list
        .iter()
        .copied()
        .filter(|s| {
            s.get("Effect")
                .and_then(Value::as_str)
                .is_some_and(|e| e.eq_ignore_ascii_case("Deny"))
                && strings(s.get("Action"))
                    .iter()
                    .any(|a| wildcard_match(a, "sts:AssumeRoleWithWebIdentity", true))
        })
        .collect();
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
        let mut add = |rule, severity, message: String| {
            findings.push(Finding {
                rule,
                severity,
                location: location.clone(),
                message,
            })
        };
        permissions::rules(&statement, &mut add);
        principals::rules(&statement, &mut add);
        if statement.is_github_trust() {
            trust::github(&statement, &denies, &mut add);
        }
        trust::web_identity_action(&statement, &mut add);
    }
    for (sid, at) in sids.into_iter().filter(|(_, at)| at.len() > 1) {
        findings.push(Finding {
            rule: "duplicate-sid",
            severity: Severity::Medium,
            location: "document".into(),
            message: format!(
                "Sid `{sid}` stands in statements {}: IAM refuses a policy whose Sids are not unique; rename all but one",
                list_of(at.iter().map(usize::to_string))
            ),
        });
    }
    findings.extend(placeholders.findings());
    findings.sort_by_key(|f| f.severity);
    Ok(findings)
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
