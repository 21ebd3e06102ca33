//! IAM documents for the people who set ecr-push up: `policy generate` writes the
//! minimal ones (three personas, the GitHub OIDC trust, the cross-account pieces),
//! `policy check` evaluates a trust policy against a job's token claims the way STS
//! would, and `policy lint` finds the mistakes people copy from tutorials.
//!
//! Documents are `serde_json::Value`s: IAM's grammar is loose (a string or a list, one
//! statement or many), and the tools here must read whatever users wrote.

pub mod evaluate;
pub mod generate;
pub mod lint;
pub mod render;

use serde_json::Value;

/// The issuer of GitHub Actions OIDC tokens, and the prefix of their condition keys.
pub const GITHUB_OIDC_HOST: &str = "token.actions.githubusercontent.com";

/// The claim a condition key names, lowercase, when the key is one of GitHub's:
/// `token.actions.githubusercontent.com:sub`, or with an enterprise's own issuer
/// (GitHub Enterprise Cloud) `token.actions.githubusercontent.com/SLUG:sub`. IAM folds
/// the case of key names.
pub fn github_claim(key: &str) -> Option<String> {
    let key = key.to_ascii_lowercase();
    let rest = key.strip_prefix(GITHUB_OIDC_HOST)?;
    let claim = match rest.strip_prefix('/') {
        Some(slug_and_claim) => slug_and_claim.split_once(':')?.1,
        None => rest.strip_prefix(':')?,
    };
    (!claim.is_empty()).then(|| claim.to_owned())
}

/// What the ECR API destination calls, and nothing else.
pub const PUSH_ACTIONS: [&str; 5] = [
    "ecr:BatchCheckLayerAvailability",
    "ecr:InitiateLayerUpload",
    "ecr:UploadLayerPart",
    "ecr:CompleteLayerUpload",
    "ecr:PutImage",
];

/// A field that IAM allows as one string or a list of strings, as a list.
pub fn strings(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// The statements of a policy, whether `Statement` is one object or a list.
pub fn statements(policy: &Value) -> Vec<&Value> {
    match policy.get("Statement") {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(one @ Value::Object(_)) => vec![one],
        _ => Vec::new(),
    }
}

/// IAM's wildcard match (`*` any run, `?` one character), as for actions and
/// StringLike. `fold` compares case-insensitively, as IAM does for action names.
pub fn wildcard_match(pattern: &str, text: &str, fold: bool) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = if fold {
        (
            pattern.to_lowercase().chars().collect(),
            text.to_lowercase().chars().collect(),
        )
    } else {
        (pattern.chars().collect(), text.chars().collect())
    };
    // Iterative matching with one backtrack point: linear in practice, no recursion.
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_follow_iam() {
        assert!(wildcard_match("ecr:*", "ecr:PutImage", false));
        assert!(wildcard_match("ECR:put*", "ecr:PutImage", true));
        assert!(!wildcard_match("ECR:put*", "ecr:PutImage", false));
        assert!(wildcard_match(
            "repo:org/*:ref:refs/heads/main",
            "repo:org/app:ref:refs/heads/main",
            false
        ));
        assert!(wildcard_match("v?.*", "v1.2", false));
        assert!(!wildcard_match("v?.*", "v10.2", false));
        assert!(wildcard_match("*", "", false));
        assert!(!wildcard_match("a", "", false));
    }

    #[test]
    fn one_or_many_read_the_same() {
        let one = serde_json::json!({"Statement": {"Action": "a"}});
        let many = serde_json::json!({"Statement": [{"Action": ["a", "b"]}]});
        assert_eq!(statements(&one).len(), 1);
        assert_eq!(strings(statements(&one)[0].get("Action")), ["a"]);
        assert_eq!(strings(statements(&many)[0].get("Action")), ["a", "b"]);
    }
}
