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
mod statement;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value, json};

use super::{GITHUB_OIDC_HOST, evaluate, github_claim, statements, strings, wildcard_match};
use crate::sub_claim::SubClaim;
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
            github_trust(&statement, &denies, &mut add);
        }
        if !statement.federated.is_empty()
            && !statement.grants("sts:AssumeRoleWithWebIdentity")
            && statement.grants("sts:AssumeRole")
        {
            add(
                "web-identity-action",
                Severity::Medium,
                "a Federated principal with sts:AssumeRole: a web-identity token can only be used with sts:AssumeRoleWithWebIdentity, so nothing can assume the role through this statement; write that action".into(),
            );
        }
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

/// A GitHub job, made up to ask a trust whether it would get in.
struct Job<'a> {
    owner: &'a str,
    owner_id: &'a str,
    repo: &'a str,
    repo_id: &'a str,
    /// What follows the repository in `sub`: `ref:refs/heads/main`, `pull_request`, …
    context: &'a str,
    immutable: bool,
}

/// Claims that say which repository a job is of: the ones an attacker cannot choose.
/// Every other claim (audience, ref, environment, workflow, visibility, runner, actor)
/// is the attacker's own job's to set, so a probe takes whatever the trust accepts.
const IDENTITY_CLAIMS: [&str; 5] = [
    "sub",
    "repository",
    "repository_owner",
    "repository_id",
    "repository_owner_id",
];

impl Job<'_> {
    /// The claims GitHub puts in such a job's token (the OIDC reference's list), with
    /// `chosen` laid over the ones a job's author chooses.
    fn claims(&self, chosen: &Map<String, Value>) -> Map<String, Value> {
        let sub = crate::sub_claim::subject(
            self.owner,
            self.immutable.then_some((self.owner_id, self.repo_id)),
            self.repo,
            Some(self.context),
        );
        let (git_ref, ref_type, event, environment) = match self.context.split_once(':') {
            Some(("ref", r)) if r.starts_with("refs/tags/") => (r, "tag", "push", None),
            Some(("ref", r)) => (r, "branch", "push", None),
            Some(("environment", e)) => ("refs/heads/main", "branch", "push", Some(e)),
            _ if self.context == "pull_request" => {
                ("refs/pull/1/merge", "branch", "pull_request", None)
            }
            _ => ("refs/heads/main", "branch", "push", None),
        };
        let repository = format!("{}/{}", self.owner, self.repo);
        let workflow = format!("{repository}/.github/workflows/release.yml@{git_ref}");
        let mut claims = json!({
            "iss": format!("https://{GITHUB_OIDC_HOST}"),
            "aud": "sts.amazonaws.com",
            "sub": sub,
            "repository": repository,
            "repository_owner": self.owner,
            "repository_id": self.repo_id,
            "repository_owner_id": self.owner_id,
            "repository_visibility": "private",
            "ref": git_ref,
            "ref_type": ref_type,
            "event_name": event,
            "workflow_ref": workflow,
            "job_workflow_ref": workflow,
            "actor": "ecr-push-probe",
            "runner_environment": "github-hosted",
        });
        if let Some(environment) = environment {
            claims["environment"] = environment.into();
        }
        let mut claims = claims.as_object().cloned().unwrap_or_default();
        for (name, value) in chosen {
            claims.insert(name.clone(), value.clone());
        }
        claims
    }
}

/// A pattern's wildcards filled with text of an attacker's choosing.
fn fill(pattern: &str) -> String {
    pattern.replace('*', "ecrpushprobe").replace('?', "q")
}

/// What one `sub` pattern means: the names as written up to the first wildcard, the
/// ids, a context it accepts, and the pattern as written for messages.
struct Intent<'a> {
    pattern: Option<&'a str>,
    owner: Option<&'a str>,
    repo: Option<&'a str>,
    owner_id: &'a str,
    repo_id: &'a str,
    context: String,
    /// The names (not the ids) hold a wildcard.
    owner_wild: bool,
    repo_wild: bool,
}

