//! `policy check`: does a role's trust policy let a job with these token claims in?
//!
//! The same decision STS makes for AssumeRoleWithWebIdentity, on the parts that depend
//! on the token: statements that allow the action for the GitHub OIDC provider, their
//! conditions over `token.actions.githubusercontent.com:*` keys, and explicit denies.
//! IAM's rules, as documented: all operators of a block and all keys of an operator
//! must hold, any value of a key may match; a key absent from the token fails a
//! condition, except negated operators and `…IfExists`, which pass; `ForAllValues`
//! passes on an absent key, `ForAnyValue` fails. String values are case-sensitive
//! except with `…IgnoreCase`; condition key names are not.
//!
//! Keys that are not claims of the token (`aws:CurrentTime`, `aws:SourceIp`,
//! `sts:RoleSessionName`, …) come from the request, which a token cannot tell: a
//! statement that depends on one is allowed *if* the request meets it, and the verdict
//! says what it requires rather than deny.

use serde_json::{Map, Value};

use super::{GITHUB_OIDC_HOST, github_claim, statements, strings, wildcard_match};
use crate::sub_claim::SubClaim;

const ACTION: &str = "sts:AssumeRoleWithWebIdentity";

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// `requires`: what the request (not the token) must also meet, in IAM's words.
    Allowed {
        statement: String,
        requires: Vec<String>,
    },
    Denied {
        reasons: Vec<String>,
    },
}

/// Why one condition of a statement failed, for people.
struct Failure(String);

pub fn check_trust(policy: &Value, claims: &Map<String, Value>) -> Verdict {
    let mut reasons = Vec::new();
    let mut allowed_by: Option<(String, Vec<String>)> = None;
    let mut deny_unless = Vec::new();
    for (index, statement) in statements(policy).into_iter().enumerate() {
        let name = match statement.get("Sid").and_then(Value::as_str) {
            Some(sid) => format!("statement {index} ({sid})"),
            None => format!("statement {index}"),
        };
        if !covers_action(statement) {
            reasons.push(format!("{name} does not allow {ACTION}"));
            continue;
        }
        if !names_github_provider(statement) {
            reasons.push(format!(
                "{name} does not name the federated principal oidc-provider/{GITHUB_OIDC_HOST}"
            ));
            continue;
        }
        let holds = match statement.get("Condition") {
            None => Ok(Vec::new()),
            Some(block) => condition_block(block, claims),
        };
        // IAM refuses any other spelling of the effect; `deny` is read as the Deny meant.
        let deny = statement
            .get("Effect")
            .and_then(Value::as_str)
            .is_some_and(|e| e.eq_ignore_ascii_case("Deny"));
        match (holds, deny) {
            (Ok(requires), true) if requires.is_empty() => {
                return Verdict::Denied {
                    reasons: vec![format!("{name} denies it explicitly")],
                };
            }
            (Ok(requires), true) => deny_unless.push(format!(
                "not ({}), which {name} denies",
                requires.join(" and ")
            )),
            (Ok(requires), false) => {
                // The first statement that needs nothing of the request wins outright.
                if allowed_by
                    .as_ref()
                    .is_none_or(|(_, r)| !r.is_empty() && requires.is_empty())
                {
                    allowed_by = Some((name, requires));
                }
            }
            (Err(Failure(why)), false) => reasons.push(format!("{name}: {why}")),
            (Err(_), true) => {}
        }
    }
    match allowed_by {
        Some((statement, mut requires)) => {
            requires.extend(deny_unless);
            Verdict::Allowed {
                statement,
                requires,
            }
        }
        None => {
            if reasons.is_empty() {
                reasons.push("the policy has no statements".into());
            }
            Verdict::Denied { reasons }
        }
    }
}

/// Whether a statement's conditions hold for these claims, whatever they require of
/// the request: how the linter asks "would this job get in?".
pub fn admits(statement: &Value, claims: &Map<String, Value>) -> bool {
    statement
        .get("Condition")
        .is_none_or(|block| condition_block(block, claims).is_ok())
}

