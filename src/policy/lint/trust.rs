//! The rules for a statement that lets GitHub Actions tokens in (`github-…`,
//! `literal-wildcard`, `web-identity-action`). Each `sub` pattern, or the trust when it
//! has none, is judged by the made-up jobs of probe.rs that it lets in: any
//! repository's, every repository of the owner, look-alike owners and repositories,
//! other ids, other refs, pull requests. Each rule is raised once per statement,
//! naming the first pattern that showed it; the rules on the operators read the
//! conditions as written.

use std::collections::BTreeMap;

use serde_json::Value;

use super::probe::{Intent, Pinned, Probe, fill};
use super::statement::Statement;
use super::{AddFinding, Severity};
use crate::policy::{GITHUB_OIDC_HOST, github_claim};
use crate::sub_claim::SubClaim;

/// `web-identity-action`: a Federated principal that can only ever be used with
/// sts:AssumeRoleWithWebIdentity, given sts:AssumeRole instead.
pub(super) fn web_identity_action(statement: &Statement<'_>, add: &mut AddFinding<'_>) {
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

/// The rules for a statement that lets GitHub Actions tokens in. `denies` are the
/// document's Deny statements for the same action: a job one of them stops is not in.
pub(super) fn github(statement: &Statement<'_>, denies: &[&Value], add: &mut AddFinding<'_>) {
    let probe = Probe::new(statement, denies);
    let pinned = Pinned::of(statement);
    let subs = statement.github_values("sub");
    let intents: Vec<Intent<'_>> = if subs.is_empty() {
        vec![Intent::of(None, &pinned)]
    } else {
        subs.iter().map(|p| Intent::of(Some(p), &pinned)).collect()
    };
    let mut raised = Raised::default();
    let mut anyone_at_all = false;
    for intent in &intents {
        anyone_at_all |= judge(intent, &probe, &mut raised);
    }
    if raised.0.contains_key("github-any-ref") {
        raised.0.remove("github-pull-request");
    }
    if !subs.is_empty() && !anyone_at_all && !subs.iter().any(|v| v.contains('@')) {
        classic_only(&subs, &intents, &mut raised);
    }
    if statement.github_values("aud").is_empty() {
        aud_missing(&mut raised);
    }
    for_all_values(statement, &mut raised);
    literal_wildcard(statement, &mut raised);
    raised.report(add);
}

/// The rules of one statement, each once, with the message of the first pattern that
/// showed it; reported in the order of the rules' names.
#[derive(Default)]
struct Raised(BTreeMap<&'static str, (Severity, String)>);

impl Raised {
    fn once(&mut self, rule: &'static str, severity: Severity, message: String) {
        self.0.entry(rule).or_insert((severity, message));
    }

    fn report(self, add: &mut AddFinding<'_>) {
        for (rule, (severity, message)) in self.0 {
            add(rule, severity, message);
        }
    }
}

/// A condition key of GitHub's issuer, as a message names it.
fn key(claim: &str) -> String {
    format!("{GITHUB_OIDC_HOST}:{claim}")
}

/// Raises the rules one `sub` pattern (or, with none, the trust) breaks; whether it
/// lets in a job of any repository.
fn judge(intent: &Intent<'_>, probe: &Probe<'_>, raised: &mut Raised) -> bool {
    let reach = Reach::of(intent, probe);
    let words = Words::of(intent);
    repository_rules(intent, &reach, &words, raised);
    if !(reach.anyone || reach.org_wide || intent.owner.is_none()) {
        job_rules(intent, probe, &words, raised);
    }
    reach.anyone
}

/// How the messages on one pattern name it, its owner and repository, and the fix.
struct Words<'a> {
    /// The pattern as written, or `the trust`.
    shown: String,
    /// The owner's name as meant, or `OWNER`.
    owner: &'a str,
    /// The repository's name as meant, or `REPO`.
    repo: &'a str,
    /// Both `sub` forms of exactly the repository, with the pattern's own context.
    fix: String,
}

impl<'a> Words<'a> {
    fn of(intent: &Intent<'a>) -> Self {
        let (owner, repo) = (
            intent.owner.unwrap_or("OWNER"),
            intent.repo.unwrap_or("REPO"),
        );
        let context = intent
            .pattern
            .and_then(SubClaim::parse)
            .and_then(|s| s.context)
            .unwrap_or("ref:refs/heads/main");
        Self {
            shown: intent
                .pattern
                .map(|p| format!("`{p}`"))
                .unwrap_or_else(|| "the trust".into()),
            owner,
            repo,
            fix: format!(
                "allow exactly `repo:{owner}/{repo}:{context}` and `repo:{owner}@OWNER_ID/{repo}@REPO_ID:{context}` (ecr-push policy generate writes them)"
            ),
        }
    }
}

