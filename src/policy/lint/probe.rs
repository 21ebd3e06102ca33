//! Made-up GitHub jobs, and what a trust says to them. `lint` judges a GitHub OIDC
//! trust by asking the evaluator of `policy check` whether such jobs get in. Each
//! `sub` pattern is read for what it means (Intent: the owner and repository as
//! written, their ids, a context it accepts); a job is then made of another
//! repository, another owner, a look-alike name or other ids. The claims that say
//! which repository a job is of are the made-up job's own; every other claim the
//! trust names is set to what the trust accepts, as an attacker's own job would be.

use serde_json::{Map, Value, json};

use super::statement::Statement;
use crate::policy::{GITHUB_OIDC_HOST, evaluate};
use crate::sub_claim::SubClaim;

/// A trust statement and the document's Denies for the same action, asked whether
/// made-up jobs get in.
pub(super) struct Probe<'a> {
    trust: &'a Value,
    denies: &'a [&'a Value],
    /// The claims a job's author chooses (all but IDENTITY_CLAIMS), each set to the
    /// first value the trust accepts for it, as an attacker's own job would set them.
    chosen: Map<String, Value>,
}

impl<'a> Probe<'a> {
    pub(super) fn new(statement: &Statement<'a>, denies: &'a [&'a Value]) -> Self {
        let mut chosen = Map::new();
        for (claim, values) in statement.github_accepts() {
            if !IDENTITY_CLAIMS.contains(&claim.as_str())
                && let Some(value) = values.first()
            {
                chosen
                    .entry(claim)
                    .or_insert_with(|| Value::String(fill(value)));
            }
        }
        Self {
            trust: statement.raw,
            denies,
            chosen,
        }
    }

    /// Whether a job of `owner/repo` with these ids, running in `context`, gets in with
    /// either form of its `sub`.
    pub(super) fn admits(
        &self,
        owner: &str,
        owner_id: &str,
        repo: &str,
        repo_id: &str,
        context: &str,
    ) -> bool {
        self.admits_in(&[false, true], owner, owner_id, repo, repo_id, context)
    }

    /// Whether such a job gets in with the immutable form of its `sub`.
    pub(super) fn admits_immutable(
        &self,
        owner: &str,
        owner_id: &str,
        repo: &str,
        repo_id: &str,
        context: &str,
    ) -> bool {
        self.admits_in(&[true], owner, owner_id, repo, repo_id, context)
    }

    fn admits_in(
        &self,
        forms: &[bool],
        owner: &str,
        owner_id: &str,
        repo: &str,
        repo_id: &str,
        context: &str,
    ) -> bool {
        forms.iter().any(|&immutable| {
            let claims = Job {
                owner,
                owner_id,
                repo,
                repo_id,
                context,
                immutable,
            }
            .claims(&self.chosen);
            evaluate::admits(self.trust, &claims)
                && !self
                    .denies
                    .iter()
                    .any(|deny| evaluate::admits(deny, &claims))
        })
    }
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
pub(super) fn fill(pattern: &str) -> String {
    pattern.replace('*', "ecrpushprobe").replace('?', "q")
}

/// What one `sub` pattern means: the names as written up to the first wildcard, the
/// ids, a context it accepts, and the pattern as written for messages.
pub(super) struct Intent<'a> {
    pub(super) pattern: Option<&'a str>,
    pub(super) owner: Option<&'a str>,
    pub(super) repo: Option<&'a str>,
    pub(super) owner_id: &'a str,
    pub(super) repo_id: &'a str,
    pub(super) context: String,
    /// The names (not the ids) hold a wildcard.
    pub(super) owner_wild: bool,
    pub(super) repo_wild: bool,
}

impl<'a> Intent<'a> {
    pub(super) fn of(pattern: Option<&'a str>, pinned: &Pinned<'a>) -> Self {
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

    /// The owner and repository a job of the pattern's own repository is made up with:
    /// as meant, or made-up names where the pattern leaves them open.
    pub(super) fn probe_names(&self) -> (&'a str, &'a str) {
        (
            self.owner.unwrap_or("ecr-push-probe-owner"),
            self.repo.unwrap_or("ecr-push-probe-repo"),
        )
    }
}

/// What a trust pins through claims other than `sub`.
pub(super) struct Pinned<'a> {
    owner: Option<&'a str>,
    repo: Option<&'a str>,
    owner_id: Option<&'a str>,
    repo_id: Option<&'a str>,
}

impl<'a> Pinned<'a> {
    /// The first literal value the statement accepts for each of those claims.
    pub(super) fn of(statement: &'a Statement<'_>) -> Self {
        let literal = |v: &&str| !v.is_empty() && !v.contains(['*', '?', '$']);
        let from_key = |name: &str| statement.github_values(name).into_iter().find(literal);
        let repository = from_key("repository").and_then(|r| r.split_once('/'));
        Self {
            owner: repository.map(|p| p.0).or(from_key("repository_owner")),
            repo: repository.map(|p| p.1),
            owner_id: from_key("repository_owner_id"),
            repo_id: from_key("repository_id"),
        }
    }
}

/// The text up to the first of `stops`, if any.
fn name_before<'t>(text: &'t str, stops: &[char]) -> Option<&'t str> {
    let name = &text[..text.find(stops).unwrap_or(text.len())];
    (!name.is_empty()).then_some(name)
}