/// For a denied token whose `sub` has the immutable form, when the trust would let the
/// same job in under its classic `sub`: says so, and the immutable pattern to add beside
/// each classic one that matched.
pub fn immutable_subject_hint(policy: &Value, claims: &Map<String, Value>) -> Option<String> {
    let sub = claims.get("sub").and_then(Value::as_str)?;
    let token = SubClaim::parse(sub).filter(SubClaim::is_immutable)?;
    let (owner_id, repo_id) = (token.owner_id?, token.repo_id?);
    let classic = crate::sub_claim::subject(token.owner, None, token.repo, token.context);
    let mut as_classic = claims.clone();
    as_classic.insert("sub".into(), Value::String(classic.clone()));
    if !matches!(check_trust(policy, &as_classic), Verdict::Allowed { .. }) {
        return None;
    }
    let mut add: Vec<String> = Vec::new();
    for statement in statements(policy) {
        let allow = statement
            .get("Effect")
            .and_then(Value::as_str)
            .is_some_and(|e| e.eq_ignore_ascii_case("Allow"));
        for (operator, keys) in statement
            .get("Condition")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter(|(operator, _)| allow && !operator.contains("Not"))
        {
            let like = operator.contains("Like");
            for (key, values) in keys.as_object().into_iter().flatten() {
                if github_claim(key).as_deref() != Some("sub") {
                    continue;
                }
                for pattern in strings(Some(values)) {
                    let hit = if like {
                        wildcard_match(&pattern, &classic, false)
                    } else {
                        pattern == classic
                    };
                    if let Some(immutable) = hit
                        .then(|| immutable_of(&pattern, token.owner, owner_id, repo_id))
                        .flatten()
                        .filter(|p| !add.contains(p))
                    {
                        add.push(immutable);
                    }
                }
            }
        }
    }
    if add.is_empty() {
        add.push(sub.to_owned());
    }
    Some(format!(
        "the token's sub `{sub}` is an immutable subject (owner id {owner_id}, repository id {repo_id} after `@`, as github.com writes it for repositories created, renamed or transferred since 2026-07-15, or opted in), and the trust matches only its classic form `{classic}`; add {}",
        add.iter()
            .map(|p| format!("`{p}`"))
            .collect::<Vec<_>>()
            .join(" and ")
    ))
}

/// The immutable pattern for a classic one that matched this owner: the ids written
/// where the names end, the pattern's own wildcards kept. A pattern whose owner is a
/// wildcard has no such twin (`None`: the token's own sub is offered instead).
fn immutable_of(pattern: &str, owner: &str, owner_id: &str, repo_id: &str) -> Option<String> {
    let parsed = SubClaim::parse(pattern)?;
    if parsed.owner != owner {
        return None;
    }
    let wild = |part: &str| part.contains(['*', '?']);
    Some(if wild(parsed.repo) {
        // `repo:org/*`, `repo:org/app*`: the repository id cannot follow a wildcard
        // that also stands for it; the owner's id still pins the owner.
        let mut p = format!("repo:{owner}@{owner_id}/{}", parsed.repo);
        if let Some(context) = parsed.context {
            p.push(':');
            p.push_str(context);
        }
        p
    } else {
        parsed.with_ids(owner_id, repo_id)
    })
}

fn covers_action(statement: &Value) -> bool {
    if let Some(not) = statement.get("NotAction") {
        return !strings(Some(not))
            .iter()
            .any(|a| wildcard_match(a, ACTION, true));
    }
    strings(statement.get("Action"))
        .iter()
        .any(|a| wildcard_match(a, ACTION, true))
}

/// An OIDC provider ARN for GitHub's issuer, or an enterprise's own under it
/// (`…:oidc-provider/token.actions.githubusercontent.com/SLUG`).
pub fn names_github(provider: &str) -> bool {
    provider
        .split_once(":oidc-provider/")
        .is_some_and(|(_, url)| {
            url == GITHUB_OIDC_HOST
                || url
                    .strip_prefix(GITHUB_OIDC_HOST)
                    .is_some_and(|slug| slug.starts_with('/') && !slug[1..].contains('/'))
        })
}

fn names_github_provider(statement: &Value) -> bool {
    match statement.get("Principal") {
        Some(Value::String(s)) => s == "*",
        Some(principal) => strings(principal.get("Federated"))
            .iter()
            .any(|p| p == "*" || names_github(p)),
        None => false,
    }
}