/// Whom beyond its own repository's jobs one pattern lets in, as the made-up jobs show.
struct Reach {
    /// A job of any repository of any owner.
    anyone: bool,
    /// Every repository of the owner.
    org_wide: bool,
    /// Owners whose names only start with the owner's.
    lookalike_owner: bool,
    /// Repositories whose names only start with the repository's.
    lookalike_repo: bool,
}

impl Reach {
    fn of(intent: &Intent<'_>, probe: &Probe<'_>) -> Self {
        let ctx = intent.context.as_str();
        let (o, r) = intent.probe_names();
        let oid = intent.owner_id;
        let filled = filled_admitted(intent, probe);
        let anyone = probe.admits(
            "ecr-push-probe-other",
            "91",
            "ecr-push-probe-elsewhere",
            "92",
            ctx,
        ) || intent
            .repo
            .is_some_and(|r| probe.admits("ecr-push-probe-other", "91", r, "92", ctx))
            || (filled && intent.owner_wild && intent.owner.is_none());
        let org_wide = !anyone
            && intent.owner.is_some()
            && (probe.admits(o, oid, "ecr-push-probe-elsewhere", "92", ctx)
                || (filled && intent.repo_wild && intent.repo.is_none()));
        // A name followed by a wildcard: owners anyone can register, or repositories of
        // the owner that only start with the name.
        let lookalike_owner = intent.owner.is_some()
            && (probe.admits(&format!("{o}-evil"), "91", r, "92", ctx)
                || (filled && intent.owner_wild));
        let lookalike_repo = !org_wide
            && intent.repo.is_some()
            && (probe.admits(o, oid, &format!("{r}-fork"), "92", ctx)
                || probe.admits(
                    "ecr-push-probe-other",
                    "91",
                    &format!("{r}-fork"),
                    "92",
                    ctx,
                )
                || (filled && intent.repo_wild && !intent.owner_wild));
        Self {
            anyone,
            org_wide,
            lookalike_owner,
            lookalike_repo,
        }
    }
}

/// Whether the pattern, its wildcards filled by an attacker and read back as a job,
/// lets that job in. The attacker's repository is another one (its own id), and under
/// an owner the pattern leaves open, another owner (its own id too); a pinned owner id
/// stands only when the owner's name is written whole.
fn filled_admitted(intent: &Intent<'_>, probe: &Probe<'_>) -> bool {
    let filled = intent.pattern.map(fill);
    let filled = filled.as_deref().and_then(SubClaim::parse);
    filled.as_ref().is_some_and(|f| {
        let owner_id = f
            .owner_id
            .filter(|i| {
                !intent.owner_wild && !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit())
            })
            .unwrap_or("91");
        let context = f.context.unwrap_or("ref:refs/heads/main");
        probe.admits(f.owner, owner_id, f.repo, "92", context)
    })
}

/// `github-sub-missing`, `github-any-repository`, `github-org-wide`, `github-lookalike`:
/// the rules on whose repositories' jobs get in.
fn repository_rules(intent: &Intent<'_>, reach: &Reach, words: &Words<'_>, raised: &mut Raised) {
    let Words {
        shown,
        owner,
        repo,
        fix,
    } = words;
    if intent.pattern.is_none() {
        raised.once(
            "github-sub-missing",
            if reach.anyone {
                Severity::Critical
            } else {
                Severity::Medium
            },
            format!(
                "no `{}` condition: {}; IAM refuses to create or update such a trust since June 2025; {fix}",
                key("sub"),
                if reach.anyone {
                    "any GitHub Actions job of any repository on earth can assume this role"
                } else {
                    "the repository is pinned by another claim, but"
                }
            ),
        );
    } else if reach.anyone {
        raised.once(
            "github-any-repository",
            Severity::Critical,
            format!("{shown} lets a job of any GitHub repository on earth assume this role; {fix}"),
        );
    }
    if reach.org_wide {
        raised.once(
            "github-org-wide",
            Severity::High,
            format!(
                "{shown} lets every repository of `{owner}`, today's and tomorrow's, assume this role; {fix}"
            ),
        );
    }
    if reach.lookalike_owner {
        raised.once(
            "github-lookalike",
            Severity::High,
            format!(
                "{shown} also lets in owners whose names only look like `{owner}` (such as `{}`), which anyone can register; write the owner's whole name and end it with `/` or `@` before any `*`",
                intent
                    .owner
                    .map_or_else(|| "…".into(), |o| format!("{o}-evil"))
            ),
        );
    } else if reach.lookalike_repo {
        raised.once(
            "github-lookalike",
            Severity::High,
            format!(
                "{shown} also lets in repositories whose names only start with `{repo}` (such as `{repo}-fork`); write the repository's whole name and end it with `:` or `@` before any `*`"
            ),
        );
    }
}

