//! The action's image as users get it: the Dockerfile's runtime stage around the static
//! binary `scripts/lib/static-build` makes, built and run by the Docker CLI through
//! podman's Docker API, with the mounts, variables and working folder the Actions runner
//! gives a container action.

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use super::{Action, Daemon, Run, root};

/// The static binary: `ECR_PUSH_STATIC_BINARY`, else where scripts/lib/static-build
/// leaves it.
fn static_binary() -> PathBuf {
    let path = std::env::var_os("ECR_PUSH_STATIC_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            root().join(format!(
                "target/{}-unknown-linux-gnu/release/ecr-push",
                std::env::consts::ARCH
            ))
        });
    assert!(
        path.exists(),
        "{} is missing: scripts/test builds it (scripts/lib/static-build)",
        path.display()
    );
    path
}

/// The Dockerfile's last stage, reading its files from the build context instead of
/// the build stage.
fn runtime_stage() -> String {
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).expect("Dockerfile");
    let start = dockerfile
        .rfind("\nFROM scratch")
        .expect("the Dockerfile's runtime stage is FROM scratch");
    let stage = &dockerfile[start + 1..];
    assert!(stage.contains("COPY --from=build /out/ /"), "{stage}");
    stage.replace("COPY --from=build /out/ /", "COPY out/ /")
}

/// The image, in a podman service of its own.
pub struct ActionImage {
    pub daemon: Daemon,
    pub tag: &'static str,
    config: tempfile::TempDir,
}

impl ActionImage {
    pub fn build() -> Self {
        let daemon = Daemon::start();
        let context = tempfile::tempdir().unwrap();
        let status = Command::new(root().join("scripts/lib/runtime-root"))
            .arg(context.path().join("out"))
            .arg(static_binary())
            .status()
            .expect("scripts/lib/runtime-root runs");
        assert!(status.success());
        std::fs::write(context.path().join("Dockerfile"), runtime_stage()).unwrap();
        let image = Self {
            daemon,
            tag: "ecr-push:test",
            config: tempfile::tempdir().unwrap(),
        };
        let built = image.docker(&[
            "build",
            "--quiet",
            "--tag",
            image.tag,
            context.path().to_str().unwrap(),
        ]);
        assert!(built.status.success(), "docker build: {}", text(&built));
        image
    }

    /// The docker CLI against this image's podman service (the legacy builder: the
    /// service has no BuildKit).
    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .arg("--host")
            .arg(self.daemon.docker_host())
            .args(args)
            .env("DOCKER_CONFIG", self.config.path())
            .env("DOCKER_BUILDKIT", "0")
            .output()
            .expect("the docker CLI runs")
    }

    /// The image's size, as `docker image inspect` reports it.
    pub fn size(&self) -> u64 {
        let inspect = self.docker(&["image", "inspect", "--format", "{{.Size}}", self.tag]);
        assert!(inspect.status.success(), "{}", text(&inspect));
        String::from_utf8_lossy(&inspect.stdout)
            .trim()
            .parse()
            .expect("a size")
    }
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

