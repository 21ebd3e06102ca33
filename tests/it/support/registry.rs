//! A local distribution registry (Debian's `docker-registry`), with or without a login or
//! TLS, and skopeo to copy into it and read from it, as the independent reference.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{TestCa, free_port, runtime, sha256};

/// Debian's `docker-registry` (the CNCF distribution registry) on a free loopback port,
/// storing into a temporary folder.
pub struct Registry {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Registry {
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// A registry that wants this login (HTTP basic, from an htpasswd file).
    pub fn start_with_login(username: &str, password: &str) -> Self {
        Self::start_with(Some((username, password)))
    }

    /// A registry that answers over TLS as `name` (a certificate for it, issued by the
    /// test CA in `tls`) and wants this login.
    pub fn start_tls(tls: &TestCa, name: &str, username: &str, password: &str) -> Self {
        Self::start_with_tls(Some((username, password)), Some(tls.issue(name)))
    }

    fn start_with(login: Option<(&str, &str)>) -> Self {
        Self::start_with_tls(login, None)
    }

    fn start_with_tls(login: Option<(&str, &str)>, tls: Option<(PathBuf, PathBuf)>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("config.yml");
        let mut text = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("storage").display()
        );
        if let Some((certificate, key)) = tls {
            text.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                certificate.display(),
                key.display()
            ));
        }
        if let Some((username, password)) = login {
            let output = Command::new("htpasswd")
                .args(["-Bbn", username, password])
                .output()
                .expect("htpasswd runs (scripts/test installs apache2-utils)");
            assert!(output.status.success());
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, output.stdout).unwrap();
            text.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
                file.display()
            ));
        }
        std::fs::write(&config, text).unwrap();
        let child = serve_registry(&config, port);
        Self {
            child,
            port,
            _dir: dir,
        }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `skopeo copy --preserve-digests SOURCE docker://HOST/REPO`: no compression or
    /// conversion, so the digest is the one skopeo gives the source.
    pub fn skopeo_copy(&self, source: &str, repository: &str) {
        self.skopeo_copy_with(&[], source, repository);
    }

    /// The same, with more options for skopeo (`--src-daemon-host`, …).
    pub fn skopeo_copy_with(&self, options: &[&str], source: &str, repository: &str) {
        let output = Command::new("skopeo")
            .args([
                "copy",
                "--quiet",
                "--dest-tls-verify=false",
                "--preserve-digests",
            ])
            .args(options)
            .arg(source)
            .arg(format!("docker://{}/{repository}", self.host()))
            .output()
            .expect("skopeo runs");
        assert!(
            output.status.success(),
            "skopeo copy {source}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// The manifest the registry holds under `repository` (`NAME:TAG`): its exact bytes.
    pub fn manifest(&self, repository: &str) -> Vec<u8> {
        let output = Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{}/{repository}", self.host()))
            .output()
            .expect("skopeo runs");
        assert!(
            output.status.success(),
            "skopeo inspect: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    }
}

impl Registry {
    /// Stores a blob as a client of the distribution API does (oras, cosign): an upload
    /// session, then one PUT of the whole blob with its digest.
    pub fn put_blob(&self, repository: &str, bytes: &[u8]) {
        let host = self.host();
        let status = runtime().block_on(async {
            let client = reqwest::Client::new();
            let session = client
                .post(format!("http://{host}/v2/{repository}/blobs/uploads/"))
                .send()
                .await
                .expect("registry answers");
            assert_eq!(
                session.status().as_u16(),
                202,
                "POST upload to {repository}"
            );
            let location = session.headers()["location"].to_str().unwrap().to_owned();
            let location = if location.starts_with('/') {
                format!("http://{host}{location}")
            } else {
                location
            };
            let separator = if location.contains('?') { '&' } else { '?' };
            client
                .put(format!("{location}{separator}digest={}", sha256(bytes)))
                .header("content-type", "application/octet-stream")
                .body(bytes.to_vec())
                .send()
                .await
                .expect("registry answers")
                .status()
        });
        assert_eq!(status.as_u16(), 201, "PUT blob to {repository}");
    }

    /// Attaches `file` to `subject` (its media type and bytes) with oras-py, a client
    /// of the OCI 1.1 referrers scheme, under `tag`; the manifest it wrote, as stored.
    pub fn oras_attach(
        &self,
        repository: &str,
        tag: &str,
        subject: (&str, &[u8]),
        file: &Path,
        media_type: &str,
    ) -> Vec<u8> {
        let subject = serde_json::json!({
            "mediaType": subject.0,
            "digest": sha256(subject.1),
            "size": subject.1.len(),
        });
        let output = Command::new(super::root().join(".venv/bin/python"))
            .arg(super::root().join("scripts/lib/oras_attach.py"))
            .args([&self.host(), repository, tag, &subject.to_string()])
            .arg(file)
            .arg(media_type)
            .output()
            .expect("oras-py runs: scripts/test installs it into .venv");
        assert!(
            output.status.success(),
            "oras_attach: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        self.manifest(&format!("{repository}:{tag}"))
    }

    /// Stores a manifest under `reference` (a tag, or its digest), as oras and cosign do.
    pub fn put_manifest(&self, repository: &str, reference: &str, media_type: &str, bytes: &[u8]) {
        let url = format!(
            "http://{}/v2/{repository}/manifests/{reference}",
            self.host()
        );
        let (status, body) = runtime().block_on(async {
            let response = reqwest::Client::new()
                .put(url)
                .header("content-type", media_type)
                .body(bytes.to_vec())
                .send()
                .await
                .expect("registry answers");
            (response.status(), response.text().await.unwrap_or_default())
        });
        assert_eq!(status.as_u16(), 201, "PUT manifest {reference}: {body}");
    }

    /// Whether the registry answers 200 to a HEAD of this path under /v2/.
    pub fn has(&self, path: &str) -> bool {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("registry");
        write!(
            stream,
            "HEAD /v2/{path} HTTP/1.0\r\nHost: {}\r\nAccept: application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json\r\n\r\n",
            self.host()
        )
        .unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `docker-registry serve CONFIG`, once it listens on `port` (the config's).
pub fn serve_registry(config: &Path, port: u16) -> Child {
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker-registry starts (scripts/test installs it)");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "docker-registry did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}
