//! A registry image's name, as Docker reads it (distribution's `reference` grammar):
//! `[HOST[:PORT]/]PATH[:TAG][@sha256:DIGEST]`. A first component with a `.` or a `:`,
//! or `localhost`, is the host; without one the image is on Docker Hub (`docker.io`),
//! where a one-component path is an official image (`library/NAME`). No tag and no
//! digest means `latest`.

use crate::digest::Digest;

/// Docker Hub as logins and references name it.
const DOCKER_HUB: &str = "docker.io";
/// Docker Hub's distribution API, where its requests go.
const DOCKER_HUB_API: &str = "registry-1.docker.io";
/// The grammar's limit on `HOST/PATH`.
const NAME_MAX: usize = 255;
/// The grammar's limit on a tag: a word character, then up to 127 of `[\w.-]`.
const TAG_MAX: usize = 128;

const INVALID: &str = "invalid reference format";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// The registry as logins are stored under it (`docker.io` for Docker Hub).
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl Reference {
    /// Parses a name; the error is the grammar's word for what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (name, digest) = match text.split_once('@') {
            Some((name, digest)) => (
                name,
                Some(Digest::parse(digest).map_err(|_| "invalid digest format".to_owned())?),
            ),
            None => (text, None),
        };
        // A tag follows the last `:` after the last `/` (a `:` before it is a port).
        let (name, tag) = match name.rfind(':') {
            Some(colon) if !name[colon..].contains('/') => {
                (&name[..colon], Some(name[colon + 1..].to_owned()))
            }
            _ => (name, None),
        };
        if let Some(tag) = &tag
            && !valid_tag(tag)
        {
            return Err("invalid tag format".into());
        }
        if name.is_empty() {
            return Err(INVALID.into());
        }
        if name.len() > NAME_MAX {
            return Err(format!(
                "repository name must not be more than {NAME_MAX} characters"
            ));
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, rest)) if is_host(first) => (first, rest),
            _ => (DOCKER_HUB, name),
        };
        if !valid_host(registry) || !path.split('/').all(valid_path_component) {
            return Err(INVALID.into());
        }
        let registry = if registry == "index.docker.io" {
            DOCKER_HUB
        } else {
            registry
        };
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_owned()
        };
        let tag = tag.or_else(|| digest.is_none().then(|| "latest".to_owned()));
        Ok(Self {
            registry: registry.to_owned(),
            repository,
            tag,
            digest,
        })
    }

    /// The host requests go to: Docker Hub's API host for `docker.io`.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// What the manifest is fetched by: the digest when one is pinned, else the tag.
    pub fn pinned_or_tag(&self) -> &str {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => digest.as_str(),
            (None, Some(tag)) => tag,
            // parse gives every reference a tag or a digest.
            (None, None) => "latest",
        }
    }
}

/// `HOST/REPOSITORY[:TAG][@DIGEST]`, the name with every default filled in.
impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Docker's rule for whether the first component names a host.
fn is_host(first: &str) -> bool {
    first.contains(['.', ':'])
        || first == "localhost"
        || first.bytes().any(|b| b.is_ascii_uppercase())
}

/// Labels of letters, digits and inner `-`, separated by `.`, then an optional port;
/// or a bracketed IPv6 address and an optional port.
fn valid_host(host: &str) -> bool {
    let (name, port) = match host.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((ip, port)) => {
                if ip.parse::<std::net::Ipv6Addr>().is_err() {
                    return false;
                }
                ("", port)
            }
            None => return false,
        },
        None => match host.split_once(':') {
            Some((name, _)) => (name, &host[name.len()..]),
            None => (host, ""),
        },
    };
    let port_ok = port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let labels_ok = name.is_empty() && host.starts_with('[')
        || name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    port_ok && labels_ok
}

/// `[a-z0-9]+` runs joined by one `.`, one or two `_`, or any number of `-`.
fn valid_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        let allowed = separator == "."
            || separator == "_"
            || separator == "__"
            || separator.bytes().all(|b| b == b'-');
        if !allowed {
            return false;
        }
    }
    true
}

fn valid_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    tag.len() <= TAG_MAX
        && tag.bytes().next().is_some_and(word)
        && tag.bytes().all(|b| word(b) || b == b'.' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn parsed(text: &str) -> (String, String, Option<String>, Option<String>) {
        let r = Reference::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        (
            r.registry,
            r.repository,
            r.tag,
            r.digest.map(|d| d.to_string()),
        )
    }

    #[test]
    fn names_are_read_as_docker_reads_them() {
        let some = |s: &str| Some(s.to_owned());
        let own = |s: &str| s.to_owned();
        assert_eq!(
            parsed("alpine"),
            (
                own("docker.io"),
                own("library/alpine"),
                some("latest"),
                None
            )
        );
        assert_eq!(
            parsed("index.docker.io/team/app:1.2"),
            (own("docker.io"), own("team/app"), some("1.2"), None)
        );
        assert_eq!(
            parsed("localhost:5000/team/app"),
            (own("localhost:5000"), own("team/app"), some("latest"), None)
        );
        assert_eq!(
            parsed(&format!("ghcr.io/o/r@{DIGEST}")),
            (own("ghcr.io"), own("o/r"), None, some(DIGEST))
        );
        assert_eq!(
            parsed(&format!("127.0.0.1:5000/a/b:v1@{DIGEST}")),
            (own("127.0.0.1:5000"), own("a/b"), some("v1"), some(DIGEST))
        );
        assert_eq!(
            parsed("[::1]:5000/a__b/c-d.e:v_1.0-rc"),
            (own("[::1]:5000"), own("a__b/c-d.e"), some("v_1.0-rc"), None)
        );
        assert_eq!(
            parsed("team/app").0,
            "docker.io",
            "a first component without a dot is a path"
        );
        let hub = Reference::parse("alpine:3").unwrap();
        assert_eq!(hub.api_host(), "registry-1.docker.io");
        assert_eq!(hub.to_string(), "docker.io/library/alpine:3");
        assert_eq!(hub.pinned_or_tag(), "3");
    }

    #[test]
    fn malformed_names_say_what_is_wrong() {
        for (text, reason) in [
            ("localhost:5000/App:v1", INVALID),
            ("", INVALID),
            ("host.example/a//b", INVALID),
            ("host.example/-a", INVALID),
            ("host.example/a...b", INVALID),
            ("bad_host.example/a", INVALID),
            ("host.example:port/a", INVALID),
            ("host.example/a:-v1", "invalid tag format"),
            ("host.example/a@sha256:abc", "invalid digest format"),
            ("host.example/a@md5:0123", "invalid digest format"),
        ] {
            assert_eq!(Reference::parse(text), Err(reason.to_owned()), "{text}");
        }
        let long = format!("host.example/{}", "a".repeat(250));
        assert!(Reference::parse(&long).unwrap_err().contains("255"));
        let tag = format!("host.example/a:{}", "v".repeat(129));
        assert_eq!(Reference::parse(&tag), Err("invalid tag format".into()));
    }
}
