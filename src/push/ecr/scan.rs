//! The scan gate's ECR calls: StartImageScan, then DescribeImageScanFindings polled
//! until the scan is done, for one image by digest (never an index: ECR scans the
//! images an index lists, not the index).
//!
//! Whether to start a scan is decided by what StartImageScan answers, not by reading
//! the repository's settings first:
//! - DescribeRepositories' `imageScanningConfiguration.scanOnPush` is the deprecated
//!   repository-level switch; the registry's scanning configuration (scan type BASIC or
//!   ENHANCED, rules with SCAN_ON_PUSH / CONTINUOUS_SCAN / MANUAL frequencies and
//!   wildcard repository filters) overrides it. Reading that needs
//!   `ecr:GetRegistryScanningConfiguration`, a registry-wide action a push role should
//!   not need, and matching its filters here would copy a rule ECR owns.
//! - StartImageScan answers it instead, in one call: a basic scan starts (the
//!   repository does not scan on push, or the push scan has not begun), or
//!   `LimitExceededException`, since a basic scan runs once per image per 24 hours,
//!   the scan on push included: a scan exists, so it is the one waited for. Under
//!   enhanced scanning (Amazon Inspector) StartImageScan starts nothing and is refused
//!   with `ValidationException` ("This feature is disabled"): Inspector scans on push
//!   or continuously by itself, so that too means wait.
//!
//! Polling: `ScanNotFoundException` while a scan on push has not been recorded yet is
//! waiting too; IN_PROGRESS and PENDING wait; COMPLETE (basic) and ACTIVE (enhanced,
//! whose findings are then available and kept up to date) are done; FAILED,
//! UNSUPPORTED_IMAGE, FINDINGS_UNAVAILABLE, SCAN_ELIGIBILITY_EXPIRED, LIMIT_EXCEEDED and
//! IMAGE_ARCHIVED are failures with their reason. Findings come in pages of up to
//! [`FINDINGS_PER_PAGE`], as `findings` (basic: name, uri, severity, attributes
//! `package_name` / `package_version`) or `enhancedFindings` (Inspector: title,
//! severity, `packageVulnerabilityDetails`).

use std::time::{Duration, Instant};

use aws_sdk_ecr::config::retry::RetryConfig;
use aws_sdk_ecr::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ecr::operation::describe_image_scan_findings::DescribeImageScanFindingsOutput;
use aws_sdk_ecr::types::{EnhancedImageScanFinding, ImageIdentifier, ImageScanFinding, ScanStatus};

use super::Ecr;
use crate::push::Error;
use crate::scan::{Finding, Severity, Subject, Wait};

/// DescribeImageScanFindings' `maxResults` at most (1-1000; 100 when not sent).
const FINDINGS_PER_PAGE: i32 = 1000;
/// The first wait between polls; it doubles up to [`MAX_POLL_WAIT`].
const FIRST_POLL_WAIT: Duration = Duration::from_secs(2);
/// A basic scan takes a minute or more; polling faster spends calls for nothing.
const MAX_POLL_WAIT: Duration = Duration::from_secs(15);
/// StartImageScan's attempts at a throttle or a server error. The SDK's own retries are
/// off for it: its retry classifier counts `LimitExceededException` as throttling
/// (aws-runtime's `THROTTLING_ERRORS`), and would spend 8 attempts and half a minute of
/// backoff on the answer that means "a scan exists".
const START_ATTEMPTS: u32 = 4;

/// Where a scan stands after one poll.
enum Poll {
    /// Not done yet, with the status to name should time run out.
    Waiting(String),
    Done(Vec<Finding>),
}

