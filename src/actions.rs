//! The GitHub Actions runtime contract: workflow commands on stdout (`::add-mask::`,
//! `::group::`, `::error::`) and the file commands (`$GITHUB_OUTPUT`,
//! `$GITHUB_STEP_SUMMARY`). Outside Actions the workflow commands are not printed, and
//! the files are written only when their variables are set.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::PathBuf;

#[derive(Clone, Debug)]
pub struct Runtime {
    in_actions: bool,
    output: Option<PathBuf>,
    summary: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
#[error("{what} {path}: {source}")]
pub struct Error {
    what: &'static str,
    path: PathBuf,
    source: io::Error,
}

impl Runtime {
    pub fn detect() -> Self {
        let file = |name| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        Self {
            in_actions: std::env::var("GITHUB_ACTIONS").as_deref() == Ok("true"),
            output: file("GITHUB_OUTPUT"),
            summary: file("GITHUB_STEP_SUMMARY"),
        }
    }

    pub fn in_actions(&self) -> bool {
        self.in_actions
    }

    /// A bar on a terminal; in Actions, or when stderr is a file or a pipe, lines.
    pub fn progress(&self) -> crate::progress::Style {
        use std::io::IsTerminal as _;
        if !self.in_actions && std::io::stderr().is_terminal() {
            crate::progress::Style::Bar
        } else {
            crate::progress::Style::Lines
        }
    }

    /// [`Runtime::mask`] as a function a client keeps, for the secrets it is handed
    /// later (a registry's tokens).
    pub fn masker(&self) -> impl Fn(&str) + Send + Sync + 'static {
        let runtime = self.clone();
        move |secret| runtime.mask(secret)
    }

    /// Tells the runner to hide `secret` from the log from now on. Call it before the
    /// value is used, so nothing (not even an SDK's error message) can print it first.
    pub fn mask(&self, secret: &str) {
        if !self.in_actions {
            return;
        }
        // The runner masks line by line, so a multi-line value needs a mask per line.
        let mut out = io::stdout().lock();
        for line in secret.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let _ = writeln!(out, "::add-mask::{}", escape(line));
        }
        let _ = out.flush();
    }

    /// Opens a collapsible group in the log; it closes when the guard drops.
    pub fn group(&self, title: &str) -> Group {
        if self.in_actions {
            println!("::group::{}", escape(title));
        }
        Group {
            open: self.in_actions,
        }
    }

    /// The one line a failure ends with.
    pub fn error(&self, message: &str) {
        if self.in_actions {
            println!("::error title=ecr-push::{}", escape(message));
        } else {
            eprintln!("error: {message}");
        }
    }

    /// Appends `name=value` lines to `$GITHUB_OUTPUT`.
    pub fn set_outputs(&self, outputs: &[(&str, &str)]) -> Result<(), Error> {
        let Some(path) = &self.output else {
            return Ok(());
        };
        let mut text = String::new();
        for (name, value) in outputs {
            if value.contains('\n') {
                // The multi-line form; the delimiter cannot occur in our values.
                text.push_str(&format!("{name}<<ECR_PUSH_EOF\n{value}\nECR_PUSH_EOF\n"));
            } else {
                text.push_str(&format!("{name}={value}\n"));
            }
        }
        append(path, &text).map_err(|source| Error {
            what: "writing outputs to GITHUB_OUTPUT",
            path: path.clone(),
            source,
        })
    }

    /// Appends Markdown to `$GITHUB_STEP_SUMMARY`.
    pub fn append_summary(&self, markdown: &str) -> Result<(), Error> {
        let Some(path) = &self.summary else {
            return Ok(());
        };
        append(path, markdown).map_err(|source| Error {
            what: "writing the job summary to GITHUB_STEP_SUMMARY",
            path: path.clone(),
            source,
        })
    }
}

pub struct Group {
    open: bool,
}

impl Drop for Group {
    fn drop(&mut self) {
        if self.open {
            println!("::endgroup::");
        }
    }
}

fn append(path: &PathBuf, text: &str) -> io::Result<()> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?
        .write_all(text.as_bytes())
}

/// Escapes a workflow command's message the way @actions/core does.
fn escape(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_keeps_a_command_on_one_line() {
        assert_eq!(escape("a%b\r\nc"), "a%25b%0D%0Ac");
    }
}