impl Action {
    /// Runs the action in `image` as the runner does: `docker run` with the workspace at
    /// /github/workspace (also the working folder), the file-command files and the home
    /// folder mounted, the inputs as `INPUT_*` variables, the engine's socket at
    /// /var/run/docker.sock, and the host's network to reach the stack on loopback.
    /// `options` go to `docker run` before the image (`--user`, `--read-only`, …).
    pub fn run_in(self, image: &ActionImage, workspace: &Path, options: &[&str]) -> Run {
        use std::os::unix::fs::PermissionsExt as _;
        let temp = tempfile::tempdir().unwrap();
        let commands = temp.path().join("_runner_file_commands");
        let home = temp.path().join("_github_home");
        for dir in [&commands, &home] {
            std::fs::create_dir(dir).unwrap();
            // Writable by the unprivileged user of a --user run, as the runner's are.
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        let (output_name, summary_name) = ("set_output_4f0c", "step_summary_4f0c");
        for name in [output_name, summary_name] {
            std::fs::write(commands.join(name), "").unwrap();
            std::fs::set_permissions(commands.join(name), std::fs::Permissions::from_mode(0o666))
                .unwrap();
        }
        let mount = |host: &Path, inside: &str| format!("{}:{inside}", host.display());
        // As the runner, but --rm: podman's Docker API loses a container's exit code
        // when it removes the container as it exits (every run then ended 0), so the
        // container is named, waited on by `run`, and removed after.
        let name = format!(
            "ecr-push-{}",
            temp.path().file_name().unwrap().to_string_lossy()
        );
        let name = name
            .to_ascii_lowercase()
            .replace(|c: char| !c.is_ascii_alphanumeric(), "-");
        let mut args: Vec<String> = [
            "run",
            "--name",
            &name,
            "--network",
            "host",
            "--workdir",
            "/github/workspace",
        ]
        .map(str::to_owned)
        .to_vec();
        for volume in [
            mount(image.daemon.socket(), "/var/run/docker.sock"),
            mount(&home, "/github/home"),
            mount(&commands, "/github/file_commands"),
            mount(workspace, "/github/workspace"),
        ] {
            args.extend(["--volume".to_owned(), volume]);
        }
        let variables = [
            ("HOME", "/github/home".to_owned()),
            (
                "GITHUB_OUTPUT",
                format!("/github/file_commands/{output_name}"),
            ),
            (
                "GITHUB_STEP_SUMMARY",
                format!("/github/file_commands/{summary_name}"),
            ),
            ("GITHUB_WORKSPACE", "/github/workspace".to_owned()),
            ("RUNNER_TEMP", temp.path().display().to_string()),
            ("CI", "true".to_owned()),
        ];
        for (name, value) in variables
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .chain(self.env.iter().cloned())
        {
            args.extend(["--env".to_owned(), format!("{name}={value}")]);
        }
        args.extend(options.iter().map(|o| (*o).to_owned()));
        args.push(image.tag.to_owned());
        args.extend(self.args.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let started = std::time::Instant::now();
        let output = image.docker(&args);
        let removed = image.docker(&["rm", "--force", &name]);
        assert!(removed.status.success(), "docker rm: {}", text(&removed));
        let output_text = std::fs::read_to_string(commands.join(output_name)).unwrap_or_default();
        Run {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            outputs: super::parse_outputs(&output_text),
            output_file: output_text,
            summary: std::fs::read_to_string(commands.join(summary_name)).unwrap_or_default(),
            home: temp,
            started,
        }
    }
}

/// A DNS server on 127.0.0.77:53 (UDP) that answers every A question with 127.0.0.1
/// and every other with no record, and records the names asked: a container whose
/// resolv.conf names it resolves public-looking names the way a runner's would, over
/// DNS, with no name leaving the machine. resolv.conf takes no port, so the address is
/// fixed: the drop frees it for the next test that starts one (two at once collide).
pub struct Dns {
    names: Arc<Mutex<Vec<String>>>,
    dir: tempfile::TempDir,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

const DNS_ADDRESS: &str = "127.0.0.77";

impl Dns {
    pub fn start() -> Self {
        let socket = UdpSocket::bind((DNS_ADDRESS, 53)).expect("UDP 127.0.0.77:53");
        // How soon the server sees it is stopped.
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let names = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen, stopped) = (Arc::clone(&names), Arc::clone(&stop));
        let thread = thread::spawn(move || {
            let mut buffer = [0u8; 512];
            while !stopped.load(Ordering::SeqCst) {
                let Ok((n, peer)) = socket.recv_from(&mut buffer) else {
                    continue;
                };
                if let Some((answer, name)) = dns_answer(&buffer[..n]) {
                    seen.lock().unwrap().push(name);
                    let _ = socket.send_to(&answer, peer);
                }
            }
        });
        Self {
            names,
            dir: tempfile::tempdir().unwrap(),
            stop,
            thread: Some(thread),
        }
    }

    /// A resolv.conf naming this server, to mount at /etc/resolv.conf.
    pub fn resolv_conf(&self) -> PathBuf {
        let path = self.dir.path().join("resolv.conf");
        std::fs::write(&path, format!("nameserver {DNS_ADDRESS}\n")).unwrap();
        path
    }

    /// The names asked for, in order.
    pub fn names(&self) -> Vec<String> {
        self.names.lock().unwrap().clone()
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The answer to one DNS query, and the name it asked for.
fn dns_answer(query: &[u8]) -> Option<(Vec<u8>, String)> {
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = *query.get(at)? as usize;
        at += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(at..at + len)?).into_owned());
        at += len;
    }
    let qtype = u16::from_be_bytes([*query.get(at)?, *query.get(at + 1)?]);
    let question = query.get(12..at + 4)?;
    let is_a = qtype == 1;
    let mut answer = Vec::with_capacity(64);
    answer.extend_from_slice(&query[..2]); // id
    answer.extend_from_slice(&[0x81, 0x80]); // response, recursion desired and available
    answer.extend_from_slice(&[0, 1, 0, u8::from(is_a), 0, 0, 0, 0]);
    answer.extend_from_slice(question);
    if is_a {
        // The name by pointer to the question, A, IN, TTL 60, 4 bytes: 127.0.0.1.
        answer.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1]);
    }
    Some((answer, labels.join(".")))
}
