//! A certificate authority for the tests, made with openssl: certificates for TLS
//! registries, and the self-signed issuer of the token service.

use std::path::{Path, PathBuf};
use std::process::Command;

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
