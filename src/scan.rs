//! The scan gate's model, apart from how ECR is asked: severities (the threshold of
//! `scan-fail-on` and ECR's own names), the findings of each scanned image, which
//! images of a push are scanned, and how the result is told (the job summary's
//! tables, the `scan` output). A leaf: it knows digests and nothing of AWS, so the
//! rules it holds are tested without a server.
//!
//! The `scan` output is a JSON array, one object per scanned image:
//! `[{"digest":"sha256:…","platform":"linux/amd64","counts":{"CRITICAL":0,"HIGH":1,"MEDIUM":0,"LOW":2}}]`.
//! `platform` is null for a single image (its platform is in its config, which the gate
//! does not read); `counts` always has the four severities `scan-fail-on` takes, and
//! ECR's INFORMATIONAL, UNDEFINED and UNTRIAGED only when some finding has them.

use std::collections::BTreeMap;

use crate::digest::Digest;

/// The media types of an index: ECR scans the images it lists, never the index itself.
const INDEX_MEDIA_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// The platform BuildKit gives an attestation manifest inside an index; it is no image.
const ATTESTATION_PLATFORM: &str = "unknown/unknown";

/// Rows of findings in the job summary at most: GitHub takes up to 1 MiB of summary per
/// step, and an old base image can have thousands of findings. The counts table
/// still counts them all.
const MAX_SUMMARY_ROWS: usize = 200;

/// A finding's severity as ECR names it, lowest first. Basic scanning says
/// INFORMATIONAL, LOW, MEDIUM, HIGH, CRITICAL or UNDEFINED; Inspector (enhanced)
/// adds UNTRIAGED. Only the four from LOW up can be a threshold: the three others
/// are below any threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Untriaged,
    Undefined,
    Informational,
    Low,
    Medium,
    High,
    Critical,
}

/// The severities a threshold can be, highest first: the columns that are always shown.
const THRESHOLDS: [Severity; 4] = [
    Severity::Critical,
    Severity::High,
    Severity::Medium,
    Severity::Low,
];

/// The severities below any threshold, shown only when a finding has one.
const BELOW_THRESHOLDS: [Severity; 3] = [
    Severity::Informational,
    Severity::Undefined,
    Severity::Untriaged,
];

impl Severity {
    /// `scan-fail-on`, as the user writes it (any case).
    pub fn threshold(text: &str) -> Option<Self> {
        THRESHOLDS
            .into_iter()
            .find(|s| s.as_ecr().eq_ignore_ascii_case(text.trim()))
    }

    /// A severity as ECR answers it; a name ECR adds later counts as UNDEFINED, below
    /// any threshold, rather than failing the gate on a word it does not know.
    pub fn from_ecr(text: &str) -> Self {
        THRESHOLDS
            .into_iter()
            .chain(BELOW_THRESHOLDS)
            .find(|s| s.as_ecr().eq_ignore_ascii_case(text))
            .unwrap_or(Severity::Undefined)
    }

    pub fn as_ecr(self) -> &'static str {
        match self {
            Severity::Untriaged => "UNTRIAGED",
            Severity::Undefined => "UNDEFINED",
            Severity::Informational => "INFORMATIONAL",
            Severity::Low => "LOW",
            Severity::Medium => "MEDIUM",
            Severity::High => "HIGH",
            Severity::Critical => "CRITICAL",
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_ecr())
    }
}

/// One vulnerability ECR found in an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    /// The CVE or the finding's title.
    pub name: String,
    pub package: Option<String>,
    pub version: Option<String>,
    pub link: Option<String>,
}

/// How long the gate waits for its scans, and which input set that, as a scan that
/// runs out says.
#[derive(Debug, Clone)]
pub struct Wait {
    pub until: std::time::Instant,
    /// `scan-timeout-minutes`, or `timeout-minutes` when the push's own deadline comes
    /// first.
    pub input: &'static str,
    /// When it ran out, as the error says it: `after 10 minutes`.
    pub when: String,
}

/// An image the gate scans: a single image, or one platform of an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub digest: Digest,
    /// `os/arch[/variant]` from the index; `None` for a single image.
    pub platform: Option<String>,
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.platform {
            Some(platform) => write!(f, "{} ({platform})", self.digest),
            None => write!(f, "{}", self.digest),
        }
    }
}

/// An image and what its scan found.
#[derive(Debug, Clone)]
pub struct Scanned {
    pub subject: Subject,
    pub findings: Vec<Finding>,
}

impl Scanned {
    /// The findings per severity, every threshold severity present (0 when none).
    pub fn counts(&self) -> BTreeMap<Severity, usize> {
        let mut counts: BTreeMap<Severity, usize> = THRESHOLDS.iter().map(|s| (*s, 0)).collect();
        for finding in &self.findings {
            *counts.entry(finding.severity).or_default() += 1;
        }
        counts
    }
}