/// `Ok` with what the block requires of the request, or why a token claim fails it.
fn condition_block(block: &Value, claims: &Map<String, Value>) -> Result<Vec<String>, Failure> {
    let Some(operators) = block.as_object() else {
        return Err(Failure("its Condition is not an object".into()));
    };
    let mut requires = Vec::new();
    for (operator, keys) in operators {
        let Some(keys) = keys.as_object() else {
            return Err(Failure(format!("{operator} is not an object of keys")));
        };
        for (key, expected) in keys {
            let expected = strings(Some(expected));
            if !is_token_key(key) || !evaluated(operator) {
                requires.push(format!(
                    "{operator} {key} {}",
                    expected
                        .iter()
                        .map(|v| format!("`{v}`"))
                        .collect::<Vec<_>>()
                        .join(" or ")
                ));
                continue;
            }
            let actual = claim_values(key, claims);
            condition(operator, &expected, actual.as_deref()).map_err(|why| {
                let shown = match &actual {
                    None => "no such claim".to_owned(),
                    Some(values) => values
                        .iter()
                        .map(|v| format!("`{v}`"))
                        .collect::<Vec<_>>()
                        .join(", "),
                };
                Failure(format!(
                    "{operator} on {key} wants {} and the token has {shown}{why}",
                    expected
                        .iter()
                        .map(|v| format!("`{v}`"))
                        .collect::<Vec<_>>()
                        .join(" or ")
                ))
            })?;
        }
    }
    Ok(requires)
}

/// The operators this evaluator decides; a condition under another one (`Bool`,
/// `Numeric…`, `Date…` on a claim) is said as a requirement, not taken as failing or
/// holding.
fn evaluated(operator: &str) -> bool {
    let base = operator.rsplit(':').next().unwrap_or(operator);
    let base = base.strip_suffix("IfExists").unwrap_or(base);
    base == "Null" || base.starts_with("String")
}

/// Keys of the GitHub provider (`token.actions.githubusercontent.com:sub`, …) are the
/// token's claims; every other key is the request's.
fn is_token_key(key: &str) -> bool {
    github_claim(key).is_some()
}

