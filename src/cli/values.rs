//! The values of `push`'s inputs that are more than one name: tags, platforms,
//! compression, a registry host, a repository given as a whole URI.

use crate::ecr_host::{self, EcrHost};
use crate::names::{Invalid as Error, check_tag, invalid};

/// A `repository` that is a whole image URI (`HOST/NAME[:TAG]`) or a URL: say which
/// inputs its parts belong to rather than take the host as part of the name (with
/// create-repository it would create a repository named so).
pub(super) fn repository_is_not_a_uri(repository: &str) -> Result<(), Error> {
    let bare = repository
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_start_matches("docker://");
    let Some((first, rest)) = bare.split_once('/') else {
        return Ok(());
    };
    let host = EcrHost::parse(first).is_some()
        || first.eq_ignore_ascii_case(ecr_host::ECR_PUBLIC)
        || first.contains(':')
        || first == "localhost"
        || bare != repository;
    if !host {
        return Ok(());
    }
    let (name, tag) = match rest.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, Some(tag)),
        _ => (rest, None),
    };
    Err(invalid(
        "repository",
        format!(
            "`{repository}` is a registry and a repository; give repository: {name} and registry: {first}{}",
            tag.map(|t| format!(", and the tag as tags: {t}"))
                .unwrap_or_default()
        ),
    ))
}

/// Splits `tags` on commas and newlines, dropping blanks and repeats.
pub(super) fn parse_tags(text: &str) -> Result<Vec<String>, Error> {
    let mut tags: Vec<String> = Vec::new();
    for tag in text
        .split([',', '\n'])
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        check_tag(tag)?;
        if !tags.iter().any(|t| t == tag) {
            tags.push(tag.to_owned());
        }
    }
    if tags.is_empty() {
        return Err(invalid("tags", "lists no tag"));
    }
    if tags.len() > MAX_TAGS {
        return Err(invalid(
            "tags",
            format!(
                "lists {} tags; ECR allows at most {MAX_TAGS} on one image",
                tags.len()
            ),
        ));
    }
    Ok(tags)
}

/// ECR's hard limit of tags on one image.
const MAX_TAGS: usize = 1000;

/// A registry host: a name or address, maybe a port; no scheme, no path.
pub(super) fn check_host(host: &str) -> Result<(), Error> {
    if crate::targets::is_registry_host(host) {
        Ok(())
    } else {
        Err(invalid(
            "registry",
            format!("`{host}` is not a registry host (HOST or HOST:PORT, no scheme or path)"),
        ))
    }
}

/// `compression` and `compression-level`, together.
pub(super) fn parse_compression(
    name: &str,
    level: Option<&str>,
) -> Result<crate::image::Compression, Error> {
    use crate::image::Compression;
    let level = level.map(str::trim).filter(|l| !l.is_empty());
    let number = |range: std::ops::RangeInclusive<i64>| -> Result<Option<i64>, Error> {
        level
            .map(|l| {
                l.parse::<i64>()
                    .ok()
                    .filter(|n| range.contains(n))
                    .ok_or_else(|| {
                        invalid(
                            "compression-level",
                            format!(
                                "`{l}` is not a level of {name}; use {} to {}",
                                range.start(),
                                range.end()
                            ),
                        )
                    })
            })
            .transpose()
    };
    match name.trim().to_ascii_lowercase().as_str() {
        "keep" if level.is_some() => Err(invalid(
            "compression-level",
            "is set but compression is keep; set compression to gzip or zstd",
        )),
        "keep" => Ok(Compression::Keep),
        "gzip" => Ok(Compression::Gzip {
            level: number(1..=9)?.unwrap_or(6) as u32,
        }),
        "zstd" => Ok(Compression::Zstd {
            level: number(1..=19)?.unwrap_or(3) as i32,
        }),
        other => Err(invalid(
            "compression",
            format!("`{other}` is not keep, gzip or zstd"),
        )),
    }
}

/// Splits `platforms` on commas and newlines into OS/ARCH[/VARIANT], dropping blanks
/// and repeats.
pub(super) fn parse_platforms(text: &str) -> Result<Vec<crate::image::Platform>, Error> {
    let mut platforms: Vec<crate::image::Platform> = Vec::new();
    for item in text
        .split([',', '\n'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let platform = crate::image::Platform::parse(item).map_err(|_| {
            invalid(
                "platforms",
                format!("`{item}` is not OS/ARCH[/VARIANT], e.g. linux/amd64 or linux/arm64/v8"),
            )
        })?;
        if !platforms.contains(&platform) {
            platforms.push(platform);
        }
    }
    if platforms.is_empty() {
        return Err(invalid("platforms", "lists no platform"));
    }
    Ok(platforms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_hosts_are_checked() {
        for good in ["ghcr.io", "localhost:5000", "127.0.0.1:5000", "[::1]:5000"] {
            assert!(check_host(good).is_ok(), "{good}");
        }
        for bad in ["https://ghcr.io", "ghcr.io/org", "host:port", ""] {
            assert!(check_host(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn compression_levels_belong_to_their_algorithm() {
        use crate::image::Compression;
        assert_eq!(parse_compression("keep", None).unwrap(), Compression::Keep);
        assert_eq!(
            parse_compression("gzip", Some("")).unwrap(),
            Compression::Gzip { level: 6 }
        );
        assert_eq!(
            parse_compression("ZSTD", None).unwrap(),
            Compression::Zstd { level: 3 }
        );
        assert_eq!(
            parse_compression("zstd", Some("19")).unwrap(),
            Compression::Zstd { level: 19 }
        );
        for (name, level, input) in [
            ("gzip", Some("10"), "compression-level"),
            ("zstd", Some("x"), "compression-level"),
            ("keep", Some("6"), "compression-level"),
            ("brotli", None, "compression"),
        ] {
            let err = parse_compression(name, level).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("{input}: ")),
                "{name} {level:?}: {err}"
            );
        }
    }

    #[test]
    fn platforms_split_like_tags_and_must_name_os_and_arch() {
        let parsed = parse_platforms("linux/amd64, linux/arm64/v8\nlinux/amd64").unwrap();
        let shown: Vec<String> = parsed.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["linux/amd64", "linux/arm64/v8"]);
        for bad in ["amd64", "linux/", "linux/amd64/v8/x", "linux amd64", " , "] {
            let err = parse_platforms(bad).unwrap_err().to_string();
            assert!(err.starts_with("platforms: "), "{bad}: {err}");
        }
    }

    #[test]
    fn tags_split_on_commas_and_newlines_once_each() {
        assert_eq!(
            parse_tags("v1, latest\nabc123,\n,v1").unwrap(),
            ["v1", "latest", "abc123"]
        );
        assert!(parse_tags(" , ").is_err());
        assert!(parse_tags("-bad").is_err());
        assert!(parse_tags("has space").is_err());
        assert!(parse_tags(&"a".repeat(301)).is_err());
        assert!(parse_tags(&"a".repeat(300)).is_ok());
    }
}
