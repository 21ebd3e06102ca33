//! A real Docker Engine API server: podman's `system service` on a unix socket, with its
//! own configuration, storage and runtime folders in a temporary folder, so parallel
//! tests share nothing. It runs no container; tests load images into it and export them.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

pub struct Daemon {
    child: Child,
    socket: PathBuf,
    dir: tempfile::TempDir, // last: removed after the service is stopped
}

impl Daemon {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let root = dir.path();
        for sub in ["tmp", "networks"] {
            fs::create_dir(root.join(sub)).unwrap();
        }
        // runc and cgroupfs: crun and systemd cgroups fail on this kernel's hybrid
        // cgroups; the file event logger needs no journald. tmp_dir and the network
        // folder default to /run/libpod and /etc/containers, shared by every podman.
        fs::write(
            root.join("containers.conf"),
            format!(
                "[containers]\n\
                 default_ulimits = [\"nofile=20000:20000\", \"nproc=32768:32768\"]\n\
                 [network]\n\
                 network_config_dir = \"{networks}\"\n\
                 [engine]\n\
                 runtime = \"runc\"\n\
                 cgroup_manager = \"cgroupfs\"\n\
                 events_logger = \"file\"\n\
                 events_logfile_path = \"{events}\"\n\
                 tmp_dir = \"{tmp}\"\n\
                 image_copy_tmp_dir = \"{tmp}\"\n",
                networks = root.join("networks").display(),
                events = root.join("events.log").display(),
                tmp = root.join("tmp").display(),
            ),
        )
        .unwrap();
        fs::write(
            root.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"vfs\"\nrunroot = \"{}\"\ngraphroot = \"{}\"\n",
                root.join("run").display(),
                root.join("graph").display()
            ),
        )
        .unwrap();
        let socket = root.join("docker.sock");
        let log = root.join("service.log");
        let child = Command::new("podman")
            .args(["--log-level=error", "system", "service", "--time=0"])
            .arg(format!("unix://{}", socket.display()))
            .env("CONTAINERS_CONF", root.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", root.join("storage.conf"))
            .env("TMPDIR", root.join("tmp"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // a file, not a pipe: podman writes progress there on every load
            .stderr(File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("podman does not start ({e}): run scripts/lib/podman-service")
            });
        let mut daemon = Self { child, socket, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((200, _)) = daemon.request("GET", "/_ping", None) {
                return daemon;
            }
            let exited = daemon.child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() > deadline {
                panic!(
                    "podman system service did not answer on {} ({}): {}",
                    daemon.socket.display(),
                    exited.map_or("timed out after 30 s".to_owned(), |s| s.to_string()),
                    fs::read_to_string(&log).unwrap_or_default()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// For DOCKER_HOST.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// A `tcp://` DOCKER_HOST for the same service: a loopback port whose connections
    /// are forwarded to the socket, as a TCP-exposed engine (or an SSH tunnel) gives.
    pub fn tcp_host(&self) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let socket = self.socket.clone();
        thread::spawn(move || {
            for client in listener.incoming() {
                let (Ok(client), Ok(engine)) = (client, UnixStream::connect(&socket)) else {
                    return;
                };
                let (mut client_read, mut engine_write) =
                    (client.try_clone().unwrap(), engine.try_clone().unwrap());
                thread::spawn(move || {
                    let _ = io::copy(&mut client_read, &mut engine_write);
                    let _ = engine_write.shutdown(std::net::Shutdown::Write);
                });
                let (mut engine_read, mut client_write) = (engine, client);
                thread::spawn(move || {
                    let _ = io::copy(&mut engine_read, &mut client_write);
                    let _ = client_write.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        format!("tcp://127.0.0.1:{port}")
    }

    /// Loads a `docker save` archive, as `docker load` does.
    pub fn load(&self, archive: &Path) {
        let (status, body) = self
            .request("POST", "/images/load", Some(archive))
            .unwrap_or_else(|e| panic!("POST /images/load {}: {e}", archive.display()));
        let text = String::from_utf8_lossy(&body);
        // Docker reports some failures inside a 200 stream
        assert!(
            status == 200 && !text.contains("\"error"),
            "loading {} into the daemon: {status} {text}\n{}",
            archive.display(),
            self.log()
        );
    }

    /// What the service wrote to its stderr so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("service.log")).unwrap_or_default()
    }

    /// One HTTP/1.1 request with `Connection: close`: (status, body, de-chunked).
    fn request(&self, method: &str, path: &str, body: Option<&Path>) -> io::Result<(u16, Vec<u8>)> {
        let mut stream = UnixStream::connect(&self.socket)?;
        stream.set_read_timeout(Some(Duration::from_secs(120)))?;
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n");
        let file = match body {
            Some(path) => {
                let file = File::open(path)?;
                head.push_str(&format!(
                    "Content-Type: application/x-tar\r\nContent-Length: {}\r\n",
                    file.metadata()?.len()
                ));
                Some(file)
            }
            None => None,
        };
        head.push_str("\r\n");
        stream.write_all(head.as_bytes())?;
        if let Some(mut file) = file {
            io::copy(&mut file, &mut stream)?;
        }
        stream.flush()?;

        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::other(format!("not an HTTP status line: {line:?}")))?;
        let (mut chunked, mut length) = (false, None);
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = value.eq_ignore_ascii_case("chunked");
                } else if name.eq_ignore_ascii_case("content-length") {
                    length = value.parse::<u64>().ok();
                }
            }
        }
        let mut out = Vec::new();
        if chunked {
            loop {
                line.clear();
                reader.read_line(&mut line)?;
                let size = line.trim().split(';').next().unwrap_or_default();
                let size = usize::from_str_radix(size, 16)
                    .map_err(|_| io::Error::other(format!("bad chunk size {line:?}")))?;
                if size == 0 {
                    break;
                }
                let start = out.len();
                out.resize(start + size, 0);
                reader.read_exact(&mut out[start..])?;
                reader.read_line(&mut line)?; // the CRLF after the chunk
            }
        } else if let Some(length) = length {
            reader.take(length).read_to_end(&mut out)?;
        } else {
            reader.read_to_end(&mut out)?;
        }
        Ok((status, out))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
