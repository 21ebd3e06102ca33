//! The scan gate (`scan-fail-on`) end to end against moto's scan API, with findings set
//! through moto's own `moto-api` endpoint for scan results: the image is pushed
//! untagged, scanned, and tagged only below the threshold. moto always answers
//! COMPLETE, so a scan that never completes is the recording proxy answering
//! IN_PROGRESS in its place.

use std::time::{Duration, Instant};

use crate::support::*;

const REPOSITORY: &str = "gated";

fn small_image(dir: &std::path::Path, seed: u64) -> Layout {
    write_layout(
        dir,
        "v1",
        &[random_bytes(seed, 64 * 1024), random_bytes(seed + 1, 3000)],
    )
}

/// One basic scan's finding, as DescribeImageScanFindings lists it.
fn basic_finding(name: &str, severity: &str, package: &str, version: &str) -> serde_json::Value {
    serde_json::json!({
        "name": name,
        "uri": format!("https://security-tracker.debian.org/tracker/{name}"),
        "severity": severity,
        "attributes": [
            {"key": "package_version", "value": version},
            {"key": "package_name", "value": package},
        ],
    })
}

/// A complete basic scan's answer with `findings`, for the images `image_id` matches
/// (`{}`: every image of the repository).
fn complete_scan(image_id: serde_json::Value, findings: &[serde_json::Value]) -> serde_json::Value {
    let mut counts = serde_json::Map::new();
    for finding in findings {
        let severity = finding["severity"].as_str().unwrap().to_owned();
        let n = counts.get(&severity).and_then(|v| v.as_u64()).unwrap_or(0);
        counts.insert(severity, (n + 1).into());
    }
    serde_json::json!({
        "registryId": CI_ACCOUNT,
        "repositoryName": REPOSITORY,
        "imageId": image_id,
        "imageScanStatus": {"status": "COMPLETE", "description": "The scan was completed successfully."},
        "imageScanFindings": {"findings": findings, "findingSeverityCounts": counts},
    })
}

fn gated(stack: &Stack, image: &str, fail_on: &str, tags: &str) -> Run {
    stack
        .action()
        .input("image", image)
        .input("repository", REPOSITORY)
        .input("tags", tags)
        .input("scan-fail-on", fail_on)
        .kill_after(Duration::from_secs(120))
        .run()
}

