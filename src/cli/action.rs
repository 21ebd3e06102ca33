//! Action mode: the `INPUT_*` variables the runner sets become `push --NAME=VALUE`
//! flags, and clap's errors are told back in the inputs' names.

use std::ffi::OsString;

use clap::CommandFactory as _;

use super::Cli;

/// A command-line parse error as an action's user reads it: every line that says
/// something (not the usage line or the `--help` hint), on one line for one
/// annotation, and with `as_inputs` (the arguments came from `INPUT_*`) flags named as
/// the inputs they are (`--image <REFERENCE>` is `image`).
pub fn for_actions(rendered: &str, as_inputs: bool) -> String {
    let mut parts: Vec<String> = Vec::new();
    for line in rendered.lines().map(str::trim) {
        if line.is_empty() || line.starts_with("Usage:") || line.starts_with("For more information")
        {
            continue;
        }
        let line = line.trim_start_matches("error: ");
        if !as_inputs {
            parts.push(line.to_owned());
            continue;
        }
        let mut out = String::new();
        let mut rest = line;
        while let Some(start) = rest.find("--") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                .unwrap_or(after.len());
            out.push_str(&after[..end]);
            rest = &after[end..];
            // The value placeholder that follows a flag: ` <REFERENCE>`, ` [<BOOL>]`.
            for (open, close) in [(" <", ">"), (" [<", ">]")] {
                if let Some(placeholder) = rest.strip_prefix(open)
                    && let Some(end) = placeholder.find(close)
                {
                    rest = &placeholder[end + close.len()..];
                }
            }
        }
        out.push_str(rest);
        parts.push(
            out.replace("arguments were not provided", "inputs were not provided")
                .replace("unexpected argument", "unexpected input")
                .replace("similar argument exists", "similar input exists"),
        );
    }
    // "…not provided:" followed by the names, one a line: one list.
    let mut text = String::new();
    for part in parts {
        if text.is_empty() {
            text = part;
        } else if text.ends_with(':') {
            text = format!("{text} {part}");
        } else if text.contains("were not provided:") && !part.contains(' ') {
            text = format!("{text}, {part}");
        } else {
            text = format!("{text}; {part}");
        }
    }
    text
}

/// The arguments to parse: the process's own, or in action mode (`GITHUB_ACTIONS=true`
/// and no arguments) the `INPUT_*` variables as `push --NAME=VALUE` flags.
pub fn args(lookup: impl Fn(&str) -> Option<String>) -> Vec<OsString> {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    if from_inputs(args.len(), &lookup) {
        args.extend(action_args(&lookup));
    }
    args
}

/// Whether the arguments come from the action's `INPUT_*` variables: in Actions, with
/// no arguments of the process's own (`argc` counts the program).
pub fn from_inputs(argc: usize, lookup: &impl Fn(&str) -> Option<String>) -> bool {
    argc == 1 && lookup("GITHUB_ACTIONS").as_deref() == Some("true")
}

/// Every long flag of `push` whose `INPUT_NAME` variable is set. Empty inputs are left
/// out, as the runner passes every declared input, set or not.
fn action_args(lookup: &impl Fn(&str) -> Option<String>) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["push".into()];
    let command = Cli::command();
    let names = command
        .find_subcommand("push")
        .into_iter()
        .flat_map(|push| push.get_arguments().filter_map(|a| a.get_long()));
    // A re-run with debug logging turns on verbose whatever the input says; the
    // runner always passes INPUT_VERBOSE, so the flag is replaced, not repeated.
    let debug = lookup("RUNNER_DEBUG").as_deref() == Some("1");
    for name in names {
        let value = match lookup(&format!("INPUT_{}", name.to_uppercase())) {
            _ if debug && name == "verbose" => Some("true".to_owned()),
            value => value,
        };
        if let Some(value) = value.filter(|v| !v.trim().is_empty()) {
            args.push(format!("--{name}={}", value.trim()).into());
        }
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_name_inputs_in_actions() {
        let missing = "error: the following required arguments were not provided:\n  --image <REFERENCE>\n  --repository <NAME>\n\nUsage: ecr-push push --image <REFERENCE> --repository <NAME>\n\nFor more information, try '--help'.\n";
        assert_eq!(
            for_actions(missing, true),
            "the following required inputs were not provided: image, repository"
        );
        let typo = "error: unexpected argument '--repostory' found\n\n  tip: a similar argument exists: '--repository'\n\nUsage: ecr-push push --image <REFERENCE> --repository <NAME>\n\nFor more information, try '--help'.\n";
        assert_eq!(
            for_actions(typo, true),
            "unexpected input 'repostory' found; tip: a similar input exists: 'repository'"
        );
        let value = "error: invalid value 'soon' for '--timeout-minutes <MINUTES>': invalid float literal\n\nFor more information, try '--help'.\n";
        assert_eq!(
            for_actions(value, true),
            "invalid value 'soon' for 'timeout-minutes': invalid float literal"
        );
        // Flags a `run:` step typed stay flags.
        assert_eq!(
            for_actions(typo, false),
            "unexpected argument '--repostory' found; tip: a similar argument exists: '--repository'"
        );
    }

    #[test]
    fn every_flag_reads_its_input_variable() {
        let env = |name: &str| match name {
            "GITHUB_ACTIONS" => Some("true".to_owned()),
            "INPUT_ROLE-TO-ASSUME" => Some(" arn:aws:iam::111111111111:role/ci ".to_owned()),
            "INPUT_IMAGE" => Some("oci:dir".to_owned()),
            "INPUT_TAGS" => Some(String::new()),
            "INPUT_DOCKER-LOGIN" => Some("false".to_owned()),
            "INPUT_VERBOSE" => Some("false".to_owned()),
            "RUNNER_DEBUG" => Some("1".to_owned()),
            _ => None,
        };
        let args = action_args(&env);
        assert_eq!(
            args,
            [
                "push",
                "--image=oci:dir",
                "--role-to-assume=arn:aws:iam::111111111111:role/ci",
                "--docker-login=false",
                "--verbose=true"
            ]
        );
    }
}