/// The images of a push the gate scans: a single image itself; for an index, each
/// image it lists, without BuildKit's attestation manifests (`unknown/unknown`) and
/// without nested indexes, which ECR does not scan. `bytes` is a manifest the image
/// walk has already read and checked.
pub fn subjects(media_type: &str, bytes: &[u8], digest: &Digest) -> Vec<Subject> {
    if !INDEX_MEDIA_TYPES.contains(&media_type) {
        return vec![Subject {
            digest: digest.clone(),
            platform: None,
        }];
    }
    let index: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
    let entries = index
        .get("manifests")
        .and_then(|m| m.as_array())
        .cloned()
        .unwrap_or_default();
    entries
        .iter()
        .filter(|entry| {
            let media_type = entry.get("mediaType").and_then(|m| m.as_str());
            !media_type.is_some_and(|m| INDEX_MEDIA_TYPES.contains(&m))
        })
        .filter_map(|entry| {
            let digest = Digest::parse(entry.get("digest")?.as_str()?).ok()?;
            let platform = entry.get("platform").map(|p| {
                let field = |n: &str| p.get(n).and_then(|v| v.as_str()).unwrap_or("unknown");
                match p.get("variant").and_then(|v| v.as_str()) {
                    Some(v) => format!("{}/{}/{v}", field("os"), field("architecture")),
                    None => format!("{}/{}", field("os"), field("architecture")),
                }
            });
            (platform.as_deref() != Some(ATTESTATION_PLATFORM))
                .then_some(Subject { digest, platform })
        })
        .collect()
}

/// Every finding at or above `threshold`, with the image it is in, highest first.
pub fn blocking(scans: &[Scanned], threshold: Severity) -> Vec<(&Subject, &Finding)> {
    let mut found: Vec<(&Subject, &Finding)> = scans
        .iter()
        .flat_map(|s| s.findings.iter().map(move |f| (&s.subject, f)))
        .filter(|(_, f)| f.severity >= threshold)
        .collect();
    found.sort_by(|a, b| {
        b.1.severity
            .cmp(&a.1.severity)
            .then(a.1.name.cmp(&b.1.name))
    });
    found
}

/// The job summary of a gate that stopped the push: the findings at or above the
/// threshold, one row each, the images that could not be scanned and why, then the
/// counts of those that were.
pub fn refused_summary(
    scans: &[Scanned],
    threshold: Severity,
    unscanned: &[(Subject, String)],
) -> String {
    let found = blocking(scans, threshold);
    let mut text = if found.is_empty() {
        format!(
            "### Scan gate: {} image{} not scanned, no tag was moved\n\n",
            unscanned.len(),
            if unscanned.len() == 1 { "" } else { "s" },
        )
    } else {
        format!(
            "### Scan gate: {} finding{} at or above {threshold}, no tag was moved\n\n",
            found.len(),
            if found.len() == 1 { "" } else { "s" },
        )
    };
    if !unscanned.is_empty() {
        text.push_str("| Not scanned | Why |\n|---|---|\n");
        for (subject, why) in unscanned {
            text.push_str(&format!("| `{subject}` | {} |\n", cell(why)));
        }
        text.push('\n');
    }
    if found.is_empty() {
        if !scans.is_empty() {
            text.push_str(&counts_table(scans));
        }
        return text;
    }
    text.push_str("| Severity | Finding | Package | Version | Image |\n|---|---|---|---|---|\n");
    for (subject, finding) in found.iter().take(MAX_SUMMARY_ROWS) {
        let name = match &finding.link {
            Some(link) => format!("[{}]({})", cell(&finding.name), link_target(link)),
            None => cell(&finding.name),
        };
        text.push_str(&format!(
            "| {} | {name} | {} | {} | `{}` |\n",
            finding.severity,
            cell(finding.package.as_deref().unwrap_or("")),
            cell(finding.version.as_deref().unwrap_or("")),
            subject
        ));
    }
    if found.len() > MAX_SUMMARY_ROWS {
        text.push_str(&format!(
            "\n{} more not listed; the `scan` output and ECR's console have them all.\n",
            found.len() - MAX_SUMMARY_ROWS
        ));
    }
    text.push('\n');
    text.push_str(&counts_table(scans));
    text
}

/// The job summary of a gate that let the push through: the counts.
pub fn passed_summary(scans: &[Scanned], threshold: Severity) -> String {
    format!(
        "### Scan gate: nothing at or above {threshold}\n\n{}",
        counts_table(scans)
    )
}

