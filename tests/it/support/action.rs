//! The binary under test, run as the Actions runner runs a container action (or bare,
//! as on a laptop, or on a pseudo-terminal), and what one run left behind.

use std::collections::HashMap;
use std::io::Read;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::{OWNER_ID, OidcEndpoint, PUSH_ROLE, REGION, REPO_ID, REQUEST_TOKEN, Recorder};

/// The outputs of a GITHUB_OUTPUT file, read as the runner reads it: `NAME=VALUE`
/// lines, and `NAME<<DELIMITER` followed by the value's lines and the delimiter.
pub fn parse_outputs(text: &str) -> HashMap<String, String> {
    let mut outputs = HashMap::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        // As the runner decides: whichever of `=` and `<<` comes first.
        let heredoc = line
            .find("<<")
            .filter(|at| line.find('=').is_none_or(|eq| *at < eq));
        if let Some(at) = heredoc {
            let (name, delimiter) = (&line[..at], &line[at + 2..]);
            let value: Vec<&str> = lines.by_ref().take_while(|l| *l != delimiter).collect();
            outputs.insert(name.to_owned(), value.join("\n"));
        } else if let Some((name, value)) = line.split_once('=') {
            outputs.insert(name.to_owned(), value.to_owned());
        }
    }
    outputs
}

/// What one run of the binary left behind.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub outputs: HashMap<String, String>,
    pub output_file: String,
    pub summary: String,
    pub home: tempfile::TempDir,
    /// When the process (or container) was started.
    pub started: Instant,
}

impl Run {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// The `::error::` line's message, or stderr's `error:` line.
    pub fn error(&self) -> String {
        self.stdout
            .lines()
            .chain(self.stderr.lines())
            .find_map(|l| {
                l.split_once("::error")
                    .map(|(_, rest)| rest.split_once("::").map(|x| x.1).unwrap_or(rest))
                    .or_else(|| l.strip_prefix("error: "))
            })
            .unwrap_or_default()
            .to_owned()
    }

    /// Every value the tool asked the runner to mask.
    pub fn masks(&self) -> Vec<String> {
        self.stdout
            .lines()
            .filter_map(|l| l.strip_prefix("::add-mask::"))
            .map(str::to_owned)
            .collect()
    }

    /// Whether `secret` appears anywhere the process wrote (stdout, stderr, outputs,
    /// summary) other than the `::add-mask::` command that hides it.
    pub fn shows(&self, secret: &str) -> bool {
        let stdout: Vec<&str> = self
            .stdout
            .lines()
            .filter(|l| !l.starts_with("::add-mask::"))
            .collect();
        stdout.join("\n").contains(secret)
            || self.stderr.contains(secret)
            || self.summary.contains(secret)
            || self.outputs.values().any(|v| v.contains(secret))
    }

    pub fn log(&self) -> String {
        format!("--- stdout\n{}--- stderr\n{}", self.stdout, self.stderr)
    }
}

/// The binary, run the way the Actions runner runs a container action: inputs as
/// `INPUT_*` variables, the ID-token variables, and the file-command files.
pub struct Action {
    pub(super) env: Vec<(String, String)>,
    pub(super) args: Vec<String>,
    /// Fail the test if the process runs longer (a hang).
    kill_after: Option<Duration>,
    /// Run on a pseudo-terminal (through util-linux's `script`), as on a laptop; what
    /// the terminal showed comes back as stdout.
    terminal: bool,
}

impl Action {
    pub fn new(recorder: &Recorder, oidc: &OidcEndpoint) -> Self {
        let mut action = Self::bare(recorder);
        action.env.push(("GITHUB_ACTIONS".into(), "true".into()));
        action
            .env
            .push(("ACTIONS_ID_TOKEN_REQUEST_URL".into(), oidc.url()));
        action.env.push((
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN".into(),
            REQUEST_TOKEN.into(),
        ));
        action
            .input("aws-region", REGION)
            .input("role-to-assume", PUSH_ROLE)
    }

