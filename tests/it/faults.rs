//! Faults between the tool and AWS, injected by the recording proxy in front of moto:
//! throttles, 500s, 503s, connections reset before or after the request reached moto,
//! and stalls past the client's timeout. Every run must end with the exact image, or
//! with one clear error and no tag on anything but the exact image; a hang fails.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support::*;

const MIB: usize = 1024 * 1024;
/// A stalled request is given up on after this (ECR_PUSH_REQUEST_TIMEOUT_SECONDS).
const REQUEST_TIMEOUT: &str = "1";
/// Far beyond any honest run here: past it the run is a hang.
const HANG: Duration = Duration::from_secs(120);

/// Three layers, one of them two parts (ECR's parts are 10 MiB here).
fn image(dir: &std::path::Path, seed: u64) -> Layout {
    write_layout(
        dir,
        "v1",
        &[
            random_bytes(seed, 11 * MIB),
            random_bytes(seed + 1, 300 * 1024),
            random_bytes(seed + 2, 2000),
        ],
    )
}

/// Whether the repository holds exactly this image under `tag`: the manifest's bytes,
/// every blob with its size, and every completed upload hashing to its digest.
fn landed(stack: &Stack, account: &str, repository: &str, tag: &str, layout: &Layout) -> bool {
    let Some((digest, manifest)) = stack.moto.manifest(account, repository, tag) else {
        return false;
    };
    assert_eq!(digest, layout.digest, "{tag} points at another image");
    assert_eq!(manifest.as_bytes(), layout.manifest.as_slice());
    let available = stack
        .moto
        .available_blobs(account, repository, &layout.blob_digests());
    for blob in std::iter::once(&layout.config).chain(&layout.layers) {
        assert_eq!(
            available.get(&blob.digest),
            Some(&(blob.size as i64)),
            "{tag} points at an image whose blob {} is missing or short",
            blob.digest
        );
    }
    true
}

/// Every layer upload of the run (the recorder forgets before each) put together from
/// the parts that reached moto hashes to the digest it was completed with.
fn assert_uploads_whole(stack: &Stack) {
    for (digest, bytes) in stack.recorder.uploaded_layers() {
        assert_eq!(sha256(&bytes), digest, "an upload was put together wrongly");
    }
}

/// A failed run: one error line, no panic, nothing secret shown.
fn assert_clean_failure(run: &Run) {
    assert_eq!(run.code, Some(1), "{}", run.log());
    let error = run.error();
    assert!(!error.is_empty() && !error.contains('\n'), "{}", run.log());
    assert!(!run.log().contains("panicked"), "{}", run.log());
}

fn assert_nothing_shown(run: &Run) {
    for secret in run.masks() {
        assert!(!run.shows(&secret), "{secret} shown: {}", run.log());
    }
}

fn push(stack: &Stack, layout: &Layout, repository: &str) -> Run {
    stack
        .action()
        .env("ECR_PUSH_REQUEST_TIMEOUT_SECONDS", REQUEST_TIMEOUT)
        .input("image", &layout.reference("v1"))
        .input("repository", repository)
        .input("tags", "v1,stable")
        .input("cross-account-role", PUBLISHER_ROLE)
        .input("timeout-minutes", "1.5")
        .kill_after(HANG)
        .run()
}

const ECR_ACTIONS: [&str; 6] = [
    "BatchCheckLayerAvailability",
    "InitiateLayerUpload",
    "UploadLayerPart",
    "CompleteLayerUpload",
    "PutImage",
    "BatchGetImage",
];
const STS_ACTIONS: [&str; 2] = ["AssumeRoleWithWebIdentity", "AssumeRole"];

