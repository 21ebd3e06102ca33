//! A platform as `platforms` names it (`os/arch[/variant]`), and whether an index
//! entry is one.

use std::fmt;

use super::Error;

/// A platform as `platforms` names it: `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    os: String,
    architecture: String,
    variant: Option<String>,
}

impl Platform {
    pub fn parse(text: &str) -> Result<Self, Error> {
        let parts: Vec<&str> = text.split('/').collect();
        let valid =
            |p: &&str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        match parts.as_slice() {
            [os, arch] if [os, arch].iter().all(|p| valid(p)) => Ok(Self {
                os: (*os).to_owned(),
                architecture: (*arch).to_owned(),
                variant: None,
            }),
            [os, arch, variant] if [os, arch, variant].iter().all(|p| valid(p)) => Ok(Self {
                os: (*os).to_owned(),
                architecture: (*arch).to_owned(),
                variant: Some((*variant).to_owned()),
            }),
            _ => Err(Error::Platform(text.to_owned())),
        }
    }

    /// Whether an index entry's `platform` object is this one; a platform named without
    /// a variant takes any variant. An arm64 entry without a variant is v8, as
    /// containerd reads it (buildx writes linux/arm64 with none).
    pub(super) fn matches(&self, platform: &serde_json::Value) -> bool {
        let field = |name: &str| platform.get(name).and_then(|v| v.as_str());
        let variant = match (field("architecture"), field("variant")) {
            (Some("arm64"), None) => Some("v8"),
            (_, variant) => variant,
        };
        field("os") == Some(self.os.as_str())
            && field("architecture") == Some(self.architecture.as_str())
            && (self.variant.is_none() || variant == self.variant.as_deref())
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arm64_without_a_variant_is_v8() {
        let buildx = serde_json::json!({"os": "linux", "architecture": "arm64"});
        let v7 = serde_json::json!({"os": "linux", "architecture": "arm", "variant": "v7"});
        let wanted = |p: &str| Platform::parse(p).unwrap();
        assert!(wanted("linux/arm64/v8").matches(&buildx));
        assert!(wanted("linux/arm64").matches(&buildx));
        assert!(!wanted("linux/arm64/v9").matches(&buildx));
        assert!(wanted("linux/arm").matches(&v7));
        assert!(!wanted("linux/arm/v6").matches(&v7));
        assert!(!wanted("linux/amd64").matches(&buildx));
    }
}
