//! The names of AWS and ECR as users type them: account ids, regions, role ARNs,
//! repository names, tags. A leaf: each check says which input was wrong and how, so the
//! CLI and `policy generate` share one rule per name.

use crate::ecr_host;

/// ECR allows at most this many characters in a tag (PutImage `imageTag`).
const MAX_TAG_CHARS: usize = 300;
/// ECR repository names are 2 to 256 characters.
const REPOSITORY_NAME_CHARS: std::ops::RangeInclusive<usize> = 2..=256;
/// STS `ExternalId`: 2 to 1224 characters of `[\w+=,.@:/-]`.
pub const EXTERNAL_ID_CHARS: std::ops::RangeInclusive<usize> = 2..=1224;

/// An input that is not what it must be: the input's name and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("{input}: {message}")]
pub struct Invalid {
    input: &'static str,
    message: String,
}

impl Invalid {
    /// What is wrong, without the input's name: for a message that names its input
    /// otherwise (a line of `targets`).
    pub fn message(&self) -> &str {
        &self.message
    }
}

pub fn invalid(input: &'static str, message: impl Into<String>) -> Invalid {
    Invalid {
        input,
        message: message.into(),
    }
}

/// The tag when `tags` is empty: the image reference's REF, else `latest`.
pub fn default_tag(reference_tag: Option<&str>) -> Result<String, Invalid> {
    match reference_tag {
        None => Ok("latest".to_owned()),
        Some(tag) => match check_tag(tag) {
            Ok(()) => Ok(tag.to_owned()),
            Err(_) => Err(invalid(
                "image",
                format!(
                    "its REF `{tag}` is not a valid tag, so it cannot be the default; set tags"
                ),
            )),
        },
    }
}

/// An image tag as ECR and the distribution spec accept it: a letter, digit or
/// underscore, then letters, digits, `_`, `.` and `-`.
pub fn check_tag(tag: &str) -> Result<(), Invalid> {
    let mut chars = tag.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !(first_ok && rest_ok) || tag.len() > MAX_TAG_CHARS {
        return Err(invalid(
            "tags",
            format!(
                "`{tag}` is not a valid tag: up to {MAX_TAG_CHARS} letters, digits, `_`, `.` and `-`, not starting with `.` or `-`"
            ),
        ));
    }
    Ok(())
}

/// ECR's repository name pattern, `(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*`:
/// components of lowercase letters and digits with single `.`, `_` or `-` between them,
/// separated by `/`.
pub fn check_repository(name: &str) -> Result<(), Invalid> {
    let separator = |b: u8| b"._-".contains(&b);
    let component_ok = |c: &str| {
        let bytes = c.as_bytes();
        bytes.first().is_some_and(|b| !separator(*b))
            && bytes.last().is_some_and(|b| !separator(*b))
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || separator(*b))
            && !bytes.windows(2).any(|w| separator(w[0]) && separator(w[1]))
    };
    if !REPOSITORY_NAME_CHARS.contains(&name.len()) || !name.split('/').all(component_ok) {
        return Err(invalid(
            "repository",
            format!(
                "`{name}` is not a valid ECR repository name: 2 to 256 characters, lowercase letters and digits separated by `.`, `_`, `-` or `/` (e.g. team/app)"
            ),
        ));
    }
    Ok(())
}

/// A region code like `us-east-1`, `eu-central-2`, `us-gov-west-1`, `cn-north-1`.
pub fn check_region(region: &str) -> Result<(), Invalid> {
    let parts: Vec<&str> = region.split('-').collect();
    let ok = parts.len() >= 3
        && parts[parts.len() - 1].len() <= 2
        && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit())
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()));
    if !ok {
        return Err(invalid(
            "aws-region",
            format!("`{region}` is not an AWS region code (e.g. us-east-1)"),
        ));
    }
    // The geographic prefixes of every partition's region pattern (the SDKs' partition
    // data); a region outside all of them exists nowhere.
    const PREFIXES: [&str; 11] = [
        "us", "eu", "ap", "sa", "ca", "me", "af", "il", "mx", "cn", "eusc",
    ];
    if !PREFIXES.contains(&parts[0]) {
        return Err(invalid(
            "aws-region",
            format!(
                "`{region}` is in no AWS partition (regions start with {}); check the region code",
                PREFIXES.join(", ")
            ),
        ));
    }
    Ok(())
}