impl<'a> Intent<'a> {
    fn of(pattern: Option<&'a str>, pinned: &Pinned<'a>) -> Self {
        let literal = |v: &str| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit());
        let rest = pattern.and_then(|p| p.strip_prefix("repo:"));
        let names = rest.map(|r| r.split_once(':').map_or(r, |(names, _)| names));
        let (owner_part, repo_part) = match names.and_then(|n| n.split_once('/')) {
            Some((o, r)) => (Some(o), Some(r)),
            None => (names, None),
        };
        let name_of =
            |part: Option<&'a str>| part.map(|p| p.split_once('@').map_or(p, |(name, _)| name));
        let id_of = |part: Option<&'a str>| part.and_then(|p| p.split_once('@')).map(|(_, id)| id);
        let wild = |part: Option<&str>| part.is_some_and(|p| p.contains(['*', '?']));
        // `repo:*name*:*` (no `/`): the longest name written is what it means.
        let loose = repo_part.is_none().then(|| {
            rest.unwrap_or_default()
                .split(['*', '?', ':', '@', '/'])
                .max_by_key(|n| n.len())
                .filter(|n| !n.is_empty())
        });
        let context = pattern
            .and_then(SubClaim::parse)
            .and_then(|s| s.context)
            .filter(|c| !c.starts_with('*'))
            .map(fill)
            .unwrap_or_else(|| "ref:refs/heads/main".into());
        Self {
            pattern,
            owner: name_of(owner_part)
                .and_then(|o| name_before(o, &['*', '?']))
                .filter(|_| repo_part.is_some())
                .or(pinned.owner),
            repo: name_of(repo_part)
                .and_then(|r| name_before(r, &['*', '?']))
                .or(loose.flatten())
                .or(pinned.repo),
            owner_id: id_of(owner_part)
                .filter(|i| literal(i))
                .or(pinned.owner_id)
                .unwrap_or("424242"),
            repo_id: id_of(repo_part)
                .filter(|i| literal(i))
                .or(pinned.repo_id)
                .unwrap_or("434343"),
            context,
            owner_wild: wild(name_of(owner_part)),
            repo_wild: wild(name_of(repo_part)),
        }
    }
}

/// What a trust pins through claims other than `sub`.
#[derive(Default)]
struct Pinned<'a> {
    owner: Option<&'a str>,
    repo: Option<&'a str>,
    owner_id: Option<&'a str>,
    repo_id: Option<&'a str>,
}

