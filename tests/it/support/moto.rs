//! moto, as STS and ECR (and the IAM it evaluates policies with), on a free loopback
//! port: the AWS side every push test talks to, through the recorder. The SDK clients
//! here set up and inspect a test's account; the tool under test never uses them.

use std::collections::HashMap;
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::{REGION, free_port, percent_encode, root, runtime};

pub struct Moto {
    child: Child,
    pub port: u16,
    /// One runtime for every SDK call of the test: pooled connections belong to it.
    rt: tokio::runtime::Runtime,
}

/// Whether what listens on `port` is moto: its own API answers there.
fn answers_as_moto(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if stream
        .write_all(b"GET /moto-api/data.json HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
}

impl Moto {
    pub fn start() -> Self {
        let server = root().join(".venv/bin/moto_server");
        assert!(
            server.exists(),
            "{} is missing: run scripts/test, which installs moto into .venv",
            server.display()
        );
        // A port freed by free_port() can be taken by another test's listener before
        // moto binds it (tests share one process); then moto exits and the port answers
        // someone else. So ready means: moto's own API answers, and moto still runs;
        // else moto starts again on another port.
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new(&server)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("moto_server starts");
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if child.try_wait().expect("moto_server waits").is_some() {
                    break;
                }
                if answers_as_moto(port) {
                    return Self {
                        child,
                        port,
                        rt: runtime(),
                    };
                }
                assert!(Instant::now() < deadline, "moto did not listen on {port}");
                thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("moto_server exited five times before it listened");
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn config(&self, credentials: aws_sdk_sts::config::Credentials) -> aws_config::SdkConfig {
        self.config_in(REGION, credentials)
    }

    /// moto keeps each region's repositories apart, by the region a request is signed for.
    fn config_in(
        &self,
        region: &str,
        credentials: aws_sdk_sts::config::Credentials,
    ) -> aws_config::SdkConfig {
        self.rt.block_on(
            aws_config::defaults(aws_config::BehaviorVersion::latest())
                .region(aws_config::Region::new(region.to_owned()))
                .endpoint_url(self.endpoint())
                .credentials_provider(credentials)
                .load(),
        )
    }

    /// Credentials moto files under `account`, for setting up the test.
    fn credentials_in(&self, account: &str) -> aws_sdk_sts::types::Credentials {
        let base = self.config(aws_sdk_sts::config::Credentials::new(
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            None,
            None,
            "test",
        ));
        let assumed = self
            .rt
            .block_on(
                aws_sdk_sts::Client::new(&base)
                    .assume_role()
                    .role_arn(format!("arn:aws:iam::{account}:role/test-setup"))
                    .role_session_name("test")
                    .send(),
            )
            .expect("moto AssumeRole");
        assumed.credentials().expect("credentials").clone()
    }

    /// Calls moto's IAM (query protocol) in `account`. moto checks no signature until
    /// IAM enforcement is on, and routes by the credential scope, so the request is sent
    /// unsigned with a scope naming iam: the IAM SDK crate is not worth its build time
    /// for three calls.
    pub fn iam(&self, account: &str, params: &[(&str, &str)]) {
        let key = self.credentials_in(account).access_key_id().to_owned();
        let mut body = String::from("Version=2010-05-08");
        for (k, v) in params {
            body.push_str(&format!("&{k}={}", percent_encode(v)));
        }
        let response = self.rt.block_on(async {
            reqwest::Client::new()
                .post(self.endpoint())
                .header("Content-Type", "application/x-www-form-urlencoded")
                .header(
                    "Authorization",
                    format!("AWS4-HMAC-SHA256 Credential={key}/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0"),
                )
                .body(body)
                .send()
                .await
        });
        let response = response.expect("moto IAM answers");
        assert!(
            response.status().is_success(),
            "IAM {params:?}: {}",
            response.status()
        );
    }

    /// From the next `free_requests` requests on, moto authenticates every request and
    /// evaluates IAM policies (one counter for the whole server).
    pub fn enforce_iam_after(&self, free_requests: u32) {
        self.reset_auth(&free_requests.to_string());
    }

    /// Sets what moto's DescribeImageScanFindings answers in `account`, through moto's own
    /// `/moto-api/static/ecr/scan-finding-results`: each of `results` is a whole answer
    /// (`repositoryName`, `imageId`, `imageScanStatus`, `imageScanFindings`), matched to an
    /// image by its `imageId` (`{}` matches any image of the repository) and handed,
    /// once queued, to every later call for that image. moto answers only after a
    /// StartImageScan of the image (ScanNotFoundException before).
    pub fn scan_results(&self, account: &str, results: &[serde_json::Value]) {
        let body = serde_json::json!({
            "results": results,
            "region": REGION,
            "account_id": account,
        });
        let response = self.rt.block_on(
            reqwest::Client::new()
                .post(format!(
                    "{}/moto-api/static/ecr/scan-finding-results",
                    self.endpoint()
                ))
                .header("Content-Type", "application/json")
                .body(body.to_string())
                .send(),
        );
        assert!(
            response
                .expect("moto scan-finding-results")
                .status()
                .is_success()
        );
    }

    pub fn stop_enforcing_iam(&self) {
        self.reset_auth("inf");
    }

    fn reset_auth(&self, count: &str) {
        let response = self.rt.block_on(
            reqwest::Client::new()
                .post(format!("{}/moto-api/reset-auth", self.endpoint()))
                .body(count.to_owned())
                .send(),
        );
        assert!(response.expect("moto reset-auth").status().is_success());
    }

    /// Credentials of `role`, as a job would get them with its token.
    pub fn web_identity_credentials(&self, role: &str) -> aws_sdk_sts::types::Credentials {
        let config = self.rt.block_on(
            aws_config::defaults(aws_config::BehaviorVersion::latest())
                .region(aws_config::Region::new(REGION))
                .endpoint_url(self.endpoint())
                .no_credentials()
                .load(),
        );
        let output = self
            .rt
            .block_on(
                aws_sdk_sts::Client::new(&config)
                    .assume_role_with_web_identity()
                    .role_arn(role)
                    .role_session_name("test")
                    .web_identity_token("header.e30.signature")
                    .send(),
            )
            .expect("moto AssumeRoleWithWebIdentity");
        output.credentials().expect("credentials").clone()
    }

    /// An ECR client with these credentials.
    pub fn ecr_as(&self, c: &aws_sdk_sts::types::Credentials) -> aws_sdk_ecr::Client {
        self.ecr_as_in(REGION, c)
    }

    fn ecr_as_in(&self, region: &str, c: &aws_sdk_sts::types::Credentials) -> aws_sdk_ecr::Client {
        aws_sdk_ecr::Client::new(&self.config_in(
            region,
            aws_sdk_sts::config::Credentials::new(
                c.access_key_id(),
                c.secret_access_key(),
                Some(c.session_token().to_owned()),
                None,
                "test",
            ),
        ))
    }

    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.rt.block_on(future)
    }

    /// An ECR client acting in `account`'s registry of `region`, for setting up and
    /// inspecting the test.
    fn ecr_in(&self, account: &str, region: &str) -> aws_sdk_ecr::Client {
        self.ecr_as_in(region, &self.credentials_in(account))
    }

    pub fn create_repository(&self, account: &str, name: &str, immutable: bool) {
        self.create_repository_in(account, REGION, name, immutable);
    }

    /// A repository in `account`'s registry of `region`.
    pub fn create_repository_in(&self, account: &str, region: &str, name: &str, immutable: bool) {
        let mutability = if immutable {
            aws_sdk_ecr::types::ImageTagMutability::Immutable
        } else {
            aws_sdk_ecr::types::ImageTagMutability::Mutable
        };
        let ecr = self.ecr_in(account, region);
        self.rt
            .block_on(
                ecr.create_repository()
                    .repository_name(name)
                    .image_tag_mutability(mutability)
                    .send(),
            )
            .expect("CreateRepository");
    }

    /// The manifest a tag points at in moto: (digest, bytes), or None.
    pub fn manifest(&self, account: &str, repository: &str, tag: &str) -> Option<(String, String)> {
        self.manifest_in(account, REGION, repository, tag)
    }

    /// The same in `account`'s registry of `region`.
    pub fn manifest_in(
        &self,
        account: &str,
        region: &str,
        repository: &str,
        tag: &str,
    ) -> Option<(String, String)> {
        let id = aws_sdk_ecr::types::ImageIdentifier::builder()
            .image_tag(tag)
            .build();
        let image = self.image(account, region, repository, id)?;
        Some((
            image.image_id()?.image_digest()?.to_owned(),
            image.image_manifest()?.to_owned(),
        ))
    }

    /// The manifest stored under a digest in moto: (media type, bytes), or None.
    pub fn manifest_by_digest(
        &self,
        account: &str,
        repository: &str,
        digest: &str,
    ) -> Option<(String, String)> {
        self.manifest_by_digest_in(account, REGION, repository, digest)
    }

    /// The same in `account`'s registry of `region`.
    pub fn manifest_by_digest_in(
        &self,
        account: &str,
        region: &str,
        repository: &str,
        digest: &str,
    ) -> Option<(String, String)> {
        let id = aws_sdk_ecr::types::ImageIdentifier::builder()
            .image_digest(digest)
            .build();
        let image = self.image(account, region, repository, id)?;
        Some((
            image.image_manifest_media_type()?.to_owned(),
            image.image_manifest()?.to_owned(),
        ))
    }

    /// BatchGetImage of one image.
    fn image(
        &self,
        account: &str,
        region: &str,
        repository: &str,
        id: aws_sdk_ecr::types::ImageIdentifier,
    ) -> Option<aws_sdk_ecr::types::Image> {
        let ecr = self.ecr_in(account, region);
        let request = ecr
            .batch_get_image()
            .repository_name(repository)
            .image_ids(id);
        let output = self.rt.block_on(request.send()).ok()?;
        output.images().first().cloned()
    }

    /// The size ECR reports for each available blob, by digest.
    pub fn available_blobs(
        &self,
        account: &str,
        repository: &str,
        digests: &[String],
    ) -> HashMap<String, i64> {
        self.available_blobs_in(account, REGION, repository, digests)
    }

    /// The same in `account`'s registry of `region`.
    pub fn available_blobs_in(
        &self,
        account: &str,
        region: &str,
        repository: &str,
        digests: &[String],
    ) -> HashMap<String, i64> {
        let ecr = self.ecr_in(account, region);
        let output = self
            .rt
            .block_on(
                ecr.batch_check_layer_availability()
                    .repository_name(repository)
                    .set_layer_digests(Some(digests.to_vec()))
                    .send(),
            )
            .expect("BatchCheckLayerAvailability");
        output
            .layers()
            .iter()
            .filter(|l| {
                l.layer_availability() == Some(&aws_sdk_ecr::types::LayerAvailability::Available)
            })
            .map(|l| {
                (
                    l.layer_digest().unwrap_or_default().to_owned(),
                    l.layer_size().unwrap_or(-1),
                )
            })
            .collect()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
