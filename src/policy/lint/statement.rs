//! One statement of a policy document, read once into what the rules ask of it: its
//! effect, actions, resources, principals by kind and conditions as (operator, key,
//! values). IAM's grammar is loose (a string or a list, `Principal: "*"` or a map);
//! the rules see one shape, and the questions they share (does it grant this action,
//! does a condition narrow who gets in) are answered here once.

use serde_json::Value;

use crate::policy::{evaluate, github_claim, strings, wildcard_match};

pub(super) struct Statement<'a> {
    pub(super) raw: &'a Value,
    pub(super) allow: bool,
    pub(super) actions: Vec<String>,
    pub(super) not_action: bool,
    pub(super) resources: Vec<String>,
    pub(super) not_resource: bool,
    pub(super) has_principal: bool,
    /// `Principal: "*"` or `AWS: "*"`.
    pub(super) anyone: bool,
    pub(super) aws: Vec<String>,
    pub(super) federated: Vec<String>,
    pub(super) services: Vec<String>,
    /// It names ECR or ECR Public actions (or every action).
    pub(super) registry_actions: bool,
    /// (operator, key, values) of every condition.
    pub(super) conditions: Vec<(String, String, Vec<String>)>,
}

impl<'a> Statement<'a> {
    pub(super) fn read(raw: &'a Value) -> Self {
        let principal = raw.get("Principal");
        let field = |kind: &str| principal.map(|p| strings(p.get(kind))).unwrap_or_default();
        let aws = field("AWS");
        let mut conditions = Vec::new();
        for (operator, keys) in raw
            .get("Condition")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            for (key, values) in keys.as_object().into_iter().flatten() {
                conditions.push((operator.clone(), key.clone(), strings(Some(values))));
            }
        }
        let actions = strings(raw.get("Action"));
        Self {
            raw,
            registry_actions: actions
                .iter()
                .any(|a| a == "*" || a.to_ascii_lowercase().starts_with("ecr")),
            allow: !raw
                .get("Effect")
                .and_then(Value::as_str)
                .is_some_and(|e| e.eq_ignore_ascii_case("Deny")),
            actions,
            not_action: raw.get("NotAction").is_some(),
            resources: strings(raw.get("Resource")),
            not_resource: raw.get("NotResource").is_some(),
            has_principal: principal.is_some(),
            anyone: principal.and_then(Value::as_str) == Some("*") || aws.iter().any(|a| a == "*"),
            aws,
            federated: field("Federated"),
            services: field("Service"),
            conditions,
        }
    }

    /// Whether the Action list covers `action` (IAM folds the case of action names).
    pub(super) fn grants(&self, action: &str) -> bool {
        self.actions.iter().any(|a| wildcard_match(a, action, true))
    }

    /// Whether `action` is listed by its own name, not through a wildcard.
    pub(super) fn names(&self, action: &str) -> bool {
        self.actions.iter().any(|a| a.eq_ignore_ascii_case(action))
    }

    pub(super) fn granted<'l>(&self, list: &[&'l str]) -> Vec<&'l str> {
        list.iter().copied().filter(|a| self.grants(a)).collect()
    }

    /// A condition with a positive operator on one of `keys` and a value that is not
    /// `*`: one that narrows who gets in.
    pub(super) fn narrowed_by(&self, keys: &[&str]) -> bool {
        self.conditions.iter().any(|(operator, key, values)| {
            let positive = !operator.contains("Not") && !operator.ends_with("IfExists");
            positive
                && keys.contains(&key.to_ascii_lowercase().as_str())
                && values.iter().any(|v| v != "*")
        })
    }

    /// A resource pattern that covers every repository of a registry (or of all).
    pub(super) fn any_repository(&self) -> Option<&str> {
        self.resources
            .iter()
            .find(|r| {
                if *r == "*" {
                    return true;
                }
                let parts: Vec<&str> = r.splitn(6, ':').collect();
                parts.len() == 6
                    && parts[0] == "arn"
                    && (wildcard_match(parts[2], "ecr", true)
                        || wildcard_match(parts[2], "ecr-public", true))
                    && wildcard_match(parts[5], "repository/ecr-push-probe/any", false)
            })
            .map(String::as_str)
    }

    /// What the statement accepts of GitHub's claims: (claim, values) of each positive
    /// operator on one (a negated one names what it keeps out, not what it means).
    pub(super) fn github_accepts(&self) -> impl Iterator<Item = (String, &[String])> {
        self.conditions
            .iter()
            .filter(|(operator, _, _)| !operator.contains("Not"))
            .filter_map(|(_, key, values)| Some((github_claim(key)?, values.as_slice())))
    }

    /// The values the statement accepts for one of GitHub's claims.
    pub(super) fn github_values(&self, claim: &str) -> Vec<&str> {
        self.github_accepts()
            .filter(|(name, _)| name == claim)
            .flat_map(|(_, values)| values.iter().map(String::as_str))
            .collect()
    }

    /// A statement meant to let GitHub's tokens in, with sts:AssumeRole by mistake too
    /// (`web-identity-action` says that; what it would let in once fixed still counts).
    pub(super) fn is_github_trust(&self) -> bool {
        let github_key = |(_, key, _): &(String, String, Vec<String>)| github_claim(key).is_some();
        (self.grants("sts:AssumeRoleWithWebIdentity")
            || (!self.federated.is_empty() && self.grants("sts:AssumeRole")))
            && (self.federated.iter().any(|f| evaluate::names_github(f))
                || ((self.anyone || !self.federated.is_empty())
                    && self.conditions.iter().any(github_key)))
    }
}
