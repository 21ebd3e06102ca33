//! What a push did, and how it is told: the log line, the step outputs and the job
//! summary. Nothing here makes a call; it only renders.

use std::time::Duration;

use crate::digest::Digest;
use crate::units::human_bytes;

#[derive(Debug, Default)]
pub struct Report {
    pub blobs_uploaded: usize,
    pub bytes_uploaded: u64,
    pub blobs_skipped: usize,
    pub bytes_skipped: u64,
    pub tags_set: Vec<String>,
    pub tags_unchanged: Vec<String>,
    /// Manifests stored: the top one and, for an index, its children.
    pub manifests: usize,
    /// Requests made to the destination, by API action, retries included.
    pub calls: Vec<(String, u64)>,
    /// Of those, the ones throttled for the account's quota.
    pub throttled: Vec<(String, u64)>,
    pub elapsed: Duration,
    /// The manifests that refer to the image, and what became of each.
    pub referrers: Vec<Carried>,
}

/// A referrer (signature, SBOM, attestation) and whether it landed.
#[derive(Debug, Clone)]
pub struct Carried {
    pub digest: Digest,
    pub artifact_type: String,
    pub subject: Digest,
    /// The tag of cosign's scheme it was kept under.
    pub tag: Option<String>,
    /// The digest the source had, for an attestation moved out of its index.
    pub rewritten_from: Option<Digest>,
    /// Why the destination did not store it, when it did not.
    pub refused: Option<String>,
}

/// The `referrers` output: what went along, stored.
pub fn referrers_json(carried: &[Carried]) -> serde_json::Value {
    carried
        .iter()
        .filter(|c| c.refused.is_none())
        .map(|c| {
            let mut entry = serde_json::json!({
                "digest": c.digest.as_str(),
                "artifactType": c.artifact_type,
                "subject": c.subject.as_str(),
            });
            if let Some(tag) = &c.tag {
                entry["tag"] = tag.as_str().into();
            }
            if let Some(from) = &c.rewritten_from {
                entry["sourceDigest"] = from.as_str().into();
            }
            entry
        })
        .collect()
}

/// The Markdown table of what went along, or nothing when nothing did.
fn referrers_table(carried: &[Carried], refused_by: impl Fn(&Carried) -> String) -> String {
    if carried.is_empty() {
        return String::new();
    }
    let mut text =
        "#### Referrers\n\n| Artifact type | Digest | Refers to | Stored |\n|---|---|---|---|\n"
            .to_owned();
    for c in carried {
        let mut digest = format!("`{}`", c.digest);
        if let Some(from) = &c.rewritten_from {
            digest.push_str(&format!(" (from `{}`)", from.short()));
        }
        if let Some(tag) = &c.tag {
            digest.push_str(&format!(" tag `{tag}`"));
        }
        text.push_str(&format!(
            "| `{}` | {digest} | `{}` | {} |\n",
            c.artifact_type,
            c.subject.short(),
            refused_by(c)
        ));
    }
    text.push('\n');
    text
}

/// Where the image landed.
pub struct Pushed<'a> {
    pub registry: &'a str,
    pub repository: &'a str,
    pub digest: &'a Digest,
    /// The source index's digest, when `platforms` made a new index.
    pub original_digest: Option<&'a Digest>,
    /// What made the new manifest: `platforms linux/arm64`, `compression`.
    pub rewritten_for: &'a str,
    pub tags: &'a [String],
    pub report: &'a Report,
}

