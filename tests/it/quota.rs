//! Many jobs, one account: ECR's request quotas belong to the account and region, so
//! jobs pushing at once share them. Here several releases (each a buildx-style index
//! of two platforms with their attestations, three tags) go at once through the quota
//! simulator at a fraction of ECR's rates, so that PutImage's quota is met: every job
//! must still finish with every tag on its complete index, and say how often it was
//! throttled.

use crate::support::*;

const JOBS: usize = 4;
/// PutImage at 3 calls a second (ECR's 10 × 0.3), the others alike.
const SCALE: f64 = 0.3;

/// PutImage's count in the summary's Requests row: `PutImage N (T throttled)`.
fn put_image_throttles(summary: &str) -> usize {
    let Some(row) = summary.lines().find(|l| l.starts_with("| Requests |")) else {
        return 0;
    };
    row.split(", ")
        .find_map(|call| call.split("PutImage ").nth(1))
        .and_then(|rest| rest.split_once('(').map(|(_, t)| t))
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn jobs_sharing_one_accounts_quota_all_finish_and_every_tag_is_complete() {
    let stack = Stack::start();
    let quota = Quota::start(stack.recorder.port, SCALE);
    let dir = tempfile::tempdir().unwrap();
    let releases: Vec<IndexLayout> = (0..JOBS)
        .map(|n| {
            let layout = write_index_layout(
                &dir.path().join(format!("release-{n}")),
                "v1",
                &["linux/amd64", "linux/arm64"],
            );
            stack
                .moto
                .create_repository(CI_ACCOUNT, &format!("svc-{n}"), false);
            layout
        })
        .collect();

    let runs: Vec<Run> = std::thread::scope(|scope| {
        let runs: Vec<_> = releases
            .iter()
            .enumerate()
            .map(|(n, release)| {
                let action = stack
                    .action()
                    .env("AWS_ENDPOINT_URL", &quota.endpoint())
                    .input("image", &release.reference("v1"))
                    .input("repository", &format!("svc-{n}"))
                    .input("tags", &format!("v1,build-{n},latest"))
                    .kill_after(std::time::Duration::from_secs(240));
                scope.spawn(move || action.run())
            })
            .collect();
        runs.into_iter().map(|r| r.join().expect("a job")).collect()
    });

    let put = quota.counted("PutImage");
    assert!(
        put.refused > 0,
        "the jobs never met PutImage's quota of {}/s ({} admitted): the test proves nothing",
        put.quota,
        put.admitted
    );
    for (n, (run, release)) in runs.iter().zip(&releases).enumerate() {
        assert!(run.ok(), "job {n}: {}", run.log());
        assert_eq!(run.outputs["digest"], release.index.digest, "job {n}");
        for tag in ["v1", &format!("build-{n}"), "latest"] {
            let (digest, bytes) = stack
                .moto
                .manifest(CI_ACCOUNT, &format!("svc-{n}"), tag)
                .unwrap_or_else(|| panic!("job {n}: {tag} points at nothing"));
            assert_eq!(digest, release.index.digest, "job {n}: {tag}");
            assert_eq!(bytes.as_bytes(), release.index.bytes.as_slice());
        }
        for child in release.images.iter().chain(&release.attestations) {
            let stored =
                stack
                    .moto
                    .manifest_by_digest(CI_ACCOUNT, &format!("svc-{n}"), &child.digest);
            assert_eq!(
                stored.map(|(_, bytes)| bytes.into_bytes()),
                Some(child.bytes.clone()),
                "job {n}: {} missing",
                child.digest
            );
        }
    }
    // What the jobs report is what the account refused: each throttle counted once.
    let reported: usize = runs.iter().map(|r| put_image_throttles(&r.summary)).sum();
    assert_eq!(
        reported, put.refused,
        "the summaries' PutImage throttles against the simulator's refusals"
    );
    // No second of the run saw more PutImage calls admitted than the bucket allows:
    // its refill at the quota, plus the one second it holds.
    let most_in_a_second = put
        .times
        .iter()
        .map(|t| {
            put.times
                .iter()
                .filter(|u| **u >= *t && **u < t + 1.0)
                .count()
        })
        .max()
        .unwrap_or(0);
    assert!(
        most_in_a_second as f64 <= 2.0 * put.quota + 1.0,
        "{most_in_a_second} PutImage calls admitted within one second at a quota of {}/s",
        put.quota
    );
}