impl Ecr {
    /// The findings of `subject`'s scan, started here unless one exists, waited for
    /// until `wait` runs out.
    pub async fn scan(&self, subject: &Subject, wait_for: &Wait) -> Result<Vec<Finding>, Error> {
        let deadline = wait_for.until;
        self.start_scan(subject).await?;
        let mut wait = FIRST_POLL_WAIT;
        loop {
            let status = match self.poll_scan(subject).await? {
                Poll::Done(findings) => return Ok(findings),
                Poll::Waiting(status) => status,
            };
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::ScanTimeout {
                    input: wait_for.input,
                    subject: subject.to_string(),
                    target: self.target.to_string(),
                    when: wait_for.when.clone(),
                    status,
                });
            }
            tracing::debug!("scan of {subject}: {status}, asking again in {wait:?}");
            tokio::time::sleep(wait.min(deadline - now)).await;
            wait = (wait * 2).min(MAX_POLL_WAIT);
        }
    }

    /// StartImageScan; a refusal that means "a scan exists or will" is no error.
    async fn start_scan(&self, subject: &Subject) -> Result<(), Error> {
        let mut attempt = 1;
        let started = loop {
            let started = self
                .clients
                .other
                .start_image_scan()
                .registry_id(&self.target.registry_id)
                .repository_name(&self.target.repository)
                .image_id(by_digest(subject))
                .customize()
                .config_override(
                    aws_sdk_ecr::config::Builder::default()
                        .retry_config(RetryConfig::standard().with_max_attempts(1)),
                )
                .send()
                .await;
            let transient = match &started {
                Err(SdkError::ServiceError(e)) => {
                    e.raw().status().is_server_error()
                        || e.err().code() == Some("ThrottlingException")
                }
                Err(SdkError::DispatchFailure(_) | SdkError::TimeoutError(_)) => true,
                _ => false,
            };
            if !transient || attempt == START_ATTEMPTS {
                break started;
            }
            tokio::time::sleep(FIRST_POLL_WAIT * attempt).await;
            attempt += 1;
        };
        match started {
            Ok(_) => {
                tracing::info!("scan of {subject} started");
                Ok(())
            }
            Err(err) => match err.code() {
                Some("LimitExceededException") => {
                    tracing::info!(
                        "scan of {subject}: ECR scanned it already today (on push, or an earlier run), using that scan"
                    );
                    Ok(())
                }
                Some("ValidationException") => {
                    tracing::info!(
                        "scan of {subject}: StartImageScan refused ({}), as under enhanced scanning (Amazon Inspector), which scans by itself; waiting for its scan",
                        crate::sdk::describe(&err)
                    );
                    Ok(())
                }
                Some("UnsupportedImageTypeException") => Err(Error::ScanFailed {
                    subject: subject.to_string(),
                    target: self.target.to_string(),
                    status: "UNSUPPORTED_IMAGE".to_owned(),
                    reason: format!(": {}", crate::sdk::describe(&err)),
                }),
                code => Err(self.target.api_error("StartImageScan", &err, code)),
            },
        }
    }

    /// One look at the scan, every page of findings read once it is done.
    async fn poll_scan(&self, subject: &Subject) -> Result<Poll, Error> {
        let mut findings = Vec::new();
        let mut next_token: Option<String> = None;
        loop {
            let page = self
                .clients
                .other
                .describe_image_scan_findings()
                .registry_id(&self.target.registry_id)
                .repository_name(&self.target.repository)
                .image_id(by_digest(subject))
                .max_results(FINDINGS_PER_PAGE)
                .set_next_token(next_token.take())
                .send()
                .await;
            let page = match page {
                Ok(page) => page,
                Err(err) if err.code() == Some("ScanNotFoundException") => {
                    return Ok(Poll::Waiting("no scan recorded yet".to_owned()));
                }
                Err(err) => {
                    return Err(self.target.api_error(
                        "DescribeImageScanFindings",
                        &err,
                        err.code(),
                    ));
                }
            };
            let status = page.image_scan_status().and_then(|s| s.status());
            match status {
                Some(ScanStatus::Complete | ScanStatus::Active) => {}
                Some(ScanStatus::InProgress | ScanStatus::Pending) | None => {
                    let status = status.map_or("no status yet", ScanStatus::as_str);
                    return Ok(Poll::Waiting(status.to_owned()));
                }
                Some(failed) => {
                    let reason = page
                        .image_scan_status()
                        .and_then(|s| s.description())
                        .map(|d| format!(": {d}"))
                        .unwrap_or_default();
                    return Err(Error::ScanFailed {
                        subject: subject.to_string(),
                        target: self.target.to_string(),
                        status: failed.as_str().to_owned(),
                        reason,
                    });
                }
            }
            findings.extend(findings_of(&page));
            match page.next_token() {
                Some(token) if !token.is_empty() => next_token = Some(token.to_owned()),
                _ => return Ok(Poll::Done(findings)),
            }
        }
    }
}

fn by_digest(subject: &Subject) -> ImageIdentifier {
    ImageIdentifier::builder()
        .image_digest(subject.digest.as_str())
        .build()
}

