//! The `targets` input: one destination per line, `HOST/REPOSITORY[,role=ROLE_ARN]
//! [,external-id=ID]`, parsed and checked whole before any network call. A leaf: the
//! push and `policy generate` read the same lines with the same rules.

use crate::ecr_host::{self, EcrHost};
use crate::names::{EXTERNAL_ID_CHARS, Invalid, check_chars, check_repository, check_role_arn};

/// One line of `targets`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The line's number in the input (1-based), for messages.
    pub line: usize,
    pub host: Host,
    pub repository: String,
    /// The role to assume with the first role's credentials, for this target only.
    pub role: Option<String>,
    /// The `sts:ExternalId` of that role's trust.
    pub external_id: Option<String>,
}

/// An ECR registry (in any of its documented host forms), or any OCI registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Ecr(EcrHost),
    Registry(String),
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Host::Ecr(host) => write!(f, "{host}"),
            Host::Registry(host) => f.write_str(host),
        }
    }
}

impl Target {
    /// `HOST/REPOSITORY`, as the line named it.
    pub fn name(&self) -> String {
        format!("{}/{}", self.host, self.repository)
    }

    /// The account that owns the registry, for an ECR target.
    pub fn account(&self) -> Option<&str> {
        match &self.host {
            Host::Ecr(host) => Some(&host.account),
            Host::Registry(_) => None,
        }
    }
}

/// How many targets one step takes: each is a parallel push with its own quotas.
pub const MAX_TARGETS: usize = 20;

/// The targets of `text` (each of `lines` is one or more lines, as `--targets` repeated
/// or the action's multi-line input), blank lines and `#` comments skipped.
pub fn parse<'a>(lines: impl IntoIterator<Item = &'a str>) -> Result<Vec<Target>, Invalid> {
    let mut targets: Vec<Target> = Vec::new();
    let all = lines.into_iter().flat_map(str::lines).enumerate();
    for (index, raw) in all {
        let number = index + 1;
        // A comment runs to the end of the line; `#` is in none of a line's parts.
        let text = raw.split('#').next().unwrap_or_default().trim();
        if text.is_empty() {
            continue;
        }
        let target = parse_line(number, text)?;
        if let Some(earlier) = targets
            .iter()
            .find(|t| t.host == target.host && t.repository == target.repository)
        {
            return Err(at(
                number,
                text,
                format!(
                    "names {} again (line {}); give each registry and repository once",
                    target.name(),
                    earlier.line
                ),
            ));
        }
        targets.push(target);
    }
    if targets.is_empty() {
        return Err(crate::names::invalid(
            "targets",
            "lists no target; give one HOST/REPOSITORY[,role=ROLE_ARN][,external-id=ID] per line",
        ));
    }
    if targets.len() > MAX_TARGETS {
        return Err(crate::names::invalid(
            "targets",
            format!(
                "lists {} targets; one step takes at most {MAX_TARGETS}",
                targets.len()
            ),
        ));
    }
    Ok(targets)
}

/// The error of one line: its number, the line, and what is wrong with which part.
fn at(line: usize, text: &str, message: impl std::fmt::Display) -> Invalid {
    crate::names::invalid("targets", format!("line {line} `{text}`: {message}"))
}

fn parse_line(line: usize, text: &str) -> Result<Target, Invalid> {
    let mut parts = text.split(',').map(str::trim);
    let destination = parts.next().unwrap_or_default();
    let bare = destination
        .strip_prefix("docker://")
        .or_else(|| destination.strip_prefix("https://"))
        .unwrap_or(destination);
    if bare != destination {
        return Err(at(
            line,
            text,
            format!("`{destination}` has a scheme; give HOST/REPOSITORY, as {bare}"),
        ));
    }
    let Some((host, repository)) = destination.split_once('/') else {
        return Err(at(
            line,
            text,
            format!(
                "`{destination}` has no repository; give HOST/REPOSITORY, e.g. 123456789012.dkr.ecr.us-east-1.amazonaws.com/team/app"
            ),
        ));
    };
    let host = parse_host(host).map_err(|message| at(line, text, message))?;
    if let Some((name, tag)) = repository.rsplit_once([':', '@']) {
        return Err(at(
            line,
            text,
            format!(
                "`{repository}` carries a tag or digest (`{tag}`); a target is HOST/REPOSITORY, give the tags in tags: {name}"
            ),
        ));
    }
    check_repository(repository)
        .map_err(|e| at(line, text, format!("the repository {}", e.message())))?;
    let mut role = None;
    let mut external_id = None;
    for option in parts {
        let Some((key, value)) = option.split_once('=') else {
            return Err(at(
                line,
                text,
                format!("`{option}` is not KEY=VALUE; the options are role= and external-id="),
            ));
        };
        let value = value.trim();
        let slot = match key.trim() {
            "role" => &mut role,
            "external-id" => &mut external_id,
            other => {
                return Err(at(
                    line,
                    text,
                    format!(
                        "`{other}` is not an option of a target; the options are role= and external-id="
                    ),
                ));
            }
        };
        if slot.is_some() {
            return Err(at(line, text, format!("{} is given twice", key.trim())));
        }
        *slot = Some(value.to_owned());
    }
    if let Some(arn) = &role {
        let region = match &host {
            Host::Ecr(h) => Some(h.region.as_str()),
            Host::Registry(_) => None,
        };
        check_role_arn("role", arn, region)
            .map_err(|e| at(line, text, format!("role= {}", e.message())))?;
    }
    if let Some(id) = &external_id {
        if role.is_none() {
            return Err(at(
                line,
                text,
                "external-id= is set but role= is not; the external id is the role's, set both",
            ));
        }
        check_chars("external-id", id, EXTERNAL_ID_CHARS, "+=,.@:/-")
            .map_err(|e| at(line, text, format!("external-id= {}", e.message())))?;
    }
    if let (Host::Registry(name), Some(_)) = (&host, &role) {
        return Err(at(
            line,
            text,
            format!(
                "role= is for ECR, and {name} is not ECR (its login comes from the Docker config); remove role="
            ),
        ));
    }
    Ok(Target {
        line,
        host,
        repository: repository.to_owned(),
        role,
        external_id,
    })
}