/// `github-id-wildcard`, `github-any-ref`, `github-pull-request`: the rules on which
/// jobs of a pattern that names one owner, and no more, get in.
fn job_rules(intent: &Intent<'_>, probe: &Probe<'_>, words: &Words<'_>, raised: &mut Raised) {
    let Words {
        shown, owner, repo, ..
    } = words;
    let ctx = intent.context.as_str();
    let (o, r) = intent.probe_names();
    let (oid, rid) = (intent.owner_id, intent.repo_id);
    if intent.pattern.is_some_and(|p| p.contains('@'))
        && intent.repo.is_some()
        && probe.admits_immutable(o, "91", r, "92", ctx)
    {
        raised.once(
            "github-id-wildcard",
            Severity::High,
            format!(
                "{shown} leaves the owner or repository id open: whoever registers `{owner}` or `{repo}` after it is renamed or deleted gets in again, which is what the ids prevent; write the ids (`gh api repos/{owner}/{repo} --jq '.owner.id, .id'`)"
            ),
        );
    }
    let branch = probe.admits(o, oid, r, rid, "ref:refs/heads/ecr-push-probe");
    let environment = probe.admits(o, oid, r, rid, "environment:ecr-push-probe");
    let pull_request = probe.admits(o, oid, r, rid, "pull_request");
    if branch && environment && pull_request {
        raised.once(
            "github-any-ref",
            Severity::Medium,
            format!(
                "{shown} lets every branch, tag, environment and pull request of `{owner}/{repo}` assume this role, code nobody has reviewed yet among them; name the branch, tag or environment that publishes"
            ),
        );
    } else if pull_request {
        raised.once(
            "github-pull-request",
            Severity::Medium,
            format!(
                "pull-request jobs of `{owner}/{repo}` can assume this role, with code nobody has reviewed yet; trust the branch, tag or environment that publishes"
            ),
        );
    }
}

/// `github-classic-only`: every pattern in the classic form, which a repository with
/// immutable subjects no longer matches.
fn classic_only(subs: &[&str], intents: &[Intent<'_>], raised: &mut Raised) {
    let first = intents.first();
    let (on, rn) = (
        first.and_then(|i| i.owner).unwrap_or("OWNER"),
        first.and_then(|i| i.repo).unwrap_or("REPO"),
    );
    raised.once(
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

fn aud_missing(raised: &mut Raised) {
    raised.once(
        "github-aud-missing",
        Severity::Medium,
        format!(
            "no `{}` condition: a token this repository's jobs minted for another audience (another cloud, a third-party service) is accepted too; require StringEquals {} = sts.amazonaws.com",
            key("aud"),
            key("aud")
        ),
    );
}

/// `github-for-all-values`: ForAllValues on a single-valued claim, which a token without
/// the claim meets.
fn for_all_values(statement: &Statement<'_>, raised: &mut Raised) {
    for (operator, k, _) in &statement.conditions {
        if operator.starts_with("ForAllValues:")
            && matches!(github_claim(k).as_deref(), Some("sub" | "aud"))
        {
            raised.once(
                "github-for-all-values",
                Severity::Medium,
                format!(
                    "{operator} on {k}, a single-valued claim: ForAllValues also holds for a token without the claim at all; use {} without the ForAllValues: prefix",
                    &operator["ForAllValues:".len()..]
                ),
            );
        }
    }
}

/// `literal-wildcard`: a `*` or `?` under StringEquals, which matches only itself.
fn literal_wildcard(statement: &Statement<'_>, raised: &mut Raised) {
    for (operator, k, values) in &statement.conditions {
        let base = operator.rsplit(':').next().unwrap_or(operator);
        if base.starts_with("StringEquals")
            && github_claim(k).is_some()
            && let Some(v) = values.iter().find(|v| v.contains(['*', '?']))
        {
            raised.once(
                "literal-wildcard",
                Severity::Medium,
                format!(
                    "{operator} takes `{v}` on {k} literally, so no token matches it; use StringLike for a wildcard"
                ),
            );
        }
    }
}