impl Pushed<'_> {
    pub fn image_uri(&self) -> String {
        format!("{}/{}@{}", self.registry, self.repository, self.digest)
    }

    /// The step outputs, under the names amazon-ecr-login and build-push-action use.
    pub fn outputs(&self) -> [(&'static str, String); 5] {
        [
            ("registry", self.registry.to_owned()),
            ("image-uri", self.image_uri()),
            ("digest", self.digest.to_string()),
            ("tags", self.tags.join(",")),
            (
                "referrers",
                referrers_json(&self.report.referrers).to_string(),
            ),
        ]
    }

    /// One line for the log.
    pub fn line(&self) -> String {
        let r = self.report;
        format!(
            "pushed {} ({} uploaded in {} blobs, {} blobs already there; tags {}) in {:.1} s",
            self.image_uri(),
            human_bytes(r.bytes_uploaded),
            r.blobs_uploaded,
            r.blobs_skipped,
            self.tags.join(", "),
            r.elapsed.as_secs_f64()
        )
    }

    /// The Markdown job summary.
    pub fn summary(&self) -> String {
        let r = self.report;
        let tag_list = |tags: &[String]| {
            if tags.is_empty() {
                "none".to_owned()
            } else {
                tags.iter()
                    .map(|t| format!("`{t}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        let mut digest_rows = format!("| Digest | `{}` |\n", self.digest);
        if let Some(original) = self.original_digest {
            digest_rows = format!(
                "| Digest | `{}` (rewritten for {}) |\n\
                 | Source digest | `{original}` |\n",
                self.digest, self.rewritten_for
            );
        }
        if r.manifests > 1 {
            digest_rows.push_str(&format!(
                "| Manifests | {} (an index and its children) |\n",
                r.manifests
            ));
        }
        format!(
            "### ecr-push: pushed `{repository}`\n\n\
             | | |\n|---|---|\n\
             | Image | `{uri}` |\n\
             {digest_rows}\
             | Tags set | {set} |\n\
             | Tags already in place | {unchanged} |\n\
             | Uploaded | {up_bytes} in {up_blobs} blobs |\n\
             | Skipped (already in the repository) | {skip_bytes} in {skip_blobs} blobs |\n\
             | Requests | {calls} |\n\
             | Time | {secs:.1} s |\n\n\
             {referrers}",
            referrers = referrers_table(&r.referrers, |c| match &c.refused {
                Some(reason) => format!("no: {}", reason.replace('|', "\\|")),
                None => "yes".to_owned(),
            }),
            repository = self.repository,
            uri = self.image_uri(),
            set = tag_list(&r.tags_set),
            unchanged = tag_list(&r.tags_unchanged),
            up_bytes = human_bytes(r.bytes_uploaded),
            up_blobs = r.blobs_uploaded,
            skip_bytes = human_bytes(r.bytes_skipped),
            skip_blobs = r.blobs_skipped,
            calls = if r.calls.is_empty() {
                "none".to_owned()
            } else {
                r.calls
                    .iter()
                    .map(
                        |(action, n)| match r.throttled.iter().find(|(a, _)| a == action) {
                            Some((_, throttled)) => format!("{action} {n} ({throttled} throttled)"),
                            None => format!("{action} {n}"),
                        },
                    )
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            secs = r.elapsed.as_secs_f64(),
        )
    }
}

/// One target of a release, as it landed.
pub struct Landed<'a> {
    pub host: &'a str,
    /// `None` for a registry that is not ECR.
    pub account: Option<&'a str>,
    pub region: Option<&'a str>,
    pub repository: &'a str,
    pub report: &'a Report,
}

impl Landed<'_> {
    fn uri(&self, digest: &Digest) -> String {
        format!("{}/{}@{digest}", self.host, self.repository)
    }
}

/// A release to several targets, in the order of the `targets` lines.
pub struct Release<'a> {
    pub digest: &'a Digest,
    pub original_digest: Option<&'a Digest>,
    pub rewritten_for: &'a str,
    pub tags: &'a [String],
    /// Never empty: `targets` lists one at least.
    pub landed: Vec<Landed<'a>>,
}

impl Release<'_> {
    /// The first target, whose outputs `registry`, `image-uri` and `digest` are.
    pub fn first(&self) -> Pushed<'_> {
        let first = &self.landed[0];
        Pushed {
            registry: first.host,
            repository: first.repository,
            digest: self.digest,
            original_digest: self.original_digest,
            rewritten_for: self.rewritten_for,
            tags: self.tags,
            report: first.report,
        }
    }

    /// `HOST/REPOSITORY@DIGEST`, a line per target.
    pub fn image_uris(&self) -> String {
        self.landed
            .iter()
            .map(|l| l.uri(self.digest))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The outputs a release adds to its first target's: `image-uris` and `targets`.
    pub fn outputs(&self) -> [(&'static str, String); 2] {
        [
            ("image-uris", self.image_uris()),
            ("targets", self.targets_json().to_string()),
        ]
    }

    /// Per target: where it is, what it took.
    pub fn targets_json(&self) -> serde_json::Value {
        self.landed
            .iter()
            .map(|l| {
                let calls: serde_json::Map<String, serde_json::Value> = l
                    .report
                    .calls
                    .iter()
                    .map(|(action, n)| (action.clone(), (*n).into()))
                    .collect();
                serde_json::json!({
                    "host": l.host,
                    "account": l.account,
                    "region": l.region,
                    "repository": l.repository,
                    "uri": l.uri(self.digest),
                    "tags": self.tags,
                    "bytes_uploaded": l.report.bytes_uploaded,
                    "blobs_uploaded": l.report.blobs_uploaded,
                    "blobs_skipped": l.report.blobs_skipped,
                    "calls": calls,
                })
            })
            .collect()
    }

    pub fn line(&self) -> String {
        let seconds = self
            .landed
            .iter()
            .map(|l| l.report.elapsed.as_secs_f64())
            .fold(0.0, f64::max);
        format!(
            "pushed {} to {} targets ({} uploaded in all; tags {}) in {seconds:.1} s",
            self.digest,
            self.landed.len(),
            human_bytes(self.landed.iter().map(|l| l.report.bytes_uploaded).sum()),
            self.tags.join(", ")
        )
    }

    /// The Markdown job summary: the image, then a row per target.
    pub fn summary(&self) -> String {
        let mut text = format!(
            "### ecr-push: released `{}` to {} targets\n\n",
            self.digest,
            self.landed.len()
        );
        if let Some(original) = self.original_digest {
            text.push_str(&format!(
                "Rewritten for {} from `{original}`.\n\n",
                self.rewritten_for
            ));
        }
        text.push_str(&format!(
            "Tags: {}\n\n| Target | Account | Region | Uploaded | Skipped | Requests | Time |\n|---|---|---|---|---|---|---|\n",
            self.tags.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", ")
        ));
        for l in &self.landed {
            let r = l.report;
            text.push_str(&format!(
                "| `{}/{}` | {} | {} | {} in {} blobs | {} blobs | {} | {:.1} s |\n",
                l.host,
                l.repository,
                l.account.unwrap_or("–"),
                l.region.unwrap_or("–"),
                human_bytes(r.bytes_uploaded),
                r.blobs_uploaded,
                r.blobs_skipped,
                r.calls.iter().map(|(_, n)| n).sum::<u64>(),
                r.elapsed.as_secs_f64()
            ));
        }
        text.push('\n');
        // Every target carries the same referrers; which ones refused each, per row.
        text.push_str(&referrers_table(&self.landed[0].report.referrers, |c| {
            let refused: Vec<String> = self
                .landed
                .iter()
                .filter(|l| {
                    l.report
                        .referrers
                        .iter()
                        .any(|o| o.digest == c.digest && o.refused.is_some())
                })
                .map(|l| format!("`{}/{}`", l.host, l.repository))
                .collect();
            if refused.is_empty() {
                "on every target".to_owned()
            } else {
                format!("refused by {}", refused.join(", "))
            }
        }));
        text
    }
}
