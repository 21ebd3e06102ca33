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

/// The action runs the image of its own version: a release bumps Cargo.toml and
/// action.yml together (release.yml refuses a tag that action.yml does not name).
#[test]
fn the_action_runs_the_published_image_of_this_version() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/action.yml"))
        .expect("action.yml");
    let image = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("image: "))
        .expect("runs.image in action.yml");
    assert_eq!(
        image,
        format!(
            "docker://ghcr.io/OWNER/ecr-push:v{}",
            env!("CARGO_PKG_VERSION")
        )
    );
}
