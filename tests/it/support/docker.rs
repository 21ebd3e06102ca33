//! Docker's side of the test stack: archives as `docker save` writes them (the classic
//! layout and Docker 25's OCI layout inside), a local distribution registry
//! (`docker-registry`), and skopeo to copy into it, as the independent reference.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, sha256};

/// A tar written entry by entry, with fixed metadata so archives are reproducible.
pub struct TarWriter(tar::Builder<Vec<u8>>);

impl TarWriter {
    pub fn new() -> Self {
        Self(tar::Builder::new(Vec::new()))
    }

    pub fn file(&mut self, name: &str, bytes: &[u8]) -> &mut Self {
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        self.0
            .append_data(&mut header, name, bytes)
            .expect("tar entry");
        self
    }

    pub fn link(&mut self, kind: tar::EntryType, name: &str, target: &str) -> &mut Self {
        let mut header = tar::Header::new_gnu();
        header.set_size(0);
        header.set_mode(0o777);
        header.set_mtime(0);
        header.set_entry_type(kind);
        self.0
            .append_link(&mut header, name, target)
            .expect("tar link");
        self
    }

    pub fn finish(self) -> Vec<u8> {
        self.0.into_inner().expect("tar")
    }
}

/// A layer: a tar holding one file of these bytes.
pub fn layer_tar(name: &str, bytes: &[u8]) -> Vec<u8> {
    let mut tar = TarWriter::new();
    tar.file(name, bytes);
    tar.finish()
}

pub struct DockerArchive {
    pub path: PathBuf,
    pub config: String,
    /// Digests of the layers, in order (repeats included).
    pub layers: Vec<String>,
    /// Docker 25+ archives: the manifest in the OCI layout inside.
    pub manifest: Option<(String, Vec<u8>)>,
}

impl DockerArchive {
    pub fn reference(&self, name: &str) -> String {
        if name.is_empty() {
            format!("docker-archive:{}", self.path.display())
        } else {
            format!("docker-archive:{}:{name}", self.path.display())
        }
    }
}

fn config_for(layers: &[Vec<u8>]) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| sha256(l)).collect();
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/app"], "Env": ["PATH=/usr/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": "test"}],
    }))
    .unwrap()
}

/// The classic layout, as Docker before 25 saves: `<id>/layer.tar` per layer (a layer
/// equal to an earlier one is a symlink to it, as Docker writes), `<config>.json`,
/// `manifest.json` and `repositories`.
pub fn write_classic_archive(path: &Path, repo_tags: &[&str], layers: &[Vec<u8>]) -> DockerArchive {
    let config = config_for(layers);
    let config_hex = sha256(&config).trim_start_matches("sha256:").to_owned();
    let mut tar = TarWriter::new();
    let mut ids: Vec<(String, String)> = Vec::new();
    let mut paths = Vec::new();
    for (n, layer) in layers.iter().enumerate() {
        let digest = sha256(layer);
        // Docker's layer ids are chain hashes; any distinct hex works for a reader.
        let id = sha256(format!("{n}{digest}").as_bytes())
            .trim_start_matches("sha256:")
            .to_owned();
        tar.file(&format!("{id}/VERSION"), b"1.0");
        tar.file(&format!("{id}/json"), br#"{"id":"x"}"#);
        match ids.iter().find(|(d, _)| *d == digest) {
            Some((_, first)) => {
                tar.link(
                    tar::EntryType::Symlink,
                    &format!("{id}/layer.tar"),
                    &format!("../{first}/layer.tar"),
                );
            }
            None => {
                tar.file(&format!("{id}/layer.tar"), layer);
                ids.push((digest, id.clone()));
            }
        }
        paths.push(format!("{id}/layer.tar"));
    }
    tar.file(&format!("{config_hex}.json"), &config);
    let manifest = serde_json::json!([{
        "Config": format!("{config_hex}.json"),
        "RepoTags": repo_tags,
        "Layers": paths,
    }]);
    tar.file("manifest.json", manifest.to_string().as_bytes());
    tar.file("repositories", b"{}");
    std::fs::write(path, tar.finish()).expect("write archive");
    DockerArchive {
        path: path.to_owned(),
        config: sha256(&config),
        layers: layers.iter().map(|l| sha256(l)).collect(),
        manifest: None,
    }
}

/// Docker 25+'s layout: an OCI layout inside (its index naming the image with
/// containerd's annotations), plus `manifest.json` pointing into `blobs/`.
pub fn write_oci_docker_archive(path: &Path, name: &str, layers: &[Vec<u8>]) -> DockerArchive {
    let config = config_for(layers);
    let mut tar = TarWriter::new();
    let blob = |tar: &mut TarWriter, bytes: &[u8]| {
        let digest = sha256(bytes);
        tar.file(
            &format!("blobs/sha256/{}", digest.trim_start_matches("sha256:")),
            bytes,
        );
        digest
    };
    let mut written: Vec<String> = Vec::new();
    for layer in layers {
        if !written.contains(&sha256(layer)) {
            written.push(blob(&mut tar, layer));
        }
    }
    let config_digest = blob(&mut tar, &config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config.len()},
        "layers": layers.iter().map(|l| serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": sha256(l), "size": l.len()})).collect::<Vec<_>>(),
    }))
    .unwrap();
    let manifest_digest = blob(&mut tar, &manifest);
    let tag = name.rsplit_once(':').map_or("latest", |(_, t)| t);
    tar.file(
        "index.json",
        serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest, "size": manifest.len(),
                "annotations": {
                    "io.containerd.image.name": format!("docker.io/library/{name}"),
                    "org.opencontainers.image.ref.name": tag,
                },
            }],
        })
        .to_string()
        .as_bytes(),
    );
    tar.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    tar.file(
        "manifest.json",
        serde_json::json!([{
            "Config": format!("blobs/sha256/{}", config_digest.trim_start_matches("sha256:")),
            "RepoTags": [name],
            "Layers": layers.iter().map(|l| format!("blobs/sha256/{}",
                sha256(l).trim_start_matches("sha256:"))).collect::<Vec<_>>(),
        }])
        .to_string()
        .as_bytes(),
    );
    std::fs::write(path, tar.finish()).expect("write archive");
    DockerArchive {
        path: path.to_owned(),
        config: config_digest,
        layers: layers.iter().map(|l| sha256(l)).collect(),
        manifest: Some((manifest_digest, manifest)),
    }
}

