//! The host names of Amazon ECR private registries, in every form AWS documents
//! ("Making requests to Amazon ECR registries", the service endpoints page), read into
//! the account, region and endpoint variant they name, and written back.
//!
//! | form | host |
//! |---|---|
//! | standard | `ACCOUNT.dkr.ecr.REGION.amazonaws.com` (`.amazonaws.com.cn` in China) |
//! | FIPS | `ACCOUNT.dkr.ecr-fips.REGION.amazonaws.com` |
//! | dual-stack (IPv4 and IPv6) | `ACCOUNT.dkr-ecr.REGION.on.aws` (`.on.amazonwebservices.com.cn` in China) |
//! | dual-stack FIPS | `ACCOUNT.dkr-ecr-fips.REGION.on.aws` |
//!
//! The API calls for a registry go to the matching endpoint variant: a FIPS host's to
//! ECR's FIPS endpoint, a dual-stack host's to its dual-stack one.

use std::fmt;

/// `public.ecr.aws`: ECR Public, another service with its own API.
pub const ECR_PUBLIC: &str = "public.ecr.aws";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcrHost {
    pub account: String,
    pub region: String,
    pub fips: bool,
    pub dual_stack: bool,
}

impl EcrHost {
    /// `None` for a host that is not an ECR private registry.
    pub fn parse(host: &str) -> Option<Self> {
        let host = host.to_ascii_lowercase();
        let (rest, dual_stack, china) = if let Some(rest) = host.strip_suffix(".amazonaws.com.cn") {
            (rest, false, true)
        } else if let Some(rest) = host.strip_suffix(".amazonaws.com") {
            (rest, false, false)
        } else if let Some(rest) = host.strip_suffix(".on.amazonwebservices.com.cn") {
            (rest, true, true)
        } else if let Some(rest) = host.strip_suffix(".on.aws") {
            (rest, true, false)
        } else {
            return None;
        };
        let (account, rest) = rest.split_once('.')?;
        let (service, fips) = if dual_stack {
            ("dkr-ecr", rest.starts_with("dkr-ecr-fips."))
        } else {
            ("dkr.ecr", rest.starts_with("dkr.ecr-fips."))
        };
        let region = rest
            .strip_prefix(service)?
            .strip_prefix(if fips { "-fips." } else { "." })?;
        let valid_account = is_account_id(account);
        let valid_region = !region.is_empty()
            && region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && region.starts_with("cn-") == china;
        (valid_account && valid_region).then(|| Self {
            account: account.to_owned(),
            region: region.to_owned(),
            fips,
            dual_stack,
        })
    }

    /// The standard host of a registry.
    pub fn standard(account: &str, region: &str) -> Self {
        Self {
            account: account.to_owned(),
            region: region.to_owned(),
            fips: false,
            dual_stack: false,
        }
    }

    pub fn partition(&self) -> &'static str {
        partition(&self.region)
    }
}

impl fmt::Display for EcrHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let china = self.region.starts_with("cn-");
        let fips = if self.fips { "-fips" } else { "" };
        match (self.dual_stack, china) {
            (false, false) => write!(
                f,
                "{}.dkr.ecr{fips}.{}.amazonaws.com",
                self.account, self.region
            ),
            (false, true) => write!(
                f,
                "{}.dkr.ecr{fips}.{}.amazonaws.com.cn",
                self.account, self.region
            ),
            (true, false) => write!(f, "{}.dkr-ecr{fips}.{}.on.aws", self.account, self.region),
            (true, true) => write!(
                f,
                "{}.dkr-ecr{fips}.{}.on.amazonwebservices.com.cn",
                self.account, self.region
            ),
        }
    }
}

/// An AWS account id: 12 digits.
pub fn is_account_id(id: &str) -> bool {
    id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit())
}

/// The partition a region is in.
pub fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("eusc-") {
        "aws-eusc"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_form_names_its_account_region_and_variant() {
        let cases = [
            (
                "222222222222.dkr.ecr.eu-west-1.amazonaws.com",
                "eu-west-1",
                false,
                false,
            ),
            (
                "222222222222.dkr.ecr.cn-north-1.amazonaws.com.cn",
                "cn-north-1",
                false,
                false,
            ),
            (
                "222222222222.dkr.ecr-fips.us-gov-west-1.amazonaws.com",
                "us-gov-west-1",
                true,
                false,
            ),
            (
                "222222222222.dkr-ecr.us-east-1.on.aws",
                "us-east-1",
                false,
                true,
            ),
            (
                "222222222222.dkr-ecr-fips.us-east-2.on.aws",
                "us-east-2",
                true,
                true,
            ),
            (
                "222222222222.dkr-ecr.cn-northwest-1.on.amazonwebservices.com.cn",
                "cn-northwest-1",
                false,
                true,
            ),
        ];
        for (host, region, fips, dual_stack) in cases {
            let parsed = EcrHost::parse(host).unwrap_or_else(|| panic!("{host}"));
            assert_eq!(
                parsed,
                EcrHost {
                    account: "222222222222".into(),
                    region: region.into(),
                    fips,
                    dual_stack
                },
                "{host}"
            );
            assert_eq!(parsed.to_string(), host, "written back as it was read");
        }
        for other in [
            "ghcr.io",
            ECR_PUBLIC,
            "2222.dkr.ecr.us-east-1.amazonaws.com",
            "222222222222.dkr.ecr.amazonaws.com",
            "222222222222.dkr-ecr.us-east-1.amazonaws.com",
            "222222222222.dkr.ecr.us-east-1.on.aws",
            "222222222222.dkr.ecr.us-east-1.amazonaws.com.cn",
            "222222222222.dkr.ecr.cn-north-1.amazonaws.com",
            "222222222222.ecr.us-east-1.amazonaws.com",
        ] {
            assert_eq!(EcrHost::parse(other), None, "{other}");
        }
        assert_eq!(
            EcrHost::parse("222222222222.DKR.ECR.us-east-1.amazonaws.com").map(|h| h.region),
            Some("us-east-1".into())
        );
    }
}