/// Each action, each kind of fault, twice in a row: retried, and the image lands whole.
#[test]
fn every_call_survives_every_kind_of_fault() {
    let cases: Vec<(&str, Kind)> = ECR_ACTIONS
        .iter()
        .chain(&STS_ACTIONS)
        .flat_map(|action| Kind::ALL.map(|kind| (*action, kind)))
        .collect();
    // Four stacks at once, each taking every fourth case.
    let workers: Vec<_> = (0..4)
        .map(|worker| {
            let cases: Vec<(&'static str, Kind)> =
                cases.iter().skip(worker).step_by(4).copied().collect();
            std::thread::spawn(move || {
                let stack = Stack::start();
                let dir = tempfile::tempdir().unwrap();
                let layout = image(dir.path(), 500 + worker as u64);
                for (n, (action, kind)) in cases.iter().enumerate() {
                    let repository = format!("case{n}");
                    // BatchGetImage is asked when every blob is there already (which
                    // tags are set?): push once, then again with the faults on it.
                    let repush = *action == "BatchGetImage";
                    stack
                        .moto
                        .create_repository(REGISTRY_ACCOUNT, &repository, repush);
                    if repush {
                        let first = push(&stack, &layout, &repository);
                        assert!(first.ok(), "{}", first.log());
                    }
                    stack.recorder.forget();
                    stack.recorder.fail_next(action, *kind, 2);
                    let run = push(&stack, &layout, &repository);
                    let injected = stack.recorder.injected();
                    stack.recorder.calm();
                    assert!(run.ok(), "{action} {kind:?}: {}", run.log());
                    assert!(
                        injected
                            .iter()
                            .filter(|(a, k)| a == action && k == kind)
                            .count()
                            >= 1,
                        "{action} {kind:?} was never injected"
                    );
                    for tag in ["v1", "stable"] {
                        assert!(landed(&stack, REGISTRY_ACCOUNT, &repository, tag, &layout));
                    }
                    assert_uploads_whole(&stack);
                    assert_nothing_shown(&run);
                }
                cases.len()
            })
        })
        .collect();
    // Every worker is joined before any result is looked at, so none is left running
    // (with its moto) when one fails.
    let results: Vec<_> = workers.into_iter().map(|w| w.join()).collect();
    let total: usize = results.into_iter().map(|r| r.unwrap()).sum();
    assert_eq!(total, cases.len());
}

/// A completion whose answer was lost: the retry finds the upload gone because it
/// completed, and the layer there is the proof.
#[test]
fn completion_whose_answer_was_lost_is_not_a_failure() {
    let stack = Stack::start();
    stack
        .moto
        .create_repository(REGISTRY_ACCOUNT, "lost", false);
    let dir = tempfile::tempdir().unwrap();
    let layout = image(dir.path(), 77);
    stack.recorder.lose_answer_once("CompleteLayerUpload");

    let run = push(&stack, &layout, "lost");

    assert!(run.ok(), "{}", run.log());
    assert!(landed(&stack, REGISTRY_ACCOUNT, "lost", "v1", &layout));
}

/// 200 seeded runs with every call of every kind failing 20 % of the time, all kinds
/// mixed: each ends with the exact image, or with one clear error and no tag on
/// anything else. A hang fails the test.
#[test]
fn two_hundred_runs_at_twenty_percent_faults_end_exact_or_clean() {
    const RUNS: u64 = 200;
    // The runs mostly wait (timeouts, backoff): eight at once on two cores.
    const WORKERS: u64 = 8;
    let workers: Vec<_> = (0..WORKERS)
        .map(|worker| {
            std::thread::spawn(move || {
                let stack = Stack::start();
                let dir = tempfile::tempdir().unwrap();
                // Small layers: parts are the test above's; here it is the many runs.
                let layout = write_layout(
                    dir.path(),
                    "v1",
                    &[
                        random_bytes(900 + worker, 1024 * 1024),
                        random_bytes(950 + worker, 300 * 1024),
                        random_bytes(990 + worker, 2000),
                    ],
                );
                let mut outcomes = (0u32, 0u32);
                let mut injected = Vec::new();
                for seed in (worker..RUNS).step_by(WORKERS as usize) {
                    let repository = format!("seed{seed}");
                    stack
                        .moto
                        .create_repository(REGISTRY_ACCOUNT, &repository, false);
                    stack.recorder.forget();
                    stack.recorder.chaos(seed, 20, &[], &Kind::ALL);
                    let run = push(&stack, &layout, &repository);
                    stack.recorder.calm();
                    injected.extend(stack.recorder.injected());
                    assert_uploads_whole(&stack);
                    if run.ok() {
                        outcomes.0 += 1;
                        for tag in ["v1", "stable"] {
                            assert!(
                                landed(&stack, REGISTRY_ACCOUNT, &repository, tag, &layout),
                                "seed {seed}: {tag} missing after success"
                            );
                        }
                    } else {
                        outcomes.1 += 1;
                        assert_clean_failure(&run);
                        // A tag may be set only on the exact image.
                        for tag in ["v1", "stable"] {
                            landed(&stack, REGISTRY_ACCOUNT, &repository, tag, &layout);
                        }
                        eprintln!("seed {seed}: {}", run.error());
                    }
                    assert_nothing_shown(&run);
                }
                (outcomes, injected)
            })
        })
        .collect();
    let mut passed = 0;
    let mut failed = 0;
    let mut injected: BTreeMap<(String, Kind), u32> = BTreeMap::new();
    let results: Vec<_> = workers.into_iter().map(|w| w.join()).collect();
    for result in results {
        let ((ok, clean), faults) = result.unwrap();
        passed += ok;
        failed += clean;
        for fault in faults {
            *injected.entry(fault).or_default() += 1;
        }
    }
    eprintln!("{RUNS} runs: {passed} exact, {failed} clean failures");
    for ((action, kind), n) in &injected {
        eprintln!("  {action} {kind:?}: {n}");
    }
    assert_eq!(u64::from(passed + failed), RUNS);
    // Every action and every kind was hit, or the test proves less than it says.
    for action in ECR_ACTIONS.iter().chain(&STS_ACTIONS) {
        if *action == "BatchGetImage" {
            continue; // asked only on an immutable tag's conflict
        }
        for kind in Kind::ALL {
            assert!(
                injected.contains_key(&((*action).to_owned(), kind)),
                "{action} {kind:?} never injected"
            );
        }
    }
}

/// A refusal is final: asked once, never again, and the push stops before any tag.
#[test]
fn authorization_errors_are_not_retried() {
    let stack = Stack::start();
    stack
        .moto
        .create_repository(REGISTRY_ACCOUNT, "denied", false);
    let dir = tempfile::tempdir().unwrap();
    let layout = image(dir.path(), 88);
    stack.recorder.json_error_times(
        "InitiateLayerUpload",
        "400 Bad Request",
        "AccessDeniedException",
        "not authorized to perform: ecr:InitiateLayerUpload",
        100,
    );

    let run = push(&stack, &layout, "denied");

    assert_clean_failure(&run);
    assert!(
        run.error().contains("AccessDeniedException"),
        "{}",
        run.log()
    );
    // One per blob at most (they start at once), never a second for the same blob.
    let initiated = stack.recorder.calls_to("InitiateLayerUpload").len();
    assert!(initiated <= 4, "{initiated} InitiateLayerUpload calls");
    assert!(stack.recorder.calls_to("PutImage").is_empty());
    assert!(
        stack
            .moto
            .manifest(REGISTRY_ACCOUNT, "denied", "v1")
            .is_none()
    );
}

/// Every part stalls: each attempt times out and is retried, and timeout-minutes ends
/// the push with its own message before the test would call it a hang.
#[test]
fn the_deadline_stops_a_push_that_cannot_finish() {
    let stack = Stack::start();
    stack
        .moto
        .create_repository(REGISTRY_ACCOUNT, "stuck", false);
    let dir = tempfile::tempdir().unwrap();
    let layout = image(dir.path(), 99);
    stack
        .recorder
        .chaos(7, 100, &["UploadLayerPart"], &[Kind::Stall]);

    let run = stack
        .action()
        .env("ECR_PUSH_REQUEST_TIMEOUT_SECONDS", REQUEST_TIMEOUT)
        .input("image", &layout.reference("v1"))
        .input("repository", "stuck")
        .input("cross-account-role", PUBLISHER_ROLE)
        .input("timeout-minutes", "0.1")
        .kill_after(HANG)
        .run();

    assert_clean_failure(&run);
    assert_eq!(
        run.error(),
        "timeout-minutes: the push did not finish within 0.1 minutes and was stopped; no tag was moved to an incomplete image. Raise timeout-minutes for a slow link or a large image"
    );
    assert!(stack.recorder.calls_to("UploadLayerPart").len() >= 2);
    assert!(stack.recorder.calls_to("PutImage").is_empty());
}

/// Credentials that expire mid-push (a chained role lasts an hour at most; here STS's
/// answers are rewritten to last 15 s, and ECR refuses an expired key as AWS does): the
/// chain runs again before they expire, with a new OIDC token, and no finished blob is
/// sent twice.
#[test]
fn credentials_are_renewed_before_they_expire_without_restarting_blobs() {
    let stack = Stack::start();
    stack
        .moto
        .create_repository(REGISTRY_ACCOUNT, "long", false);
    let dir = tempfile::tempdir().unwrap();
    let layout = image(dir.path(), 111);
    stack.recorder.credentials_last(Duration::from_secs(15));
    // About 25 s of pushing: one blob at a time, every upload call answered late.
    for action in [
        "InitiateLayerUpload",
        "UploadLayerPart",
        "CompleteLayerUpload",
    ] {
        stack.recorder.delay(action, Duration::from_millis(1800));
    }

    let run = stack
        .action()
        .input("image", &layout.reference("v1"))
        .input("repository", "long")
        .input("cross-account-role", PUBLISHER_ROLE)
        .input("concurrency", "1")
        .kill_after(HANG)
        .run();

    assert!(run.ok(), "{}", run.log());
    assert!(landed(&stack, REGISTRY_ACCOUNT, "long", "v1", &layout));
    assert_eq!(stack.recorder.refused_as_expired(), 0, "{}", run.log());
    let renewals = stack.recorder.calls_to("AssumeRoleWithWebIdentity").len();
    assert!(renewals >= 2, "{renewals} web-identity assumes");
    assert!(stack.recorder.calls_to("AssumeRole").len() >= 2);
    assert!(stack.oidc.tokens().len() >= 2, "a new OIDC token each time");
    // Every blob was started once: nothing finished was sent again.
    let mut started: Vec<String> = Vec::new();
    for call in stack.recorder.calls_to("CompleteLayerUpload") {
        started.push(call.json()["layerDigests"][0].as_str().unwrap().to_owned());
    }
    assert_eq!(stack.recorder.calls_to("InitiateLayerUpload").len(), 4);
    started.sort();
    started.dedup();
    assert_eq!(started.len(), 4);
    // The new credentials were masked before use, and none was shown.
    let masks = run.masks();
    assert!(masks.len() >= 2 * 7, "{masks:?}");
    assert_nothing_shown(&run);
    assert!(
        run.log()
            .contains("renewing the credentials before they expire")
    );
}

/// ECR's quotas are shared by every job of the account: here at most two parts may be in
/// flight at once, and a third is throttled. The tool starts at four (the default
/// concurrency), halves on the first throttle and probes upwards again one at a time, so
/// most parts go through on their first attempt and the image lands whole.
#[test]
fn a_shared_quota_lowers_concurrency_instead_of_failing() {
    let stack = Stack::start();
    stack
        .moto
        .create_repository(REGISTRY_ACCOUNT, "shared", false);
    let dir = tempfile::tempdir().unwrap();
    // Forty layers of one part each.
    let parts = 40;
    let layers: Vec<Vec<u8>> = (0..parts).map(|n| random_bytes(900 + n, MIB)).collect();
    let layout = write_layout(dir.path(), "v1", &layers);
    stack.recorder.quota("UploadLayerPart", 2);
    // Each part takes a while, as over a real network, so parts overlap.
    stack
        .recorder
        .delay("UploadLayerPart", Duration::from_millis(300));

    let run = push(&stack, &layout, "shared");

    assert!(run.ok(), "{}", run.log());
    assert!(landed(&stack, REGISTRY_ACCOUNT, "shared", "v1", &layout));
    assert_uploads_whole(&stack);
    let throttled = stack
        .recorder
        .injected()
        .iter()
        .filter(|(action, _)| action == "UploadLayerPart")
        .count();
    assert!(throttled >= 1, "the quota was never reached: {}", run.log());
    assert!(
        throttled <= parts as usize / 4,
        "{throttled} of {parts} parts throttled: {}",
        run.log()
    );
    assert_eq!(stack.recorder.peak("UploadLayerPart"), 2);
    assert!(
        run.log().contains(
            "UploadLayerPart throttled by ECR (the account's quota is shared): at most 2 at once"
        ),
        "{}",
        run.log()
    );
    // The summary counts the throttles among the requests.
    let sent = stack.recorder.calls_to("UploadLayerPart").len();
    assert!(
        run.summary
            .contains(&format!("UploadLayerPart {sent} ({throttled} throttled)")),
        "{}",
        run.summary
    );
}
