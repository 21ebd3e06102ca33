//! The `sub` claim of a GitHub Actions OIDC token, in both of its forms, and the
//! patterns trust policies match it with.
//!
//! Classic: `repo:OWNER/REPO:CONTEXT`. Immutable (github.com, default for repositories
//! created, renamed or transferred since 2026-07-15, and for older ones that opt in;
//! GitHub changelog 2026-04-23): `repo:OWNER@OWNER_ID/REPO@REPO_ID:CONTEXT`, the
//! numeric ids of the owner and the repository appended with `@`, which no GitHub name
//! can contain. CONTEXT is `ref:refs/heads/B`, `ref:refs/tags/T`, `environment:E` or
//! `pull_request`. GitHub Enterprise Server keeps the classic form.
//!
//! A pattern (`repo:org/*`) is split at the same separators; a `*` may then stand in any
//! part, or run across several.

/// A `sub` value split at its separators: `repo:` OWNER[@ID] `/` REPO[@ID] [`:` CONTEXT].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubClaim<'a> {
    pub owner: &'a str,
    pub owner_id: Option<&'a str>,
    pub repo: &'a str,
    pub repo_id: Option<&'a str>,
    /// Everything after the repository's `:`, `None` when there is no such `:`.
    pub context: Option<&'a str>,
}

impl<'a> SubClaim<'a> {
    /// `None` for what is not `repo:…/…` (a customised template, `*`).
    pub fn parse(sub: &'a str) -> Option<Self> {
        // Names and ids hold no `:`, so the first one ends them; a wildcard before it
        // may stand for more, but is read as written.
        let rest = sub.strip_prefix("repo:")?;
        let (names, context) = match rest.split_once(':') {
            Some((names, context)) => (names, Some(context)),
            None => (rest, None),
        };
        let (owner_part, repo_part) = names.split_once('/')?;
        let split_id = |part: &'a str| match part.split_once('@') {
            Some((name, id)) => (name, Some(id)),
            None => (part, None),
        };
        let (owner, owner_id) = split_id(owner_part);
        let (repo, repo_id) = split_id(repo_part);
        Some(Self {
            owner,
            owner_id,
            repo,
            repo_id,
            context,
        })
    }

    /// Both ids present: the immutable form.
    pub fn is_immutable(&self) -> bool {
        self.owner_id.is_some() && self.repo_id.is_some()
    }

    /// The same subject with these ids (the immutable form).
    pub fn with_ids(&self, owner_id: &str, repo_id: &str) -> String {
        subject(
            self.owner,
            Some((owner_id, repo_id)),
            self.repo,
            self.context,
        )
    }
}

/// `repo:OWNER/REPO:CONTEXT`, or with `ids` (owner's, repository's) the immutable form.
pub fn subject(
    owner: &str,
    ids: Option<(&str, &str)>,
    repo: &str,
    context: Option<&str>,
) -> String {
    let mut sub = match ids {
        Some((owner_id, repo_id)) => format!("repo:{owner}@{owner_id}/{repo}@{repo_id}"),
        None => format!("repo:{owner}/{repo}"),
    };
    if let Some(context) = context {
        sub.push(':');
        sub.push_str(context);
    }
    sub
}

/// A GitHub id as the claims carry it: digits only, no sign, no leading zero.
pub fn is_id(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 20
        && text.bytes().all(|b| b.is_ascii_digit())
        && !text.starts_with('0')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_split_at_their_separators() {
        let classic = SubClaim::parse("repo:octo-org/octo-repo:ref:refs/heads/main").unwrap();
        assert_eq!(
            (classic.owner, classic.repo, classic.context),
            ("octo-org", "octo-repo", Some("ref:refs/heads/main"))
        );
        assert!(!classic.is_immutable());
        assert_eq!(
            classic.with_ids("123", "456"),
            "repo:octo-org@123/octo-repo@456:ref:refs/heads/main"
        );
        let immutable =
            SubClaim::parse("repo:octo-org@123/octo-repo@456:environment:prod").unwrap();
        assert!(immutable.is_immutable());
        assert_eq!(
            (immutable.owner_id, immutable.repo_id),
            (Some("123"), Some("456"))
        );
        assert_eq!(immutable.context, Some("environment:prod"));
        let pattern = SubClaim::parse("repo:octo-org/*").unwrap();
        assert_eq!((pattern.repo, pattern.context), ("*", None));
        assert!(SubClaim::parse("*").is_none());
        assert!(SubClaim::parse("repository_owner_id:1:repository_id:2").is_none());
        assert!(is_id("123456") && !is_id("0123") && !is_id("12a") && !is_id(""));
    }
}