/// A registry host: a name or address, maybe a port; no scheme, no path.
pub fn is_registry_host(host: &str) -> bool {
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) if !name.ends_with(']') || host.starts_with('[') => (name, Some(port)),
        _ => (host, None),
    };
    let name_ok = !name.is_empty()
        && (name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-".contains(&b))
            || (name.starts_with('[') && name.ends_with(']')));
    name_ok && port.is_none_or(|p| p.parse::<u16>().is_ok())
}

/// An ECR host in any documented form, else any registry host (`HOST[:PORT]`).
fn parse_host(host: &str) -> Result<Host, String> {
    if host.eq_ignore_ascii_case(ecr_host::ECR_PUBLIC) {
        return Err(format!(
            "{host} is ECR Public, whose own API ecr-push does not speak yet; push there with docker push or crane"
        ));
    }
    if let Some(ecr) = EcrHost::parse(host) {
        return Ok(Host::Ecr(ecr));
    }
    let lower = host.to_ascii_lowercase();
    if lower.ends_with(".amazonaws.com") || lower.ends_with(".amazonaws.com.cn") {
        return Err(format!(
            "`{host}` is not an ECR registry host (ACCOUNT.dkr.ecr.REGION.amazonaws.com, or its FIPS, dual-stack or China form)"
        ));
    }
    if is_registry_host(host) {
        Ok(Host::Registry(host.to_owned()))
    } else {
        Err(format!(
            "`{host}` is not a registry host (HOST or HOST:PORT)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "111111111111.dkr.ecr.us-east-1.amazonaws.com";

    #[test]
    fn lines_comments_and_options() {
        let text = format!(
            "# release\n\n{A}/team/app\n  222222222222.dkr.ecr-fips.us-west-2.amazonaws.com/app , role=arn:aws:iam::222222222222:role/publisher, external-id=release-1  # dr\nlocalhost:5000/mirror/app\n"
        );
        let targets = parse([text.as_str()]).unwrap();
        assert_eq!(targets.len(), 3);
        assert_eq!(targets[0].line, 3);
        assert_eq!(targets[0].name(), format!("{A}/team/app"));
        assert_eq!(targets[0].role, None);
        assert_eq!(targets[1].line, 4);
        assert_eq!(targets[1].account(), Some("222222222222"));
        assert!(matches!(&targets[1].host, Host::Ecr(h) if h.fips && h.region == "us-west-2"));
        assert_eq!(
            targets[1].role.as_deref(),
            Some("arn:aws:iam::222222222222:role/publisher")
        );
        assert_eq!(targets[1].external_id.as_deref(), Some("release-1"));
        assert_eq!(targets[2].host, Host::Registry("localhost:5000".to_owned()));
        // Repeated flags number their lines as one list.
        let targets = parse([format!("{A}/app").as_str(), format!("{A}/web").as_str()]).unwrap();
        assert_eq!(targets[1].line, 2);
    }

    #[test]
    fn each_bad_line_is_one_error_naming_its_line_and_part() {
        let china = "333333333333.dkr.ecr.cn-north-1.amazonaws.com.cn";
        for (line, wants) in [
            ("app".to_owned(), "has no repository"),
            (format!("{A}/App"), "the repository `App` is not a valid"),
            (format!("{A}/app:v1"), "carries a tag or digest (`v1`)"),
            (format!("docker://{A}/app"), "has a scheme"),
            (
                format!("{A}/app,role=arn:aws:iam::1:role/x"),
                "role= `arn:aws:iam::1:role/x` is not an IAM role ARN",
            ),
            (
                format!("{china}/app,role=arn:aws:iam::333333333333:role/x"),
                "is in partition aws but region cn-north-1 is in aws-cn",
            ),
            (
                format!("{A}/app,external-id=abc"),
                "external-id= is set but role= is not",
            ),
            (format!("{A}/app,role"), "`role` is not KEY=VALUE"),
            (
                format!("{A}/app,region=us-east-2"),
                "`region` is not an option",
            ),
            (
                format!(
                    "{A}/app,role=arn:aws:iam::111111111111:role/a,role=arn:aws:iam::111111111111:role/b"
                ),
                "role is given twice",
            ),
            (
                "localhost:5000/app,role=arn:aws:iam::111111111111:role/a".to_owned(),
                "localhost:5000 is not ECR",
            ),
            ("public.ecr.aws/app".to_owned(), "ECR Public"),
            (
                "111111111111.dkr.ecr.amazonaws.com/app".to_owned(),
                "is not an ECR registry host",
            ),
            ("host:port/app".to_owned(), "is not a registry host"),
        ] {
            let text = format!("# first line\n{line}");
            let err = parse([text.as_str()]).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("targets: line 2 `{line}`: ")),
                "{line}: {err}"
            );
            assert!(err.contains(wants), "{line}: {err}");
        }
        let twice = format!("{A}/app\n{A}/app");
        let err = parse([twice.as_str()]).unwrap_err().to_string();
        assert!(
            err.contains("line 2") && err.contains("again (line 1)"),
            "{err}"
        );
        let err = parse(["# nothing\n\n"]).unwrap_err().to_string();
        assert!(err.starts_with("targets: lists no target"), "{err}");
    }
}