pub fn check_account(input: &'static str, id: &str) -> Result<(), Invalid> {
    if !ecr_host::is_account_id(id) {
        return Err(invalid(
            input,
            format!("`{id}` is not an AWS account id (12 digits)"),
        ));
    }
    Ok(())
}

/// `arn:PARTITION:iam::ACCOUNT:role/[PATH/]NAME`, in the region's partition.
pub fn check_role_arn(input: &'static str, arn: &str, region: Option<&str>) -> Result<(), Invalid> {
    let not_role = || {
        invalid(
            input,
            format!("`{arn}` is not an IAM role ARN (arn:aws:iam::123456789012:role/NAME)"),
        )
    };
    let fields: Vec<&str> = arn.splitn(6, ':').collect();
    let [
        prefix,
        arn_partition,
        service,
        region_field,
        account,
        resource,
    ] = fields[..]
    else {
        return Err(not_role());
    };
    let name_ok = resource.strip_prefix("role/").is_some_and(|path_name| {
        let name = path_name.rsplit('/').next().unwrap_or_default();
        (1..=64).contains(&name.len())
            && path_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-/".contains(&b))
    });
    if prefix != "arn"
        || !["aws", "aws-cn", "aws-us-gov", "aws-eusc"].contains(&arn_partition)
        || service != "iam"
        || !region_field.is_empty()
        || !name_ok
    {
        return Err(not_role());
    }
    check_account(input, account).map_err(|_| not_role())?;
    if let Some(region) = region {
        let expected = ecr_host::partition(region);
        if arn_partition != expected {
            return Err(invalid(
                input,
                format!(
                    "`{arn}` is in partition {arn_partition} but region {region} is in {expected}"
                ),
            ));
        }
    }
    Ok(())
}

/// The account id inside a role or assumed-role ARN.
pub fn account_of_arn(arn: &str) -> Option<&str> {
    arn.split(':').nth(4).filter(|a| a.len() == 12)
}

pub fn check_chars(
    input: &'static str,
    value: &str,
    lengths: std::ops::RangeInclusive<usize>,
    punctuation: &str,
) -> Result<(), Invalid> {
    let ok = lengths.contains(&value.len())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || punctuation.contains(c));
    if !ok {
        return Err(invalid(
            input,
            format!(
                "`{value}` is not valid: {} to {} characters of letters, digits and `_{punctuation}`",
                lengths.start(),
                lengths.end()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_arns_are_checked_with_their_partition() {
        assert!(check_role_arn("r", "arn:aws:iam::111111111111:role/ci", None).is_ok());
        assert!(check_role_arn("r", "arn:aws:iam::111111111111:role/path/to/ci", None).is_ok());
        for bad in [
            "arn:aws:iam::111111111111:user/ci",
            "arn:aws:iam::1111:role/ci",
            "arn:aws:sts::111111111111:role/ci",
            "arn:aws:iam:us-east-1:111111111111:role/ci",
            "111111111111",
            "arn:aws:iam::111111111111:role/",
        ] {
            let err = check_role_arn("role-to-assume", bad, None).unwrap_err();
            assert!(err.to_string().starts_with("role-to-assume: `"), "{err}");
        }
        let err = check_role_arn("r", "arn:aws:iam::111111111111:role/ci", Some("cn-north-1"))
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("partition aws but region cn-north-1 is in aws-cn")
        );
    }

    #[test]
    fn repository_names_follow_ecr() {
        for good in ["ab", "team/app", "a.b_c-d/e1", "9/x-y"] {
            assert!(check_repository(good).is_ok(), "{good}");
        }
        for bad in [
            "a",
            "App",
            "team//app",
            "-app",
            "app-",
            "/app",
            "a..b",
            &"a".repeat(257),
        ] {
            assert!(check_repository(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn regions_look_like_regions() {
        for good in ["us-east-1", "eu-central-2", "us-gov-west-1", "cn-north-1"] {
            assert!(check_region(good).is_ok(), "{good}");
        }
        for bad in ["useast1", "US-EAST-1", "us-east", "us-east-1a", ""] {
            assert!(check_region(bad).is_err(), "{bad}");
        }
    }
}