/// The token's values for a condition key, `None` when the token does not carry it.
fn claim_values(key: &str, claims: &Map<String, Value>) -> Option<Vec<String>> {
    let claim = github_claim(key)?;
    let value = claims
        .iter()
        .find(|(name, _)| name.to_ascii_lowercase() == claim)?
        .1;
    match value {
        Value::Array(items) => Some(items.iter().map(scalar).collect()),
        other => Some(vec![scalar(other)]),
    }
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// One operator on one key. `Err` carries an extra word on why, may be empty.
fn condition(operator: &str, expected: &[String], actual: Option<&[String]>) -> Result<(), String> {
    let (set, base) = match operator.split_once(':') {
        Some((set, base)) => (Some(set), base),
        None => (None, operator),
    };
    let (base, if_exists) = match base.strip_suffix("IfExists") {
        Some(base) => (base, true),
        None => (base, false),
    };
    if base == "Null" {
        // `Null: true` holds when the claim is absent, `false` when it is there.
        let absent = actual.is_none_or(|v| v.is_empty());
        return if expected.iter().any(|e| (e == "true") == absent) {
            Ok(())
        } else {
            Err(String::new())
        };
    }
    let (negated, matches): (bool, fn(&str, &str) -> bool) = match base {
        "StringEquals" => (false, |p, v| p == v),
        "StringNotEquals" => (true, |p, v| p == v),
        "StringEqualsIgnoreCase" => (false, |p, v| p.to_lowercase() == v.to_lowercase()),
        "StringNotEqualsIgnoreCase" => (true, |p, v| p.to_lowercase() == v.to_lowercase()),
        "StringLike" => (false, |p, v| wildcard_match(p, v, false)),
        "StringNotLike" => (true, |p, v| wildcard_match(p, v, false)),
        other => {
            return Err(format!(
                " (ecr-push does not evaluate {other}; treated as failing)"
            ));
        }
    };
    let hit = |value: &String| expected.iter().any(|p| matches(p, value)) != negated;
    let Some(values) = actual.filter(|v| !v.is_empty()) else {
        let passes = match set {
            Some("ForAllValues") => true,
            Some(_) => if_exists,
            None => if_exists || negated,
        };
        return if passes { Ok(()) } else { Err(String::new()) };
    };
    let holds = match set {
        Some("ForAllValues") => values.iter().all(hit),
        Some("ForAnyValue") => values.iter().any(hit),
        Some(other) => return Err(format!(" (unknown set operator {other})")),
        // A negated operator holds when no value matches; a positive one when any does.
        None if negated => values.iter().all(hit),
        None => values.iter().any(hit),
    };
    if holds {
        Ok(())
    } else if expected
        .iter()
        .any(|e| values.iter().any(|v| e.eq_ignore_ascii_case(v)))
        && !base.ends_with("IgnoreCase")
    {
        Err(" (they differ only in case, and this comparison is case-sensitive)".into())
    } else {
        Err(String::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims() -> Map<String, Value> {
        json!({
            "sub": "repo:octo-org/octo-repo:ref:refs/heads/main",
            "aud": "sts.amazonaws.com",
            "repository": "octo-org/octo-repo",
            "ref": "refs/heads/main",
            "groups": ["a", "b"],
        })
        .as_object()
        .cloned()
        .unwrap()
    }

    fn trust(condition: Value) -> Value {
        json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"Federated": "arn:aws:iam::111111111111:oidc-provider/token.actions.githubusercontent.com"},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": condition,
            }]
        })
    }

    /// An org-wide trust, and a Deny for the same provider under `condition`.
    fn org_wide_with_deny(condition: Value) -> Value {
        let mut policy = trust(
            json!({"StringLike": {"token.actions.githubusercontent.com:sub": "repo:octo-org/*"}}),
        );
        policy["Statement"].as_array_mut().unwrap().push(json!({
            "Effect": "Deny",
            "Principal": {"Federated": "arn:aws:iam::111111111111:oidc-provider/token.actions.githubusercontent.com"},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": condition,
        }));
        policy
    }

    fn allowed(condition: Value) -> bool {
        matches!(
            check_trust(&trust(condition), &claims()),
            Verdict::Allowed { .. }
        )
    }

    #[test]
    fn iam_condition_semantics_table() {
        let sub = "token.actions.githubusercontent.com:sub";
        let aud = "token.actions.githubusercontent.com:aud";
        let env = "token.actions.githubusercontent.com:environment";
        let groups = "token.actions.githubusercontent.com:groups";
        let cases = [
            (
                json!({"StringEquals": {sub: "repo:octo-org/octo-repo:ref:refs/heads/main"}}),
                true,
            ),
            // Values are case-sensitive; key names are not.
            (
                json!({"StringEquals": {sub: "repo:Octo-Org/octo-repo:ref:refs/heads/main"}}),
                false,
            ),
            (
                json!({"StringEqualsIgnoreCase": {sub: "repo:Octo-Org/octo-repo:ref:refs/heads/main"}}),
                true,
            ),
            (
                json!({"StringEquals": {"Token.Actions.GithubUserContent.com:SUB": "repo:octo-org/octo-repo:ref:refs/heads/main"}}),
                true,
            ),
            // A `*` is literal for StringEquals, a wildcard for StringLike.
            (json!({"StringEquals": {sub: "repo:octo-org/*"}}), false),
            (json!({"StringLike": {sub: "repo:octo-org/*"}}), true),
            (
                json!({"StringLike": {sub: "repo:octo-org/*:ref:refs/tags/*"}}),
                false,
            ),
            // Any listed value may match; every key and operator must hold.
            (
                json!({"StringEquals": {sub: ["x", "repo:octo-org/octo-repo:ref:refs/heads/main"]}}),
                true,
            ),
            (
                json!({"StringEquals": {sub: "repo:octo-org/octo-repo:ref:refs/heads/main", aud: "other"}}),
                false,
            ),
            (
                json!({"StringEquals": {aud: "sts.amazonaws.com"}, "StringLike": {sub: "repo:other/*"}}),
                false,
            ),
            // Absent keys: fail, except negated operators and IfExists.
            (json!({"StringEquals": {env: "prod"}}), false),
            (json!({"StringEqualsIfExists": {env: "prod"}}), true),
            (json!({"StringNotEquals": {env: "prod"}}), true),
            (
                json!({"StringNotEquals": {sub: "repo:octo-org/octo-repo:ref:refs/heads/main"}}),
                false,
            ),
            (json!({"StringNotLike": {sub: "repo:other/*"}}), true),
            // Set operators over a multi-valued claim.
            (json!({"ForAnyValue:StringEquals": {groups: "b"}}), true),
            (json!({"ForAllValues:StringEquals": {groups: "b"}}), false),
            (
                json!({"ForAllValues:StringEquals": {groups: ["a", "b", "c"]}}),
                true,
            ),
            (json!({"ForAllValues:StringEquals": {env: "prod"}}), true),
            (json!({"ForAnyValue:StringEquals": {env: "prod"}}), false),
            // An operator this evaluator does not decide is a requirement, said aloud.
            (json!({"NumericLessThan": {aud: "3"}}), true),
            // Null: whether the claim is there.
            (json!({"Null": {env: "true"}}), true),
            (json!({"Null": {sub: "true"}}), false),
            (json!({"Null": {sub: "false"}}), true),
            // IfExists under a set operator passes on an absent key.
            (
                json!({"ForAnyValue:StringEqualsIfExists": {env: "prod"}}),
                true,
            ),
        ];
        for (i, (condition, expected)) in cases.into_iter().enumerate() {
            assert_eq!(
                allowed(condition.clone()),
                expected,
                "case {i}: {condition}"
            );
        }
    }

    #[test]
    fn request_keys_are_requirements_not_claims() {
        let policy = trust(json!({
            "StringEquals": {"token.actions.githubusercontent.com:sub": "repo:octo-org/octo-repo:ref:refs/heads/main"},
            "DateLessThan": {"aws:CurrentTime": "2027-01-01T00:00:00Z"},
            "IpAddress": {"aws:SourceIp": ["192.0.2.0/24"]},
        }));
        let Verdict::Allowed { requires, .. } = check_trust(&policy, &claims()) else {
            panic!("a request key denied it");
        };
        assert_eq!(
            requires,
            [
                "DateLessThan aws:CurrentTime `2027-01-01T00:00:00Z`",
                "IpAddress aws:SourceIp `192.0.2.0/24`"
            ]
        );
        // A token claim that fails still denies, whatever the request keys say.
        let policy = trust(json!({
            "StringEquals": {"token.actions.githubusercontent.com:sub": "repo:octo-org/octo-repo:ref:refs/heads/dev"},
            "DateLessThan": {"aws:CurrentTime": "2027-01-01T00:00:00Z"},
        }));
        assert!(matches!(
            check_trust(&policy, &claims()),
            Verdict::Denied { .. }
        ));
        // A deny that hangs on the request is a requirement of the allow.
        let policy = org_wide_with_deny(json!({"NotIpAddress": {"aws:SourceIp": "192.0.2.0/24"}}));
        let Verdict::Allowed { requires, .. } = check_trust(&policy, &claims()) else {
            panic!("denied");
        };
        assert_eq!(
            requires,
            ["not (NotIpAddress aws:SourceIp `192.0.2.0/24`), which statement 1 denies"]
        );
    }

    #[test]
    fn denial_names_the_statement_condition_and_the_tokens_value() {
        let policy = trust(json!({
            "StringEquals": {"token.actions.githubusercontent.com:sub": "repo:octo-org/octo-repo:ref:refs/heads/release"}
        }));
        let Verdict::Denied { reasons } = check_trust(&policy, &claims()) else {
            panic!("allowed");
        };
        assert_eq!(
            reasons,
            [
                "statement 0: StringEquals on token.actions.githubusercontent.com:sub wants `repo:octo-org/octo-repo:ref:refs/heads/release` and the token has `repo:octo-org/octo-repo:ref:refs/heads/main`"
            ]
        );
        let policy = trust(json!({
            "StringEquals": {"token.actions.githubusercontent.com:sub": "repo:Octo-Org/octo-repo:ref:refs/heads/main"}
        }));
        let Verdict::Denied { reasons } = check_trust(&policy, &claims()) else {
            panic!("allowed");
        };
        assert!(
            reasons[0]
                .ends_with("(they differ only in case, and this comparison is case-sensitive)")
        );
    }

    #[test]
    fn explicit_deny_wins_and_wrong_principals_or_actions_do_not_count() {
        let policy = org_wide_with_deny(
            json!({"StringEquals": {"token.actions.githubusercontent.com:ref": "refs/heads/main"}}),
        );
        assert_eq!(
            check_trust(&policy, &claims()),
            Verdict::Denied {
                reasons: vec!["statement 1 denies it explicitly".into()]
            }
        );
        let wrong_action = json!({"Statement": {"Effect": "Allow", "Principal": {"Federated": "arn:aws:iam::1:oidc-provider/token.actions.githubusercontent.com"}, "Action": "sts:AssumeRole"}});
        assert!(matches!(
            check_trust(&wrong_action, &claims()),
            Verdict::Denied { .. }
        ));
        let wrong_provider = json!({"Statement": {"Effect": "Allow", "Principal": {"Federated": "arn:aws:iam::1:oidc-provider/gitlab.com"}, "Action": "sts:AssumeRoleWithWebIdentity"}});
        assert!(matches!(
            check_trust(&wrong_provider, &claims()),
            Verdict::Denied { .. }
        ));
    }
}
