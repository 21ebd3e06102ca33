//! A real Docker Engine API server: podman's `system service`, on a unix socket, with
//! its own storage in a temporary folder so tests do not share images. It runs no
//! container; the tests load images into it and the tool exports them.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Daemon {
    child: Child,
    socket: PathBuf,
    dir: tempfile::TempDir,
}

impl Daemon {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path();
        // runc and cgroupfs: crun and systemd cgroups fail on this kernel's hybrid
        // cgroups; the file event logger needs no journald.
        std::fs::write(
            root.join("containers.conf"),
            "[containers]\ndefault_ulimits = [\"nofile=20000:20000\", \"nproc=32768:32768\"]\n\
             [engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n",
        )
        .unwrap();
        std::fs::write(
            root.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"vfs\"\nrunroot = \"{}\"\ngraphroot = \"{}\"\n",
                root.join("run").display(),
                root.join("graph").display()
            ),
        )
        .unwrap();
        let socket = root.join("docker.sock");
        let child = Command::new("podman")
            .args(["--log-level=error", "system", "service", "--time=0"])
            .arg(format!("unix://{}", socket.display()))
            .env("CONTAINERS_CONF", root.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", root.join("storage.conf"))
            .env("XDG_RUNTIME_DIR", root.join("xdg"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(root.join("service.log")).unwrap())
            .spawn()
            .expect("podman starts (scripts/test installs it)");
        let daemon = Self { child, socket, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((200, _)) = daemon.request("GET", "/_ping", None) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "podman system service did not answer: {}",
                std::fs::read_to_string(daemon.dir.path().join("service.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        daemon
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// Loads a `docker save` archive, as `docker load` does.
    pub fn load(&self, archive: &Path) {
        let body = std::fs::read(archive).expect("read archive");
        let (status, answer) = self
            .request("POST", "/images/load", Some(&body))
            .expect("images/load");
        assert_eq!(
            status,
            200,
            "images/load: {}",
            String::from_utf8_lossy(&answer)
        );
    }

    /// The names of the images the engine lists.
    pub fn image_names(&self) -> Vec<String> {
        let (_, body) = self
            .request("GET", "/images/json", None)
            .expect("images/json");
        let images: serde_json::Value = serde_json::from_slice(&body).expect("images JSON");
        images
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|i| i["RepoTags"].as_array().cloned().unwrap_or_default())
            .filter_map(|t| t.as_str().map(str::to_owned))
            .collect()
    }

    /// One HTTP/1.0 request over the socket: (status, body).
    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> std::io::Result<(u16, Vec<u8>)> {
        let mut stream = UnixStream::connect(&self.socket)?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        let body = body.unwrap_or_default();
        write!(
            stream,
            "{method} {path} HTTP/1.0\r\nHost: d\r\nContent-Type: application/x-tar\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )?;
        stream.write_all(body)?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer)?;
        let text = String::from_utf8_lossy(&answer);
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let start = answer
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(answer.len(), |p| p + 4);
        Ok((status, answer[start..].to_vec()))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
