//! `action.yml` and the command line describe the same inputs: every input is a long
//! flag of `ecr-push push` with the same default, and every flag is an input.

use std::collections::BTreeMap;
use std::process::Command;

/// `inputs:` of action.yml as name → default (None when it has none). The file is
/// ours and regular, so a line scan is enough and needs no YAML crate.
fn action_inputs() -> BTreeMap<String, Option<String>> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/action.yml"))
        .expect("action.yml");
    let mut inputs = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut in_inputs = false;
    for line in text.lines() {
        if !line.starts_with(' ') && !line.is_empty() && !line.starts_with('#') {
            in_inputs = line == "inputs:";
            continue;
        }
        if !in_inputs {
            continue;
        }
        if let Some(name) = line.strip_prefix("  ").and_then(|l| l.strip_suffix(':')) {
            if !name.starts_with(' ') {
                inputs.insert(name.to_owned(), None);
                current = Some(name.to_owned());
            }
        } else if let Some(default) = line.trim().strip_prefix("default:") {
            let default = default
                .trim()
                .trim_matches(|c| c == '\'' || c == '"')
                .to_owned();
            inputs.insert(
                current.clone().expect("default under an input"),
                Some(default),
            );
        }
    }
    inputs
}

/// The long flags of `push --help` and their `[default: …]`.
fn flags() -> BTreeMap<String, Option<String>> {
    let help = Command::new(env!("CARGO_BIN_EXE_ecr-push"))
        .args(["push", "--help"])
        .output()
        .expect("ecr-push push --help");
    assert!(help.status.success());
    let help = String::from_utf8(help.stdout).expect("UTF-8 help");
    let mut flags = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in help.lines() {
        let trimmed = line.trim_start();
        let long = trimmed
            .strip_prefix("-v, ")
            .unwrap_or(trimmed)
            .strip_prefix("--")
            .filter(|_| trimmed.starts_with("--") || trimmed.starts_with("-v, --"));
        if let Some(long) = long {
            let name: String = long
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '-')
                .collect();
            if name != "help" {
                flags.insert(name.clone(), None);
                current = Some(name);
            }
        }
        if let (Some(name), Some((_, rest))) = (&current, line.split_once("[default: ")) {
            let default = rest.split(']').next().unwrap_or_default().to_owned();
            flags.insert(name.clone(), Some(default));
        }
    }
    flags
}

#[test]
fn every_input_is_a_flag_with_the_same_default() {
    let inputs = action_inputs();
    let flags = flags();
    assert!(inputs.len() >= 10, "{inputs:?}");
    assert_eq!(
        inputs.keys().collect::<Vec<_>>(),
        flags.keys().collect::<Vec<_>>(),
        "action.yml inputs and push flags differ"
    );
    for (name, default) in &flags {
        if let Some(default) = default {
            assert_eq!(inputs[name].as_ref(), Some(default), "default of {name}");
        }
    }
}

/// Before a release the action builds its Dockerfile (from main, a branch or a fork);
/// a release commit names the image release.yml published for that version, and the
/// version's tags, with the major and minor ones, move to it. The script that writes
/// the release commit is the one release.yml runs.
#[test]
fn a_release_names_its_published_image_and_moves_its_major_and_minor_tags() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let action = std::fs::read_to_string(root.join("action.yml")).expect("action.yml");
    let image_line = |text: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix("image: ").map(str::to_owned))
            .expect("runs.image in action.yml")
    };
    assert_eq!(
        image_line(&action),
        "Dockerfile",
        "main builds the Dockerfile"
    );

    let copy = tempfile::tempdir().unwrap();
    std::fs::write(copy.path().join("action.yml"), &action).unwrap();
    std::fs::copy(root.join("Cargo.toml"), copy.path().join("Cargo.toml")).unwrap();
    std::fs::create_dir_all(copy.path().join("scripts/lib")).unwrap();
    let script = copy.path().join("scripts/lib/release-action");
    std::fs::copy(root.join("scripts/lib/release-action"), &script).unwrap();
    let version = env!("CARGO_PKG_VERSION");
    let (major, minor) = {
        let mut parts = version.split('.');
        (parts.next().unwrap(), parts.next().unwrap())
    };
    let run = |tag: &str| {
        std::process::Command::new(&script)
            .args(["Octo-Org/ecr-push", tag])
            .output()
            .unwrap()
    };
    let output = run(&format!("v{version}"));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("v{version} v{major} v{major}.{minor}")
    );
    let released = std::fs::read_to_string(copy.path().join("action.yml")).unwrap();
    assert_eq!(
        image_line(&released),
        format!("docker://ghcr.io/octo-org/ecr-push:v{version}")
    );
    let changed: Vec<(&str, &str)> = action
        .lines()
        .zip(released.lines())
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(changed.len(), 1, "only runs.image changes: {changed:?}");
    assert_eq!(action.lines().count(), released.lines().count());
    // A tag that is not this version, or not a version, is refused.
    for wrong in ["v9.9.9", "latest", &format!("v{major}")] {
        let output = run(wrong);
        assert_eq!(output.status.code(), Some(2), "{wrong}");
    }
    // release.yml runs that script, and pushes each tag it prints.
    let release = std::fs::read_to_string(root.join(".github/workflows/release.yml")).unwrap();
    assert!(
        release.contains(
            r#"tags=$(scripts/lib/release-action "$GITHUB_REPOSITORY" "$GITHUB_REF_NAME")"#
        )
    );
    assert!(release.contains(r#"git push --force origin "refs/tags/$tag""#));
    assert!(
        release.contains("needs: [action-image, action]"),
        "the GitHub release waits for the tags"
    );
}

/// Every `with:` key of a step that uses the action, in every example and in the
/// README's YAML, is an input of action.yml: a renamed or mistyped input in an example
/// would be ignored by the runner with only a warning.
#[test]
fn every_example_uses_only_inputs_the_action_has() {
    let inputs = action_inputs();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(root.join("examples"))
        .expect("examples/")
        .map(|e| e.expect("an entry").path())
        .collect();
    files.push(root.join("README.md"));
    let mut checked = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable");
        let lines: Vec<&str> = text.lines().collect();
        for (at, line) in lines.iter().enumerate() {
            if !line
                .trim_start()
                .trim_start_matches("- ")
                .starts_with("uses: OWNER/ecr-push")
            {
                continue;
            }
            // `with:` follows `uses:`, its keys indented one level further.
            let Some(with) = lines[at + 1..]
                .iter()
                .take_while(|l| !l.trim().is_empty())
                .position(|l| l.trim() == "with:")
            else {
                continue;
            };
            let with_line = lines[at + 1 + with];
            let indent = with_line.len() - with_line.trim_start().len();
            for key_line in lines[at + 2 + with..].iter().take_while(|l| {
                let trimmed = l.trim_start();
                !trimmed.is_empty() && l.len() - trimmed.len() > indent
            }) {
                let key_indent = key_line.len() - key_line.trim_start().len();
                let Some((key, _)) = key_line.trim().split_once(':') else {
                    continue;
                };
                // Keys at the first level under `with:`, not a block value's lines.
                if key_indent != indent + 2 || key.contains(' ') {
                    continue;
                }
                assert!(
                    inputs.contains_key(key),
                    "{}:{}: `{key}` is not an input of action.yml",
                    file.display(),
                    at + 1
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 30, "only {checked} inputs found in the examples");
}
