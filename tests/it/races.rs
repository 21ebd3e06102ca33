//! Many jobs, one tag: twelve pushes of twelve different images into one repository at
//! once, each with a tag of its own and the shared `latest`, as a monorepo's fan-out
//! or a branch's concurrent runs do. Whatever the interleaving, every job ends with a
//! clear result and every tag points at a complete image: in a mutable repository each
//! push succeeds and `latest` ends on one of them; in an immutable one exactly one push
//! gets `latest`, and every other says which image holds it and which tags it did write.

use crate::support::*;

const PUSHES: usize = 12;

/// Twelve small images, each a layer of its own beside a shared base layer.
fn images(dir: &std::path::Path) -> Vec<Layout> {
    let base = random_bytes(180, 96 * 1024);
    (0..PUSHES)
        .map(|n| {
            let own = random_bytes(181 + n as u64, 32 * 1024 + n);
            write_layout(&dir.join(format!("image-{n}")), "v1", &[base.clone(), own])
        })
        .collect()
}

/// All twelve at once, each tagging `build-N` then `latest`.
fn push_all(stack: &Stack, layouts: &[Layout]) -> Vec<Run> {
    std::thread::scope(|scope| {
        let runs: Vec<_> = layouts
            .iter()
            .enumerate()
            .map(|(n, layout)| {
                scope.spawn(move || {
                    stack
                        .action()
                        .input("image", &layout.reference("v1"))
                        .input("repository", "shared")
                        .input("tags", &format!("build-{n},latest"))
                        .kill_after(std::time::Duration::from_secs(240))
                        .run()
                })
            })
            .collect();
        runs.into_iter()
            .map(|run| run.join().expect("a push thread"))
            .collect()
    })
}

/// `tag` points at one of the pushed images, and every blob of that image is there.
fn assert_complete(stack: &Stack, tag: &str, layouts: &[Layout]) -> usize {
    let (digest, bytes) = stack
        .moto
        .manifest(CI_ACCOUNT, "shared", tag)
        .unwrap_or_else(|| panic!("{tag} points at nothing"));
    let at = layouts
        .iter()
        .position(|l| l.digest == digest)
        .unwrap_or_else(|| panic!("{tag} points at {digest}, which no push sent"));
    assert_eq!(bytes.as_bytes(), layouts[at].manifest.as_slice());
    let digests = layouts[at].blob_digests();
    let available = stack.moto.available_blobs(CI_ACCOUNT, "shared", &digests);
    for digest in &digests {
        assert!(
            available.contains_key(digest),
            "{tag}: blob {digest} missing"
        );
    }
    at
}

#[test]
fn twelve_pushes_to_one_mutable_tag_all_succeed_and_it_ends_on_a_complete_image() {
    let stack = Stack::start();
    stack.moto.create_repository(CI_ACCOUNT, "shared", false);
    let dir = tempfile::tempdir().unwrap();
    let layouts = images(dir.path());

    let runs = push_all(&stack, &layouts);

    for (n, run) in runs.iter().enumerate() {
        assert!(run.ok(), "push {n}: {}", run.log());
        assert_eq!(run.outputs["digest"], layouts[n].digest, "push {n}");
        assert_eq!(assert_complete(&stack, &format!("build-{n}"), &layouts), n);
    }
    assert_complete(&stack, "latest", &layouts);
}

#[test]
fn twelve_pushes_to_one_immutable_tag_one_wins_and_each_other_names_the_holder() {
    let stack = Stack::start();
    stack.moto.create_repository(CI_ACCOUNT, "shared", true);
    let dir = tempfile::tempdir().unwrap();
    let layouts = images(dir.path());

    let runs = push_all(&stack, &layouts);

    let winner = assert_complete(&stack, "latest", &layouts);
    let holder = &layouts[winner].digest;
    for (n, run) in runs.iter().enumerate() {
        // Each push's own tag is written first, whatever happens to `latest`.
        assert_eq!(assert_complete(&stack, &format!("build-{n}"), &layouts), n);
        if n == winner {
            assert!(run.ok(), "the winner, push {n}: {}", run.log());
            continue;
        }
        assert_eq!(run.code, Some(1), "push {n}: {}", run.log());
        let error = run.error();
        assert!(
            error.contains("tag `latest` of immutable repository shared already points at")
                && error.contains(holder.as_str()),
            "push {n} does not name the image holding latest: {error}"
        );
        assert!(
            error.contains(&format!(
                "tags already set on {}: build-{n}",
                layouts[n].digest
            )),
            "push {n} does not say which tag it wrote: {error}"
        );
    }
    assert_eq!(runs.iter().filter(|r| r.ok()).count(), 1);
}