/// The rules for a statement that lets GitHub Actions tokens in. `denies` are the
/// document's Deny statements for the same action: a job one of them stops is not in.
fn github_trust(statement: &Statement<'_>, denies: &[&Value], add: &mut AddFinding<'_>) {
    let key = |name: &str| format!("{GITHUB_OIDC_HOST}:{name}");
    // What the trust accepts: positive operators only (a negated one names what it
    // keeps out, not what it means).
    let positive = |operator: &str| !operator.contains("Not");
    let values_of = |name: &str| -> Vec<&str> {
        statement
            .conditions
            .iter()
            .filter(|(op, k, _)| positive(op) && github_claim(k).as_deref() == Some(name))
            .flat_map(|(_, _, values)| values.iter().map(String::as_str))
            .collect()
    };
    let literal = |v: &&str| !v.is_empty() && !v.contains(['*', '?', '$']);
    let from_key = |name: &str| values_of(name).into_iter().find(literal);
    let repository = from_key("repository").and_then(|r| r.split_once('/'));
    let pinned = Pinned {
        owner: repository.map(|p| p.0).or(from_key("repository_owner")),
        repo: repository.map(|p| p.1),
        owner_id: from_key("repository_owner_id"),
        repo_id: from_key("repository_id"),
    };
    // The attacker's own job sets every other claim the trust names to what it accepts.
    let mut chosen = Map::new();
    for (operator, k, values) in &statement.conditions {
        if let Some(claim) = github_claim(k).filter(|c| !IDENTITY_CLAIMS.contains(&c.as_str()))
            && positive(operator)
            && let Some(value) = values.first()
        {
            chosen
                .entry(claim)
                .or_insert_with(|| Value::String(fill(value)));
        }
    }
    let subs = values_of("sub");
    let admits_in =
        |forms: &[bool], owner: &str, owner_id: &str, repo: &str, repo_id: &str, context: &str| {
            forms.iter().any(|&immutable| {
                let claims = Job {
                    owner,
                    owner_id,
                    repo,
                    repo_id,
                    context,
                    immutable,
                }
                .claims(&chosen);
                evaluate::admits(statement.raw, &claims)
                    && !denies.iter().any(|deny| evaluate::admits(deny, &claims))
            })
        };
    let admits = |owner: &str, owner_id: &str, repo: &str, repo_id: &str, context: &str| {
        admits_in(&[false, true], owner, owner_id, repo, repo_id, context)
    };

    let intents: Vec<Intent<'_>> = if subs.is_empty() {
        vec![Intent::of(None, &pinned)]
    } else {
        subs.iter().map(|p| Intent::of(Some(p), &pinned)).collect()
    };
    // Each rule once per statement, naming the first pattern that showed it.
    let mut raised: BTreeMap<&'static str, (Severity, String)> = BTreeMap::new();
    fn once(
        raised: &mut BTreeMap<&'static str, (Severity, String)>,
        rule: &'static str,
        severity: Severity,
        message: String,
    ) {
        raised.entry(rule).or_insert((severity, message));
    }
    let mut anyone_at_all = false;
    for intent in &intents {
        let shown = intent
            .pattern
            .map(|p| format!("`{p}`"))
            .unwrap_or_else(|| "the trust".into());
        let (on, rn) = (
            intent.owner.unwrap_or("OWNER"),
            intent.repo.unwrap_or("REPO"),
        );
        let context = intent
            .pattern
            .and_then(SubClaim::parse)
            .and_then(|s| s.context)
            .unwrap_or("ref:refs/heads/main");
        let fix = format!(
            "allow exactly `repo:{on}/{rn}:{context}` and `repo:{on}@OWNER_ID/{rn}@REPO_ID:{context}` (ecr-push policy generate writes them)"
        );
        let ctx = intent.context.as_str();
        let (o, r) = (
            intent.owner.unwrap_or("ecr-push-probe-owner"),
            intent.repo.unwrap_or("ecr-push-probe-repo"),
        );
        let (oid, rid) = (intent.owner_id, intent.repo_id);
        // The pattern with its wildcards filled by an attacker, read back as a job.
        let filled = intent.pattern.map(fill);
        let filled = filled.as_deref().and_then(SubClaim::parse);
        // The attacker's repository is another one (its own id), and under an owner the
        // pattern leaves open, another owner (its own id too); a pinned owner id stands
        // only when the owner's name is written whole.
        let filled_admitted = filled.as_ref().is_some_and(|f| {
            let owner_id = f
                .owner_id
                .filter(|i| {
                    !intent.owner_wild && !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit())
                })
                .unwrap_or("91");
            let context = f.context.unwrap_or("ref:refs/heads/main");
            admits(f.owner, owner_id, f.repo, "92", context)
        });
        let owner_open = intent.owner.is_none() || (intent.owner_wild && intent.owner.is_none());
        let anyone = admits(
            "ecr-push-probe-other",
            "91",
            "ecr-push-probe-elsewhere",
            "92",
            ctx,
        ) || intent
            .repo
            .is_some_and(|r| admits("ecr-push-probe-other", "91", r, "92", ctx))
            || (filled_admitted && intent.owner_wild && owner_open);
        anyone_at_all |= anyone;
        if intent.pattern.is_none() {
            once(
                &mut raised,
                "github-sub-missing",
                if anyone {
                    Severity::Critical
                } else {
                    Severity::Medium
                },
                format!(
                    "no `{}` condition: {}; IAM refuses to create or update such a trust since June 2025; {fix}",
                    key("sub"),
                    if anyone {
                        "any GitHub Actions job of any repository on earth can assume this role"
                    } else {
                        "the repository is pinned by another claim, but"
                    }
                ),
            );
        } else if anyone {
            once(
                &mut raised,
                "github-any-repository",
                Severity::Critical,
                format!(
                    "{shown} lets a job of any GitHub repository on earth assume this role; {fix}"
                ),
            );
        }
        let org_wide = !anyone
            && intent.owner.is_some()
            && (admits(o, oid, "ecr-push-probe-elsewhere", "92", ctx)
                || (filled_admitted && intent.repo_wild && intent.repo.is_none()));
        if org_wide {
            once(
                &mut raised,
                "github-org-wide",
                Severity::High,
                format!(
                    "{shown} lets every repository of `{on}`, today's and tomorrow's, assume this role; {fix}"
                ),
            );
        }
        // A name followed by a wildcard: owners anyone can register, or repositories of
        // the owner that only start with the name.
        let lookalike_owner = intent.owner.is_some()
            && (admits(&format!("{o}-evil"), "91", r, "92", ctx)
                || (filled_admitted && intent.owner_wild));
        let lookalike_repo = !org_wide
            && intent.repo.is_some()
            && (admits(o, oid, &format!("{r}-fork"), "92", ctx)
                || admits(
                    "ecr-push-probe-other",
                    "91",
                    &format!("{r}-fork"),
                    "92",
                    ctx,
                )
                || (filled_admitted && intent.repo_wild && !intent.owner_wild));
        if lookalike_owner {
            once(
                &mut raised,
                "github-lookalike",
                Severity::High,
                format!(
                    "{shown} also lets in owners whose names only look like `{on}` (such as `{}`), which anyone can register; write the owner's whole name and end it with `/` or `@` before any `*`",
                    intent
                        .owner
                        .map_or_else(|| "…".into(), |o| format!("{o}-evil"))
                ),
            );
        } else if lookalike_repo {
            once(
                &mut raised,
                "github-lookalike",
                Severity::High,
                format!(
                    "{shown} also lets in repositories whose names only start with `{rn}` (such as `{rn}-fork`); write the repository's whole name and end it with `:` or `@` before any `*`"
                ),
            );
        }
        if anyone || org_wide || intent.owner.is_none() {
            continue;
        }
        if intent.pattern.is_some_and(|p| p.contains('@'))
            && intent.repo.is_some()
            && admits_in(&[true], o, "91", r, "92", ctx)
        {
            once(
                &mut raised,
                "github-id-wildcard",
                Severity::High,
                format!(
                    "{shown} leaves the owner or repository id open: whoever registers `{on}` or `{rn}` after it is renamed or deleted gets in again, which is what the ids prevent; write the ids (`gh api repos/{on}/{rn} --jq '.owner.id, .id'`)"
                ),
            );
        }
        let branch = admits(o, oid, r, rid, "ref:refs/heads/ecr-push-probe");
        let environment = admits(o, oid, r, rid, "environment:ecr-push-probe");
        let pull_request = admits(o, oid, r, rid, "pull_request");
        if branch && environment && pull_request {
            once(
                &mut raised,
                "github-any-ref",
                Severity::Medium,
                format!(
                    "{shown} lets every branch, tag, environment and pull request of `{on}/{rn}` assume this role, code nobody has reviewed yet among them; name the branch, tag or environment that publishes"
                ),
            );
        } else if pull_request {
            once(
                &mut raised,
                "github-pull-request",
                Severity::Medium,
                format!(
                    "pull-request jobs of `{on}/{rn}` can assume this role, with code nobody has reviewed yet; trust the branch, tag or environment that publishes"
                ),
            );
        }
    }
    if raised.contains_key("github-any-ref") {
        raised.remove("github-pull-request");
    }
    if !subs.is_empty() && !anyone_at_all && !subs.iter().any(|v| v.contains('@')) {
        let first = intents.first();
        let (on, rn) = (
            first.and_then(|i| i.owner).unwrap_or("OWNER"),
            first.and_then(|i| i.repo).unwrap_or("REPO"),
        );
        once(
            &mut raised,
            "github-classic-only",
            Severity::Low,
            format!(
                "every `sub` pattern ({}) has the classic form `repo:OWNER/REPO:…`; a repository created, renamed or transferred on github.com since 2026-07-15 (or opted in) has immutable subjects `repo:{on}@OWNER_ID/{rn}@REPO_ID:…` and is refused; add that form too (ids: `gh api repos/{on}/{rn} --jq '.owner.id, .id'`)",
                subs.iter()
                    .map(|v| format!("`{v}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }
    if values_of("aud").is_empty() {
        once(
            &mut raised,
            "github-aud-missing",
            Severity::Medium,
            format!(
                "no `{}` condition: a token this repository's jobs minted for another audience (another cloud, a third-party service) is accepted too; require StringEquals {} = sts.amazonaws.com",
                key("aud"),
                key("aud")
            ),
        );
    }
    for (operator, k, _) in &statement.conditions {
        if operator.starts_with("ForAllValues:")
            && matches!(github_claim(k).as_deref(), Some("sub" | "aud"))
        {
            once(
                &mut raised,
                "github-for-all-values",
                Severity::Medium,
                format!(
                    "{operator} on {k}, a single-valued claim: ForAllValues also holds for a token without the claim at all; use {} without the ForAllValues: prefix",
                    &operator["ForAllValues:".len()..]
                ),
            );
        }
    }
    for (operator, k, values) in &statement.conditions {
        let base = operator.rsplit(':').next().unwrap_or(operator);
        if base.starts_with("StringEquals")
            && github_claim(k).is_some()
            && let Some(v) = values.iter().find(|v| v.contains(['*', '?']))
        {
            once(
                &mut raised,
                "literal-wildcard",
                Severity::Medium,
                format!(
                    "{operator} takes `{v}` on {k} literally, so no token matches it; use StringLike for a wildcard"
                ),
            );
        }
    }
    for (rule, (severity, message)) in raised {
        add(rule, severity, message);
    }
}

/// The text up to the first of `stops`, if any.
fn name_before<'t>(text: &'t str, stops: &[char]) -> Option<&'t str> {
    let name = &text[..text.find(stops).unwrap_or(text.len())];
    (!name.is_empty()).then_some(name)
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
