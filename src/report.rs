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
    pub fn outputs(&self) -> [(&'static str, String); 4] {
        [
            ("registry", self.registry.to_owned()),
            ("image-uri", self.image_uri()),
            ("digest", self.digest.to_string()),
            ("tags", self.tags.join(",")),
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
             | Time | {secs:.1} s |\n\n",
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