/// One row per scanned image, a column per severity (the four thresholds, and the
/// others only when some image has them).
fn counts_table(scans: &[Scanned]) -> String {
    let counts: Vec<BTreeMap<Severity, usize>> = scans.iter().map(Scanned::counts).collect();
    let columns: Vec<Severity> = THRESHOLDS
        .into_iter()
        .chain(
            BELOW_THRESHOLDS
                .into_iter()
                .filter(|s| counts.iter().any(|c| c.contains_key(s))),
        )
        .collect();
    let mut text = String::from("| Image |");
    for column in &columns {
        text.push_str(&format!(" {column} |"));
    }
    text.push_str("\n|---|");
    text.push_str(&"---|".repeat(columns.len()));
    text.push('\n');
    for (scan, counts) in scans.iter().zip(&counts) {
        text.push_str(&format!("| `{}` |", scan.subject));
        for column in &columns {
            text.push_str(&format!(" {} |", counts.get(column).copied().unwrap_or(0)));
        }
        text.push('\n');
    }
    text.push('\n');
    text
}

/// The `scan` output (the shape is in this module's header).
pub fn output(scans: &[Scanned]) -> serde_json::Value {
    scans
        .iter()
        .map(|scan| {
            let counts: serde_json::Map<String, serde_json::Value> = scan
                .counts()
                .into_iter()
                .rev()
                .map(|(severity, n)| (severity.as_ecr().to_owned(), n.into()))
                .collect();
            serde_json::json!({
                "digest": scan.subject.digest.as_str(),
                "platform": scan.subject.platform,
                "counts": counts,
            })
        })
        .collect()
}

/// Text from a scanner, safe in a Markdown table cell: one line, no column break.
fn cell(text: &str) -> String {
    text.replace(['\r', '\n'], " ").replace('|', "\\|")
}