/// The digests StartImageScan was asked for, in order.
fn scans_started(stack: &Stack) -> Vec<String> {
    stack
        .recorder
        .calls_to("StartImageScan")
        .iter()
        .map(|c| {
            c.json()["imageId"]["imageDigest"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[test]
fn critical_finding_over_high_fails_lists_it_and_leaves_no_tag() {
    let stack = Stack::start();
    stack.moto.create_repository(CI_ACCOUNT, REPOSITORY, false);
    stack.moto.scan_results(
        CI_ACCOUNT,
        &[complete_scan(
            serde_json::json!({}),
            &[
                basic_finding("CVE-2026-1111", "CRITICAL", "openssl", "3.0.1-1"),
                basic_finding("CVE-2026-2222", "LOW", "zlib", "1.2.13"),
            ],
        )],
    );
    let dir = tempfile::tempdir().unwrap();
    let layout = small_image(dir.path(), 1);

    let run = gated(&stack, &layout.reference("v1"), "high", "v1");

    assert_eq!(run.code, Some(1), "{}", run.log());
    assert!(
        run.error().starts_with(
            "scan-fail-on: 1 finding at or above HIGH, the first CRITICAL CVE-2026-1111 in sha256:"
        ),
        "{}",
        run.log()
    );
    assert!(run.error().contains("no tag was moved"), "{}", run.log());
    assert!(
        stack.moto.manifest(CI_ACCOUNT, REPOSITORY, "v1").is_none(),
        "the tag was written"
    );
    assert!(
        stack
            .recorder
            .calls_to("PutImage")
            .iter()
            .all(|c| c.json()["imageTag"].is_null()),
        "a PutImage carried a tag"
    );
    // The image itself is there, untagged and scanned.
    assert_eq!(scans_started(&stack), std::slice::from_ref(&layout.digest));
    assert!(
        run.summary.contains(
            "| CRITICAL | [CVE-2026-1111](https://security-tracker.debian.org/tracker/CVE-2026-1111) | openssl | 3.0.1-1 |"
        ),
        "{}",
        run.summary
    );
    assert!(!run.summary.contains("CVE-2026-2222"), "{}", run.summary);
    assert!(
        run.summary
            .contains("| Image | CRITICAL | HIGH | MEDIUM | LOW |"),
        "{}",
        run.summary
    );
    let scan: serde_json::Value = serde_json::from_str(&run.outputs["scan"]).unwrap();
    assert_eq!(scan[0]["digest"], layout.digest.as_str());
    assert_eq!(scan[0]["counts"]["CRITICAL"], 1);
    assert_eq!(scan[0]["counts"]["LOW"], 1);
}

#[test]
fn medium_finding_under_high_tags_and_reports_counts() {
    let stack = Stack::start();
    stack.moto.create_repository(CI_ACCOUNT, REPOSITORY, false);
    stack.moto.scan_results(
        CI_ACCOUNT,
        &[complete_scan(
            serde_json::json!({}),
            &[basic_finding("CVE-2026-3333", "MEDIUM", "curl", "8.5.0")],
        )],
    );
    let dir = tempfile::tempdir().unwrap();
    let layout = small_image(dir.path(), 3);

    let run = gated(&stack, &layout.reference("v1"), "high", "v1,stable");

    assert!(run.ok(), "{}", run.log());
    for tag in ["v1", "stable"] {
        let (digest, _) = stack
            .moto
            .manifest(CI_ACCOUNT, REPOSITORY, tag)
            .unwrap_or_else(|| panic!("tag {tag} not written"));
        assert_eq!(digest, layout.digest);
    }
    let scan: serde_json::Value = serde_json::from_str(&run.outputs["scan"]).unwrap();
    assert_eq!(
        scan,
        serde_json::json!([{
            "digest": layout.digest,
            "platform": null,
            "counts": {"CRITICAL": 0, "HIGH": 0, "MEDIUM": 1, "LOW": 0},
        }])
    );
    assert!(
        run.summary.contains("Scan gate: nothing at or above HIGH"),
        "{}",
        run.summary
    );
    assert!(
        run.summary
            .contains(&format!("| `{}` | 0 | 0 | 1 | 0 |", layout.digest)),
        "{}",
        run.summary
    );
    // The tags moved only after the scan was read.
    let calls = stack.recorder.calls();
    let last_scan_read = calls
        .iter()
        .rposition(|c| c.action == "DescribeImageScanFindings")
        .expect("the scan was read");
    let first_tag = calls
        .iter()
        .position(|c| c.action == "PutImage" && !c.json()["imageTag"].is_null())
        .expect("a tag was written");
    assert!(last_scan_read < first_tag);
}

#[test]
fn a_scan_that_never_completes_stops_at_scan_timeout_minutes() {
    let stack = Stack::start();
    stack.moto.create_repository(CI_ACCOUNT, REPOSITORY, false);
    let dir = tempfile::tempdir().unwrap();
    let layout = small_image(dir.path(), 5);
    stack.recorder.answer_for(
        "DescribeImageScanFindings",
        CI_ACCOUNT,
        &[serde_json::json!({
            "registryId": CI_ACCOUNT,
            "repositoryName": REPOSITORY,
            "imageId": {"imageDigest": layout.digest},
            "imageScanStatus": {"status": "IN_PROGRESS", "description": "The scan is in progress."},
        })],
    );

    let started = Instant::now();
    let run = stack
        .action()
        .input("image", &layout.reference("v1"))
        .input("repository", REPOSITORY)
        .input("scan-fail-on", "critical")
        .input("scan-timeout-minutes", "0.05")
        .kill_after(Duration::from_secs(120))
        .run();

    assert_eq!(run.code, Some(1), "{}", run.log());
    assert!(
        run.error().starts_with(&format!(
            "scan-timeout-minutes: the scan of {} in repository {REPOSITORY} in registry {CI_ACCOUNT} ({REGION}) was not complete after 0.05 minutes (IN_PROGRESS); no tag was moved",
            layout.digest
        )),
        "{}",
        run.log()
    );
    assert!(stack.moto.manifest(CI_ACCOUNT, REPOSITORY, "v1").is_none());
    // Polled with backoff (2 s, then the rest of the 3 s), not in a tight loop.
    let polls = stack.recorder.calls_to("DescribeImageScanFindings").len();
    assert!((2..=4).contains(&polls), "{polls} polls");
    assert!(started.elapsed() < Duration::from_secs(60));
}

/// An enhanced (Inspector) finding, as DescribeImageScanFindings lists it.
fn enhanced_finding(cve: &str, severity: &str, package: &str, version: &str) -> serde_json::Value {
    serde_json::json!({
        "awsAccountId": CI_ACCOUNT,
        "findingArn": format!("arn:aws:inspector2:{REGION}:{CI_ACCOUNT}:finding/{cve}"),
        "severity": severity,
        "status": "ACTIVE",
        "title": format!("{cve} - {package}"),
        "type": "PACKAGE_VULNERABILITY",
        "packageVulnerabilityDetails": {
            "vulnerabilityId": cve,
            "source": "NVD",
            "sourceUrl": format!("https://nvd.nist.gov/vuln/detail/{cve}"),
            "vulnerablePackages": [{"name": package, "version": version, "packageManager": "PIP"}],
        },
    })
}

#[test]
fn an_enhanced_scan_is_waited_for_and_read_page_by_page() {
    let stack = Stack::start();
    stack.moto.create_repository(CI_ACCOUNT, REPOSITORY, false);
    let dir = tempfile::tempdir().unwrap();
    let layout = small_image(dir.path(), 11);
    // Under enhanced scanning StartImageScan starts nothing: Inspector scans by itself.
    stack.recorder.refuse_for(
        "StartImageScan",
        CI_ACCOUNT,
        "400 Bad Request",
        "ValidationException",
        "This feature is disabled",
    );
    let answer = |status: &str, findings: serde_json::Value, next: Option<&str>| {
        let mut body = serde_json::json!({
            "registryId": CI_ACCOUNT,
            "repositoryName": REPOSITORY,
            "imageId": {"imageDigest": layout.digest},
            "imageScanStatus": {"status": status, "description": "Continuous scan is selected for image."},
            "imageScanFindings": {"enhancedFindings": findings},
        });
        if let Some(token) = next {
            body["nextToken"] = token.into();
        }
        body
    };
    stack.recorder.answer_for(
        "DescribeImageScanFindings",
        CI_ACCOUNT,
        &[
            answer("PENDING", serde_json::json!([]), None),
            answer(
                "ACTIVE",
                serde_json::json!([enhanced_finding(
                    "CVE-2026-5555",
                    "HIGH",
                    "requests",
                    "2.31.0"
                )]),
                Some("page-2"),
            ),
            answer(
                "ACTIVE",
                serde_json::json!([enhanced_finding(
                    "CVE-2026-6666",
                    "CRITICAL",
                    "urllib3",
                    "1.26.0"
                )]),
                None,
            ),
        ],
    );

    let run = gated(&stack, &layout.reference("v1"), "critical", "v1");

    assert_eq!(run.code, Some(1), "{}", run.log());
    assert!(
        run.error()
            .starts_with("scan-fail-on: 1 finding at or above CRITICAL, the first CRITICAL CVE-2026-6666 in sha256:"),
        "{}",
        run.log()
    );
    assert!(
        run.log().contains("as under enhanced scanning"),
        "{}",
        run.log()
    );
    assert!(
        run.summary.contains(
            "| CRITICAL | [CVE-2026-6666](https://nvd.nist.gov/vuln/detail/CVE-2026-6666) | urllib3 | 1.26.0 |"
        ),
        "{}",
        run.summary
    );
    let scan: serde_json::Value = serde_json::from_str(&run.outputs["scan"]).unwrap();
    assert_eq!(scan[0]["counts"]["HIGH"], 1, "both pages counted");
    assert_eq!(scan[0]["counts"]["CRITICAL"], 1);
    let tokens: Vec<serde_json::Value> = stack
        .recorder
        .calls_to("DescribeImageScanFindings")
        .iter()
        .map(|c| c.json()["nextToken"].clone())
        .collect();
    assert_eq!(
        tokens,
        [
            serde_json::Value::Null,
            serde_json::Value::Null,
            "page-2".into()
        ]
    );
    assert!(stack.moto.manifest(CI_ACCOUNT, REPOSITORY, "v1").is_none());
}

#[test]
fn a_second_push_the_same_day_uses_the_scan_that_exists() {
    let stack = Stack::start();
    stack.moto.create_repository(CI_ACCOUNT, REPOSITORY, false);
    stack
        .moto
        .scan_results(CI_ACCOUNT, &[complete_scan(serde_json::json!({}), &[])]);
    let dir = tempfile::tempdir().unwrap();
    let layout = small_image(dir.path(), 7);

    let first = gated(&stack, &layout.reference("v1"), "low", "v1");
    assert!(first.ok(), "{}", first.log());
    let second = gated(&stack, &layout.reference("v1"), "low", "v2");

    // moto refuses the second StartImageScan of the day, as ECR does.
    assert!(second.ok(), "{}", second.log());
    assert!(
        second.log().contains("ECR scanned it already today"),
        "{}",
        second.log()
    );
    assert_eq!(scans_started(&stack).len(), 2);
    assert!(stack.moto.manifest(CI_ACCOUNT, REPOSITORY, "v2").is_some());
}

#[test]
fn an_index_is_scanned_per_platform_image_not_the_index_or_its_attestations() {
    let stack = Stack::start();
    stack.moto.create_repository(CI_ACCOUNT, REPOSITORY, false);
    let dir = tempfile::tempdir().unwrap();
    let layout = write_index_layout(dir.path(), "v1", &["linux/amd64", "linux/arm64"]);
    let results: Vec<serde_json::Value> = layout
        .images
        .iter()
        .map(|image| {
            complete_scan(
                serde_json::json!({"imageDigest": image.digest}),
                &[basic_finding("CVE-2026-4444", "HIGH", "glibc", "2.36")],
            )
        })
        .collect();
    stack.moto.scan_results(CI_ACCOUNT, &results);

    let run = gated(&stack, &layout.reference("v1"), "critical", "v1");

    assert!(run.ok(), "{}", run.log());
    let mut started = scans_started(&stack);
    started.sort();
    let mut images: Vec<String> = layout.images.iter().map(|i| i.digest.clone()).collect();
    images.sort();
    assert_eq!(started, images, "not the index, nor the attestations");
    let scan: serde_json::Value = serde_json::from_str(&run.outputs["scan"]).unwrap();
    let platforms: Vec<&str> = scan
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["platform"].as_str().unwrap())
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
    assert!(
        scan.as_array()
            .unwrap()
            .iter()
            .all(|s| s["counts"]["HIGH"] == 1)
    );
    let (digest, _) = stack
        .moto
        .manifest(CI_ACCOUNT, REPOSITORY, "v1")
        .expect("the index is tagged");
    assert_eq!(digest, layout.index.digest);
}

#[test]
fn scan_fail_on_is_refused_where_ecrs_scanning_api_is_not_used() {
    let stack = Stack::start();
    let dir = tempfile::tempdir().unwrap();
    let layout = small_image(dir.path(), 9);
    let cases: [(&[(&str, &str)], &str); 5] = [
        (
            &[
                ("repository", REPOSITORY),
                ("scan-fail-on", "high"),
                ("scan-timeout-minutes", "90"),
            ],
            "scan-timeout-minutes: 90 is longer than timeout-minutes (60)",
        ),
        (
            &[("repository", REPOSITORY), ("scan-fail-on", "severe")],
            "scan-fail-on: `severe` is not critical, high, medium or low",
        ),
        (
            &[
                ("repository", REPOSITORY),
                ("scan-fail-on", "high"),
                ("registry", "registry.example.com"),
            ],
            "scan-fail-on: scans with ECR's scanning API, and the registry registry.example.com is not ECR",
        ),
        (
            &[
                ("repository", REPOSITORY),
                ("scan-fail-on", "high"),
                ("transport", "registry"),
            ],
            "scan-fail-on: needs ECR's API",
        ),
        (
            &[
                ("targets", "registry.example.com/gated"),
                ("scan-fail-on", "high"),
            ],
            "scan-fail-on: scans with ECR's scanning API, and no target is ECR",
        ),
    ];
    for (inputs, error) in cases {
        // No role: the registry case would name role-to-assume first.
        let mut action = stack
            .action()
            .without("INPUT_ROLE-TO-ASSUME")
            .input("image", &layout.reference("v1"));
        for (name, value) in inputs {
            action = action.input(name, value);
        }
        let run = action.run();
        assert_eq!(run.code, Some(2), "{inputs:?}: {}", run.log());
        assert!(run.error().starts_with(error), "{inputs:?}: {}", run.log());
    }
    assert!(
        stack.recorder.calls().is_empty(),
        "no call before the inputs are right"
    );
}

#[test]
fn a_release_is_scanned_once_and_a_blocking_finding_tags_no_target() {
    let stack = Stack::start();
    stack.moto.create_repository(CI_ACCOUNT, REPOSITORY, false);
    stack.moto.scan_results(
        CI_ACCOUNT,
        &[complete_scan(
            serde_json::json!({}),
            &[basic_finding("CVE-2026-3333", "HIGH", "glibc", "2.36-9")],
        )],
    );
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let layout = small_image(dir.path(), 21);
    let targets = format!(
        "{}/mirror/gated\n{CI_ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{REPOSITORY}",
        registry.host()
    );

    let run = stack
        .action()
        .input("image", &layout.reference("v1"))
        .input("targets", &targets)
        .input("tags", "v1")
        .input("scan-fail-on", "high")
        .kill_after(Duration::from_secs(120))
        .run();

    assert_eq!(run.code, Some(1), "{}", run.log());
    assert!(
        run.error()
            .starts_with("scan-fail-on: 1 finding at or above HIGH"),
        "{}",
        run.log()
    );
    // Staged everywhere, scanned once on the ECR target, tagged nowhere.
    assert_eq!(scans_started(&stack), std::slice::from_ref(&layout.digest));
    assert!(stack.moto.manifest(CI_ACCOUNT, REPOSITORY, "v1").is_none());
    assert!(!registry.has("mirror/gated/manifests/v1"));
    assert!(registry.has(&format!("mirror/gated/manifests/{}", layout.digest)));
    assert!(run.summary.contains("CVE-2026-3333"), "{}", run.summary);

    // Below the threshold, every target is tagged and the counts are told.
    let run = stack
        .action()
        .input("image", &layout.reference("v1"))
        .input("targets", &targets)
        .input("tags", "v1")
        .input("scan-fail-on", "critical")
        .kill_after(Duration::from_secs(120))
        .run();
    assert!(run.ok(), "{}", run.log());
    assert!(stack.moto.manifest(CI_ACCOUNT, REPOSITORY, "v1").is_some());
    assert!(registry.has("mirror/gated/manifests/v1"));
    let scan: serde_json::Value = serde_json::from_str(&run.outputs["scan"]).unwrap();
    assert_eq!(scan[0]["counts"]["HIGH"], 1);
}

#[test]
fn a_refused_gate_leaves_no_cosign_tag_nor_fallback_tag_on_any_target() {
    use crate::referrers::{add_named_to_layout, cosign_artifact, sbom_and_signature};
    let stack = Stack::start();
    stack.moto.create_repository(CI_ACCOUNT, REPOSITORY, false);
    stack.moto.scan_results(
        CI_ACCOUNT,
        &[complete_scan(
            serde_json::json!({}),
            &[basic_finding("CVE-2026-7777", "HIGH", "openssl", "3.0.1-1")],
        )],
    );
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let layout = small_image(dir.path(), 23);
    // A cosign signature under its tag, and an SBOM, which a registry without the
    // referrers API lists under the fallback tag.
    let base = format!("sha256-{}", layout.digest.trim_start_matches("sha256:"));
    let sig = cosign_artifact(
        "application/vnd.dev.cosign.simplesigning.v1+json",
        format!(r#"{{"critical":{{"image":{{"docker-manifest-digest":"{}"}},"type":"cosign container image signature"}}}}"#, layout.digest).as_bytes(),
        ("dev.cosignproject.cosign/signature", "MEUCIQDfake=="),
    );
    add_named_to_layout(dir.path(), &sig, Some(&format!("{base}.sig")));
    let (sbom, _) = sbom_and_signature((
        "application/vnd.oci.image.manifest.v1+json",
        &layout.manifest,
    ));
    add_named_to_layout(dir.path(), &sbom, None);
    let targets = format!(
        "{CI_ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{REPOSITORY}\n{}/mirror/gated",
        registry.host()
    );
    let release = |fail_on: &str| {
        stack
            .action()
            .input("image", &layout.reference("v1"))
            .input("targets", &targets)
            .input("tags", "v1")
            .input("scan-fail-on", fail_on)
            .kill_after(Duration::from_secs(120))
            .run()
    };

    let run = release("high");

    assert_eq!(run.code, Some(1), "{}", run.log());
    assert!(
        run.error().starts_with("scan-fail-on: 1 finding"),
        "{}",
        run.log()
    );
    // Staged by digest everywhere; no tag of any kind moved.
    assert!(
        stack
            .moto
            .manifest_by_digest(CI_ACCOUNT, REPOSITORY, &sig.digest)
            .is_some()
    );
    assert!(
        stack
            .moto
            .manifest(CI_ACCOUNT, REPOSITORY, &format!("{base}.sig"))
            .is_none(),
        "the cosign tag was written in ECR"
    );
    assert!(
        stack
            .recorder
            .put_images()
            .iter()
            .all(|(_, tag)| tag.is_none()),
        "{:?}",
        stack.recorder.put_images()
    );
    assert!(registry.has(&format!("mirror/gated/manifests/{}", sig.digest)));
    assert!(!registry.has(&format!("mirror/gated/manifests/{base}.sig")));
    assert!(
        !registry.has(&format!("mirror/gated/manifests/{base}")),
        "the fallback tag was written"
    );

    // Once the gate passes, the tag phase writes them, on every target.
    let run = release("critical");
    assert!(run.ok(), "{}", run.log());
    let (digest, _) = stack
        .moto
        .manifest(CI_ACCOUNT, REPOSITORY, &format!("{base}.sig"))
        .expect("the cosign tag in ECR");
    assert_eq!(digest, sig.digest);
    assert!(registry.has(&format!("mirror/gated/manifests/{base}.sig")));
    let fallback: serde_json::Value =
        serde_json::from_slice(&registry.manifest(&format!("mirror/gated:{base}"))).unwrap();
    assert_eq!(fallback["manifests"][0]["digest"], sbom.digest.as_str());
}

#[test]
fn a_scan_ecr_cannot_do_fails_with_its_status_and_reason_and_no_tag() {
    let stack = Stack::start();
    stack.moto.create_repository(CI_ACCOUNT, REPOSITORY, false);
    let dir = tempfile::tempdir().unwrap();
    let layout = small_image(dir.path(), 25);
    // The scan ends FAILED, with ECR's description.
    stack.recorder.answer_for(
        "DescribeImageScanFindings",
        CI_ACCOUNT,
        &[serde_json::json!({
            "registryId": CI_ACCOUNT,
            "repositoryName": REPOSITORY,
            "imageId": {"imageDigest": layout.digest},
            "imageScanStatus": {"status": "FAILED", "description": "UnsupportedImageError: The operating system and/or package manager are not supported."},
        })],
    );

    let run = gated(&stack, &layout.reference("v1"), "high", "v1");

    assert_eq!(run.code, Some(1), "{}", run.log());
    assert_eq!(
        run.error(),
        format!(
            "scan-fail-on: ECR could not scan {} in repository {REPOSITORY} in registry {CI_ACCOUNT} ({REGION}) (FAILED: UnsupportedImageError: The operating system and/or package manager are not supported.); no tag was moved. Push an image ECR can scan, or leave scan-fail-on empty",
            layout.digest
        ),
        "{}",
        run.log()
    );
    assert!(stack.moto.manifest(CI_ACCOUNT, REPOSITORY, "v1").is_none());

    // StartImageScan refuses the image type outright.
    stack.recorder.calm();
    stack.recorder.refuse_for(
        "StartImageScan",
        CI_ACCOUNT,
        "400 Bad Request",
        "UnsupportedImageTypeException",
        "The image is not supported for scanning",
    );
    let run = gated(&stack, &layout.reference("v1"), "high", "v1");
    assert_eq!(run.code, Some(1), "{}", run.log());
    assert!(
        run.error().contains("(UNSUPPORTED_IMAGE: "),
        "{}",
        run.log()
    );
    assert!(
        run.error()
            .contains("The image is not supported for scanning"),
        "{}",
        run.log()
    );
    assert!(stack.moto.manifest(CI_ACCOUNT, REPOSITORY, "v1").is_none());
}

#[test]
fn a_platform_that_cannot_be_scanned_does_not_hide_another_platforms_findings() {
    let stack = Stack::start();
    stack.moto.create_repository(CI_ACCOUNT, REPOSITORY, false);
    let dir = tempfile::tempdir().unwrap();
    let layout = write_index_layout(dir.path(), "v1", &["linux/amd64", "linux/arm64"]);
    let (amd64, arm64) = (&layout.images[0], &layout.images[1]);
    stack.moto.scan_results(
        CI_ACCOUNT,
        &[complete_scan(
            serde_json::json!({"imageDigest": amd64.digest}),
            &[basic_finding(
                "CVE-2026-8888",
                "CRITICAL",
                "openssl",
                "3.0.1-1",
            )],
        )],
    );
    stack.recorder.refuse_digest(
        "StartImageScan",
        &arm64.digest,
        "400 Bad Request",
        "UnsupportedImageTypeException",
        "The image is not supported for scanning",
    );

    let run = gated(&stack, &layout.reference("v1"), "high", "v1");

    assert_eq!(run.code, Some(1), "{}", run.log());
    assert!(
        run.error().starts_with(
            "scan-fail-on: 1 finding at or above HIGH, the first CRITICAL CVE-2026-8888 in sha256:"
        ),
        "{}",
        run.log()
    );
    assert!(
        run.error()
            .contains(", and 1 image could not be scanned; no tag was moved"),
        "{}",
        run.log()
    );
    // The arm64 image's failure is its own line, and in the summary beside the finding.
    assert!(
        run.stdout.lines().any(|l| l.starts_with("::warning")
            && l.contains(&arm64.digest)
            && l.contains("UNSUPPORTED_IMAGE: ")),
        "{}",
        run.log()
    );
    assert!(run.summary.contains("CVE-2026-8888"), "{}", run.summary);
    assert!(
        run.summary
            .contains(&format!("| `{} (linux/arm64)` |", arm64.digest)),
        "{}",
        run.summary
    );
    let scan: serde_json::Value = serde_json::from_str(&run.outputs["scan"]).unwrap();
    assert_eq!(scan.as_array().unwrap().len(), 1, "{scan}");
    assert_eq!(scan[0]["digest"], amd64.digest.as_str());
    assert!(stack.moto.manifest(CI_ACCOUNT, REPOSITORY, "v1").is_none());
}

#[test]
fn a_scan_cut_short_by_the_push_deadline_says_so_itself() {
    let stack = Stack::start();
    stack.moto.create_repository(CI_ACCOUNT, REPOSITORY, false);
    let dir = tempfile::tempdir().unwrap();
    let layout = small_image(dir.path(), 27);
    stack.recorder.answer_for(
        "DescribeImageScanFindings",
        CI_ACCOUNT,
        &[serde_json::json!({
            "registryId": CI_ACCOUNT,
            "repositoryName": REPOSITORY,
            "imageId": {"imageDigest": layout.digest},
            "imageScanStatus": {"status": "IN_PROGRESS", "description": "The scan is in progress."},
        })],
    );

    // The scan may take as long as the whole push, so the push's deadline comes first.
    let run = stack
        .action()
        .input("image", &layout.reference("v1"))
        .input("repository", REPOSITORY)
        .input("scan-fail-on", "critical")
        .input("timeout-minutes", "0.2")
        .input("scan-timeout-minutes", "0.2")
        .kill_after(Duration::from_secs(120))
        .run();

    assert_eq!(run.code, Some(1), "{}", run.log());
    assert!(
        run.error().starts_with(&format!(
            "timeout-minutes: the scan of {} in repository {REPOSITORY} in registry {CI_ACCOUNT} ({REGION}) was not complete before the push's timeout-minutes ran out (IN_PROGRESS); no tag was moved. Raise timeout-minutes",
            layout.digest
        )),
        "{}",
        run.log()
    );
    assert!(stack.moto.manifest(CI_ACCOUNT, REPOSITORY, "v1").is_none());
}