    /// No Actions variables at all: the command line on a laptop.
    pub fn bare(recorder: &Recorder) -> Self {
        Self {
            env: vec![
                ("AWS_ENDPOINT_URL".into(), recorder.endpoint()),
                ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
                ("GITHUB_REPOSITORY".into(), "octo-org/octo-repo".into()),
                ("GITHUB_REPOSITORY_OWNER_ID".into(), OWNER_ID.into()),
                ("GITHUB_REPOSITORY_ID".into(), REPO_ID.into()),
                (
                    "GITHUB_SHA".into(),
                    "0123456789abcdef0123456789abcdef01234567".into(),
                ),
                ("GITHUB_ACTOR".into(), "octocat".into()),
                ("GITHUB_WORKFLOW".into(), "release (prod)".into()),
                ("GITHUB_REF_NAME".into(), "main".into()),
                ("GITHUB_RUN_ID".into(), "42".into()),
            ],
            args: Vec::new(),
            kill_after: None,
            terminal: false,
        }
    }

    /// On a pseudo-terminal: stdout and stderr are a terminal, and `Run::stdout` is
    /// what it showed, control codes included.
    pub fn in_terminal(mut self) -> Self {
        self.terminal = true;
        self
    }

    /// A run longer than `limit` is a hang: the process is killed and the test fails.
    pub fn kill_after(mut self, limit: Duration) -> Self {
        self.kill_after = Some(limit);
        self
    }

    pub fn input(mut self, name: &str, value: &str) -> Self {
        self.env
            .push((format!("INPUT_{}", name.to_uppercase()), value.to_owned()));
        self
    }

    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn without(mut self, name: &str) -> Self {
        self.env.retain(|(k, _)| k != name);
        self
    }

    pub fn args(mut self, args: &[&str]) -> Self {
        self.args = args.iter().map(|a| (*a).to_owned()).collect();
        self
    }

    pub fn run(self) -> Run {
        let home = tempfile::tempdir().expect("temp home");
        let output_file = home.path().join("github_output");
        let summary_file = home.path().join("step_summary");
        let mut command = if self.terminal {
            let quoted: Vec<String> = std::iter::once(env!("CARGO_BIN_EXE_ecr-push"))
                .chain(self.args.iter().map(String::as_str))
                .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
                .collect();
            let mut script = Command::new("script");
            script.args([
                "--quiet",
                "--return",
                "--flush",
                "--command",
                &quoted.join(" "),
                "/dev/null",
            ]);
            script
        } else {
            let mut command = Command::new(env!("CARGO_BIN_EXE_ecr-push"));
            command.args(&self.args);
            command
        };
        command.env_clear();
        if let Some(path) = std::env::var_os("PATH") {
            command.env("PATH", path);
        }
        command
            .env("HOME", home.path())
            .env("GITHUB_OUTPUT", &output_file)
            .env("GITHUB_STEP_SUMMARY", &summary_file)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        let started = Instant::now();
        let output = match self.kill_after {
            None => command.output().expect("run ecr-push"),
            Some(limit) => {
                let mut child = command
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("run ecr-push");
                // Drain both pipes while waiting, so a chatty run cannot block on them.
                let mut stdout = child.stdout.take().expect("stdout");
                let mut stderr = child.stderr.take().expect("stderr");
                let out = thread::spawn(move || {
                    let mut b = Vec::new();
                    let _ = stdout.read_to_end(&mut b);
                    b
                });
                let err = thread::spawn(move || {
                    let mut b = Vec::new();
                    let _ = stderr.read_to_end(&mut b);
                    b
                });
                let status = loop {
                    if let Some(status) = child.try_wait().expect("wait") {
                        break status;
                    }
                    if started.elapsed() > limit {
                        let _ = child.kill();
                        let _ = child.wait();
                        panic!(
                            "ecr-push hung: still running after {} s\n{}",
                            limit.as_secs(),
                            String::from_utf8_lossy(&out.join().unwrap_or_default())
                        );
                    }
                    thread::sleep(Duration::from_millis(20));
                };
                std::process::Output {
                    status,
                    stdout: out.join().unwrap_or_default(),
                    stderr: err.join().unwrap_or_default(),
                }
            }
        };
        let output_text = std::fs::read_to_string(&output_file).unwrap_or_default();
        let outputs = parse_outputs(&output_text);
        Run {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            outputs,
            output_file: output_text,
            summary: std::fs::read_to_string(&summary_file).unwrap_or_default(),
            home,
            started,
        }
    }
}