/// A link from a scanner, safe as a Markdown link target.
fn link_target(link: &str) -> String {
    link.replace(['\r', '\n', ' '], "")
        .replace('(', "%28")
        .replace(')', "%29")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u8) -> Digest {
        Digest::of(&[n])
    }

    fn finding(severity: Severity, name: &str) -> Finding {
        Finding {
            severity,
            name: name.to_owned(),
            package: Some("openssl".to_owned()),
            version: Some("3.0.1".to_owned()),
            link: Some(format!("https://nvd.nist.gov/vuln/detail/{name}")),
        }
    }

    fn scanned(findings: Vec<Finding>) -> Scanned {
        Scanned {
            subject: Subject {
                digest: digest(1),
                platform: Some("linux/amd64".to_owned()),
            },
            findings,
        }
    }

    #[test]
    fn thresholds_are_the_four_severities_in_any_case() {
        assert_eq!(Severity::threshold("high"), Some(Severity::High));
        assert_eq!(Severity::threshold(" CRITICAL "), Some(Severity::Critical));
        assert_eq!(Severity::threshold("Low"), Some(Severity::Low));
        assert_eq!(Severity::threshold("informational"), None);
        assert_eq!(Severity::threshold("severe"), None);
    }

    #[test]
    fn severities_order_low_to_critical_with_ecrs_others_below_all() {
        assert!(Severity::Critical > Severity::High);
        assert!(Severity::High > Severity::Medium);
        assert!(Severity::Medium > Severity::Low);
        for other in ["INFORMATIONAL", "UNDEFINED", "UNTRIAGED", "SOMETHING_NEW"] {
            assert!(Severity::from_ecr(other) < Severity::Low, "{other}");
        }
        assert_eq!(Severity::from_ecr("critical"), Severity::Critical);
    }

    #[test]
    fn only_findings_at_or_above_the_threshold_block() {
        let scans = [scanned(vec![
            finding(Severity::Medium, "CVE-2026-0002"),
            finding(Severity::Critical, "CVE-2026-0001"),
            finding(Severity::Informational, "CVE-2026-0003"),
        ])];
        let names = |t| -> Vec<String> {
            blocking(&scans, t)
                .iter()
                .map(|(_, f)| f.name.clone())
                .collect()
        };
        assert_eq!(names(Severity::High), ["CVE-2026-0001"]);
        assert_eq!(names(Severity::Medium), ["CVE-2026-0001", "CVE-2026-0002"]);
        assert_eq!(names(Severity::Low).len(), 2);
    }

    #[test]
    fn an_index_is_scanned_per_platform_without_attestations() {
        let (amd, arm, att) = (digest(1), digest(2), digest(3));
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": INDEX_MEDIA_TYPES[0],
            "manifests": [
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": amd.as_str(), "size": 1,
                 "platform": {"os": "linux", "architecture": "amd64"}},
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": arm.as_str(), "size": 1,
                 "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": att.as_str(), "size": 1,
                 "platform": {"os": "unknown", "architecture": "unknown"}},
                {"mediaType": INDEX_MEDIA_TYPES[0], "digest": digest(4).as_str(), "size": 1},
            ]
        });
        let bytes = serde_json::to_vec(&index).unwrap();
        let found = subjects(INDEX_MEDIA_TYPES[0], &bytes, &digest(9));
        assert_eq!(
            found,
            [
                Subject {
                    digest: amd,
                    platform: Some("linux/amd64".to_owned())
                },
                Subject {
                    digest: arm,
                    platform: Some("linux/arm64/v8".to_owned())
                },
            ]
        );
    }

    #[test]
    fn a_single_image_is_its_own_subject() {
        let found = subjects(
            "application/vnd.oci.image.manifest.v1+json",
            b"{}",
            &digest(9),
        );
        assert_eq!(
            found,
            [Subject {
                digest: digest(9),
                platform: None
            }]
        );
    }

    #[test]
    fn the_output_counts_every_threshold_and_others_when_found() {
        let scans = [scanned(vec![
            finding(Severity::Critical, "CVE-2026-0001"),
            finding(Severity::Untriaged, "CVE-2026-0009"),
        ])];
        let out = output(&scans);
        assert_eq!(
            out,
            serde_json::json!([{
                "digest": digest(1).as_str(),
                "platform": "linux/amd64",
                "counts": {"CRITICAL": 1, "HIGH": 0, "MEDIUM": 0, "LOW": 0, "UNTRIAGED": 1}
            }])
        );
        let keys: Vec<&String> = out[0]["counts"].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["CRITICAL", "HIGH", "MEDIUM", "LOW", "UNTRIAGED"]);
    }

    #[test]
    fn the_refusal_lists_each_blocking_finding_in_a_safe_table() {
        let mut odd = finding(Severity::High, "title | with\nbreak");
        odd.link = Some("https://example.com/a (b)".to_owned());
        let scans = [scanned(vec![
            finding(Severity::Critical, "CVE-2026-0001"),
            odd,
            finding(Severity::Low, "CVE-2026-0005"),
        ])];
        let summary = refused_summary(&scans, Severity::High, &[]);
        assert!(summary.contains("2 findings at or above HIGH"), "{summary}");
        assert!(
            summary.contains(
                "| CRITICAL | [CVE-2026-0001](https://nvd.nist.gov/vuln/detail/CVE-2026-0001) | openssl | 3.0.1 |"
            ),
            "{summary}"
        );
        assert!(
            summary.contains("[title \\| with break](https://example.com/a%28b%29)"),
            "{summary}"
        );
        assert!(!summary.contains("CVE-2026-0005]"), "{summary}");
        assert!(
            summary.contains("| Image | CRITICAL | HIGH | MEDIUM | LOW |"),
            "{summary}"
        );
        assert!(summary.contains("| 1 | 1 | 0 | 1 |"), "{summary}");
    }

    #[test]
    fn images_not_scanned_are_listed_with_why_beside_what_the_others_found() {
        let arm64 = Subject {
            digest: digest(2),
            platform: Some("linux/arm64".to_owned()),
        };
        let unscanned = [(arm64, "ECR could not scan it (FAILED | odd)".to_owned())];
        let scans = [scanned(vec![finding(Severity::Low, "CVE-2026-0005")])];
        let summary = refused_summary(&scans, Severity::High, &unscanned);
        assert!(
            summary.starts_with("### Scan gate: 1 image not scanned, no tag was moved"),
            "{summary}"
        );
        assert!(
            summary.contains(&format!(
                "| `{} (linux/arm64)` | ECR could not scan it (FAILED \\| odd) |",
                digest(2)
            )),
            "{summary}"
        );
        assert!(summary.contains("| 0 | 0 | 0 | 1 |"), "{summary}");
        let scans = [scanned(vec![finding(Severity::Critical, "CVE-2026-0001")])];
        let summary = refused_summary(&scans, Severity::High, &unscanned);
        assert!(summary.contains("1 finding at or above HIGH"), "{summary}");
        assert!(summary.contains("| Not scanned | Why |"), "{summary}");
        assert!(summary.contains("[CVE-2026-0001]"), "{summary}");
    }

    #[test]
    fn a_long_refusal_lists_the_worst_findings_and_counts_the_rest() {
        let findings: Vec<Finding> = (0..MAX_SUMMARY_ROWS + 5)
            .map(|n| finding(Severity::High, &format!("CVE-2026-{n:05}")))
            .chain([finding(Severity::Critical, "CVE-2026-99999")])
            .collect();
        let summary = refused_summary(&[scanned(findings)], Severity::High, &[]);
        assert!(
            summary.contains("| CRITICAL | [CVE-2026-99999]"),
            "{summary}"
        );
        assert_eq!(summary.matches("| HIGH | [").count(), MAX_SUMMARY_ROWS - 1);
        assert!(summary.contains("\n6 more not listed"), "{summary}");
    }
}
