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

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::Value;

use crate::inputs::PolicyCommand;
use lint::Severity;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Input(#[from] crate::inputs::Error),
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not valid JSON: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{0}")]
    Claims(String),
    #[error("{path}: {source}")]
    NotAPolicy {
        path: PathBuf,
        source: lint::NotAPolicy,
    },
    #[error("out-dir: {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Runs `policy generate|check|lint`; the exit code says allowed/clean (0) or not (1).
pub fn run(command: PolicyCommand) -> Result<ExitCode, Error> {
    match command {
        PolicyCommand::Generate(args) => {
            let format = args.format;
            let out_dir = args.out_dir.clone();
            let request = args.validate()?;
            if request.github_ids.is_none() {
                eprintln!(
                    "note: the trust allows only classic subjects (repo:{repo}:…); a repository created, renamed or transferred on github.com since 2026-07-15, or opted in, has immutable ones (repo:OWNER@OWNER_ID/REPO@REPO_ID:…): add --github-owner-id and --github-repo-id (gh api repos/{repo} --jq '.owner.id, .id', or GITHUB_REPOSITORY_OWNER_ID and GITHUB_REPOSITORY_ID in any workflow run)",
                    repo = request.github_repo
                );
            }
            let documents = generate::generate(&request);
            if let Some(dir) = out_dir {
                write_documents(&dir, &documents)?;
            }
            print!("{}", render::render(format, &request, &documents));
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Check(args) => {
            let trust = read_json(&args.trust)?;
            let claims = match (&args.claims, &args.token) {
                (Some(path), _) => read_json(path)?.as_object().cloned().ok_or_else(|| {
                    Error::Claims(format!("claims: {} is not a JSON object", path.display()))
                })?,
                (None, Some(token)) => crate::auth::jwt_claims(token).ok_or_else(|| {
                    Error::Claims("token: not a JWT whose middle part is base64url JSON".into())
                })?,
                (None, None) => {
                    return Err(Error::Claims("give --claims FILE or --token JWT".into()));
                }
            };
            let sub = claims
                .get("sub")
                .and_then(Value::as_str)
                .unwrap_or("(no sub claim)");
            match evaluate::check_trust(&trust, &claims) {
                evaluate::Verdict::Allowed {
                    statement,
                    requires,
                } if requires.is_empty() => {
                    println!("allowed: {statement} lets a token with sub `{sub}` assume the role");
                    Ok(ExitCode::SUCCESS)
                }
                evaluate::Verdict::Allowed {
                    statement,
                    requires,
                } => {
                    println!(
                        "allowed if the request meets what the token cannot tell: {statement} lets a token with sub `{sub}` assume the role when"
                    );
                    for requirement in requires {
                        println!("  - {requirement}");
                    }
                    Ok(ExitCode::SUCCESS)
                }
                evaluate::Verdict::Denied { reasons } => {
                    println!("denied: no statement lets a token with sub `{sub}` assume the role");
                    for reason in reasons {
                        println!("  - {reason}");
                    }
                    if let Some(hint) = evaluate::immutable_subject_hint(&trust, &claims) {
                        println!("  {hint}");
                    }
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        PolicyCommand::Lint(args) => {
            // Every file is read before anything is said: a file that is not a policy
            // is one error line and nothing else.
            let mut documents = Vec::new();
            for path in &args.files {
                let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
                    path: path.clone(),
                    source,
                })?;
                let findings = lint::lint(&text).map_err(|source| Error::NotAPolicy {
                    path: path.clone(),
                    source,
                })?;
                documents.push((path, findings));
            }
            let mut worst = None;
            let mut total = 0;
            for (path, findings) in documents {
                if findings.is_empty() {
                    println!("{}: no findings", path.display());
                }
                for f in &findings {
                    println!(
                        "{}: {}[{}]: {}: {}",
                        path.display(),
                        f.severity,
                        f.rule,
                        f.location,
                        f.message
                    );
                    worst = Some(worst.map_or(f.severity, |w: Severity| w.min(f.severity)));
                }
                total += findings.len();
            }
            println!(
                "{total} finding{} in {} document{}",
                if total == 1 { "" } else { "s" },
                args.files.len(),
                if args.files.len() == 1 { "" } else { "s" }
            );
            Ok(match worst {
                Some(severity) if severity <= args.fail_on => ExitCode::FAILURE,
                _ => ExitCode::SUCCESS,
            })
        }
    }
}

fn read_json(path: &Path) -> Result<Value, Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| Error::Json {
        path: path.to_owned(),
        source,
    })
}

fn write_documents(dir: &Path, documents: &[generate::Document]) -> Result<(), Error> {
    let write_err = |path: &Path| {
        let path = path.to_owned();
        move |source| Error::Write { path, source }
    };
    std::fs::create_dir_all(dir).map_err(write_err(dir))?;
    for d in documents {
        let path = dir.join(d.name);
        std::fs::write(&path, render::pretty(&d.body) + "\n").map_err(write_err(&path))?;
    }
    Ok(())
}

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