/// A Docker config folder (for DOCKER_CONFIG) holding a login for `host` in `auths`, as
/// `docker login` writes it.
pub fn docker_config_with_login(host: &str, username: &str, password: &str) -> tempfile::TempDir {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    std::fs::write(
        dir.path().join("config.json"),
        serde_json::json!({"auths": {host: {"auth": auth}}}).to_string(),
    )
    .unwrap();
    dir
}

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

/// A certificate authority for the tests (openssl): the file to trust (`SSL_CERT_FILE`)
/// and server certificates it issues for any name.
pub struct TestCa {
    dir: tempfile::TempDir,
}

impl TestCa {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        self_signed(dir.path(), "ecr-push test CA", "ca");
        Self { dir }
    }

    /// The CA certificate, to trust.
    pub fn certificate(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A certificate and key for `name`, signed by this CA.
    pub fn issue(&self, name: &str) -> (PathBuf, PathBuf) {
        let dir = self.dir.path();
        std::fs::write(
            dir.join(format!("{name}.ext")),
            format!("subjectAltName=DNS:{name}\nbasicConstraints=CA:FALSE\n"),
        )
        .unwrap();
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                &format!("/CN={name}"),
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
                "-out",
                &format!("{name}.pem"),
            ],
        );
        (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        )
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

/// A new RSA key `STEM.key` and a self-signed certificate `STEM.pem` for `common_name`
/// in `dir`, good for two days.
pub fn self_signed(dir: &Path, common_name: &str, stem: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={common_name}"),
            "-keyout",
            &format!("{stem}.key"),
            "-out",
            &format!("{stem}.pem"),
        ],
    );
}

/// Runs `openssl ARGS` in `dir`; the test fails if it does.
pub fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        output.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// An HTTP proxy on a free loopback port that answers CONNECT for any host by opening a
/// tunnel to one loopback port, and records the hosts asked for: how a test reaches a
/// registry under a public name without resolving it.
pub struct ConnectProxy {
    pub port: u16,
    hosts: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl ConnectProxy {
    pub fn start(target: u16) -> Self {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hosts = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = hosts.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let seen = seen.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(client.try_clone().unwrap());
                    let mut line = String::new();
                    if reader.read_line(&mut line).is_err() {
                        return;
                    }
                    let mut header = String::new();
                    while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                        header.clear();
                    }
                    let mut client = client;
                    let mut words = line.split_whitespace();
                    if words.next() != Some("CONNECT") {
                        let _ = client.write_all(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n");
                        return;
                    }
                    seen.lock()
                        .unwrap()
                        .push(words.next().unwrap_or_default().to_owned());
                    let Ok(upstream) = std::net::TcpStream::connect(("127.0.0.1", target)) else {
                        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n");
                        return;
                    };
                    let _ = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
                    let (mut up_read, mut up_write) = (upstream.try_clone().unwrap(), upstream);
                    let mut client_write = client.try_clone().unwrap();
                    let mut client_read = client;
                    let forward = std::thread::spawn(move || {
                        let _ = std::io::copy(&mut client_read, &mut up_write);
                        let _ = up_write.shutdown(std::net::Shutdown::Write);
                    });
                    let _ = std::io::copy(&mut up_read, &mut client_write);
                    let _ = client_write.shutdown(std::net::Shutdown::Write);
                    let _ = forward.join();
                });
            }
        });
        Self { port, hosts }
    }

    /// The `HOST:PORT`s clients asked to CONNECT to.
    pub fn hosts(&self) -> Vec<String> {
        self.hosts.lock().unwrap().clone()
    }
}