/// The findings of one page, in either shape.
fn findings_of(page: &DescribeImageScanFindingsOutput) -> Vec<Finding> {
    let Some(found) = page.image_scan_findings() else {
        return Vec::new();
    };
    found
        .findings()
        .iter()
        .map(basic)
        .chain(found.enhanced_findings().iter().map(enhanced))
        .collect()
}

/// A basic scan's finding: the package is in its attributes.
fn basic(finding: &ImageScanFinding) -> Finding {
    let attribute = |key: &str| {
        finding
            .attributes()
            .iter()
            .find(|a| a.key() == key)
            .and_then(|a| a.value())
            .map(str::to_owned)
    };
    Finding {
        severity: Severity::from_ecr(finding.severity().map_or("", |s| s.as_str())),
        name: finding.name().unwrap_or("unnamed finding").to_owned(),
        package: attribute("package_name"),
        version: attribute("package_version"),
        link: finding.uri().map(str::to_owned),
    }
}

/// An enhanced (Inspector) finding: the CVE and the packages are in its
/// `packageVulnerabilityDetails`; several packages are listed together.
fn enhanced(finding: &EnhancedImageScanFinding) -> Finding {
    let details = finding.package_vulnerability_details();
    let packages = details.map(|d| d.vulnerable_packages()).unwrap_or_default();
    let joined = |field: fn(&aws_sdk_ecr::types::VulnerablePackage) -> Option<&str>| {
        let values: Vec<&str> = packages.iter().filter_map(field).collect();
        (!values.is_empty()).then(|| values.join(", "))
    };
    Finding {
        severity: Severity::from_ecr(finding.severity().unwrap_or("")),
        name: details
            .and_then(|d| d.vulnerability_id())
            .or(finding.title())
            .unwrap_or("unnamed finding")
            .to_owned(),
        package: joined(|p| p.name()),
        version: joined(|p| p.version()),
        link: details
            .and_then(|d| d.source_url())
            .or_else(|| details.and_then(|d| d.reference_urls().first().map(String::as_str)))
            .map(str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_ecr::types::{
        Attribute, FindingSeverity, ImageScanFindings, PackageVulnerabilityDetails,
        VulnerablePackage,
    };

    use super::*;

    #[test]
    fn both_result_shapes_become_findings() {
        let basic = ImageScanFinding::builder()
            .name("CVE-2026-0001")
            .uri("https://security-tracker.debian.org/tracker/CVE-2026-0001")
            .severity(FindingSeverity::Critical)
            .attributes(
                Attribute::builder()
                    .key("package_name")
                    .value("openssl")
                    .build()
                    .unwrap(),
            )
            .attributes(
                Attribute::builder()
                    .key("package_version")
                    .value("3.0.1")
                    .build()
                    .unwrap(),
            )
            .build();
        let enhanced = EnhancedImageScanFinding::builder()
            .severity("UNTRIAGED")
            .title("CVE-2026-0002 - zlib")
            .package_vulnerability_details(
                PackageVulnerabilityDetails::builder()
                    .vulnerability_id("CVE-2026-0002")
                    .source_url("https://nvd.nist.gov/vuln/detail/CVE-2026-0002")
                    .vulnerable_packages(
                        VulnerablePackage::builder()
                            .name("zlib")
                            .version("1.2.11")
                            .build(),
                    )
                    .build(),
            )
            .build();
        let page = DescribeImageScanFindingsOutput::builder()
            .image_scan_findings(
                ImageScanFindings::builder()
                    .findings(basic)
                    .enhanced_findings(enhanced)
                    .build(),
            )
            .build();
        assert_eq!(
            findings_of(&page),
            [
                Finding {
                    severity: Severity::Critical,
                    name: "CVE-2026-0001".to_owned(),
                    package: Some("openssl".to_owned()),
                    version: Some("3.0.1".to_owned()),
                    link: Some(
                        "https://security-tracker.debian.org/tracker/CVE-2026-0001".to_owned()
                    ),
                },
                Finding {
                    severity: Severity::Untriaged,
                    name: "CVE-2026-0002".to_owned(),
                    package: Some("zlib".to_owned()),
                    version: Some("1.2.11".to_owned()),
                    link: Some("https://nvd.nist.gov/vuln/detail/CVE-2026-0002".to_owned()),
                },
            ]
        );
    }
}
