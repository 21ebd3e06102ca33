//! Another registry (`docker://HOST/REPO[:TAG]` or `…@sha256:…`): GHCR, Docker Hub,
//! another ECR, through the distribution API with `oci-client`.
//!
//! Manifests are fetched whole (they are small and their bytes are the digest); blobs
//! are streamed from the source straight into the upload, part by part, never held
//! whole. Loopback registries are spoken to over plain HTTP, as Docker does; every
//! other one over HTTPS.

use std::io::{self, Read};
use std::str::FromStr as _;
use std::sync::Arc;

use futures_util::StreamExt as _;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use tokio::runtime::Handle;

use super::oci::Opened;
use super::{Blobs, Descriptor, Digest, Error, INDEX_MEDIA_TYPES, MANIFEST_MEDIA_TYPES};
use crate::docker_config::Login;

/// A source that sends nothing for this long is given up on.
const STALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Parses what follows `docker://`.
pub(super) fn parse(rest: &str) -> Result<Reference, Error> {
    let name = rest.strip_prefix("//").unwrap_or(rest);
    Reference::from_str(name).map_err(|e| {
        Error::reference(
            &format!("docker://{name}"),
            Some(&format!(
                "{e}; write docker://HOST/REPO:TAG or docker://HOST/REPO@sha256:DIGEST"
            )),
        )
    })
}

/// The registry host, as logins are stored under it (`docker.io` for Docker Hub).
pub(super) fn host(reference: &Reference) -> String {
    reference.registry().to_owned()
}

/// Fetches the top manifest and returns a store that reads the rest on demand.
pub(super) async fn open(reference: Reference, login: Option<Login>) -> Result<Opened, Error> {
    let registry = reference.registry().to_owned();
    let loopback = crate::http::is_loopback(reference.registry());
    let client = Client::new(ClientConfig {
        protocol: if loopback {
            ClientProtocol::HttpsExcept(vec![reference.registry().to_owned()])
        } else {
            ClientProtocol::Https
        },
        ..ClientConfig::default()
    });
    let auth = match login {
        Some(login) => RegistryAuth::Basic(login.username, login.password),
        None => RegistryAuth::Anonymous,
    };
    let shown = format!("docker://{}", reference.whole());
    let (bytes, _) = client
        .pull_manifest_raw(&reference, &auth, &MANIFEST_MEDIA_TYPES)
        .await
        .map_err(|e| registry_error(&shown, &registry, reference.repository(), &e))?;
    let bytes = bytes.to_vec();
    let digest = Digest::of(&bytes);
    if let Some(pinned) = reference.digest()
        && pinned != digest.as_str()
    {
        return Err(Error::Registry {
            image: shown,
            reason: format!("it answered a manifest whose digest is {digest}, not {pinned}"),
        });
    }
    // The type the manifest names; an OCI manifest may name none (umoci writes them so),
    // and is then an index if it lists manifests, else an image manifest.
    let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let media_type = match value.get("mediaType").and_then(|t| t.as_str()) {
        Some(declared) => declared.to_owned(),
        None if value.get("manifests").is_some() => INDEX_MEDIA_TYPES[0].to_owned(),
        None => MANIFEST_MEDIA_TYPES[0].to_owned(),
    };
    let top = Descriptor {
        media_type,
        digest: digest.clone(),
        size: bytes.len() as u64,
    };
    let tag = reference
        .tag()
        .map(str::to_owned)
        .filter(|_| reference.digest().is_none());
    let store = Remote {
        client: Arc::new(client),
        reference,
        shown,
        top: (digest, Arc::new(bytes)),
        auth,
        handle: Handle::current(),
    };
    Ok((Arc::new(store), top, tag))
}

const NOT_FOUND: &str = "it has no such manifest; check the name and tag";

/// What to do when `registry` refuses to let `repository` be read.
fn refused(registry: &str, repository: &str) -> String {
    match crate::ecr_host::EcrHost::parse(registry) {
        Some(host) => format!(
            "{registry} refused the step's AWS credentials: the role needs ecr:BatchGetImage and ecr:GetDownloadUrlForLayer on arn:{}:ecr:{}:{}:repository/{repository}, which that repository's policy must also allow when the role is in another account",
            host.partition(),
            host.region,
            host.account
        ),
        None => format!(
            "{registry} refused the credentials, or needs some: docker login {registry} before this step (ecr-push reads the Docker config)"
        ),
    }
}

fn registry_error(
    shown: &str,
    registry: &str,
    repository: &str,
    error: &oci_client::errors::OciDistributionError,
) -> Error {
    use oci_client::errors::OciDistributionError as E;
    let reason = match error {
        E::AuthenticationFailure(_) | E::UnauthorizedError { .. } => refused(registry, repository),
        E::ImageManifestNotFoundError(_) => NOT_FOUND.to_owned(),
        E::RegistryError { envelope, .. } => {
            use oci_client::errors::OciErrorCode as Code;
            let codes: Vec<&Code> = envelope.errors.iter().map(|e| &e.code).collect();
            if codes
                .iter()
                .any(|c| matches!(c, Code::ManifestUnknown | Code::NameUnknown))
            {
                NOT_FOUND.to_owned()
            } else if codes
                .iter()
                .any(|c| matches!(c, Code::Unauthorized | Code::Denied))
            {
                refused(registry, repository)
            } else {
                let messages: Vec<String> = envelope
                    .errors
                    .iter()
                    .map(|e| format!("{:?}: {}", e.code, e.message))
                    .collect();
                messages.join("; ")
            }
        }
        other => crate::sdk::innermost(other),
    };
    Error::Registry {
        image: shown.to_owned(),
        reason,
    }
}

struct Remote {
    client: Arc<Client>,
    reference: Reference,
    shown: String,
    top: (Digest, Arc<Vec<u8>>),
    auth: RegistryAuth,
    /// The runtime the client's connections belong to; readers run on blocking threads
    /// and wait on it.
    handle: Handle,
}

impl Blobs for Remote {
    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + Send>, Error> {
        Ok(Box::new(RemoteBlob {
            client: self.client.clone(),
            reference: self.reference.clone(),
            shown: self.shown.clone(),
            digest: digest.clone(),
            handle: self.handle.clone(),
            stream: None,
            pending: Vec::new(),
            at: 0,
        }))
    }

    fn open_manifest(&self, descriptor: &Descriptor) -> Result<Box<dyn Read + Send>, Error> {
        if descriptor.digest == self.top.0 {
            return Ok(Box::new(io::Cursor::new(self.top.1.to_vec())));
        }
        let reference = self
            .reference
            .clone_with_digest(descriptor.digest.to_string());
        let accepted: Vec<&str> = if descriptor.media_type.is_empty() {
            MANIFEST_MEDIA_TYPES.to_vec()
        } else {
            vec![descriptor.media_type.as_str()]
        };
        // Manifests are read while the image is opened, on a blocking thread.
        let (bytes, _) = self
            .handle
            .block_on(
                self.client
                    .pull_manifest_raw(&reference, &self.auth, &accepted),
            )
            .map_err(|e| {
                registry_error(
                    &self.shown,
                    self.reference.registry(),
                    self.reference.repository(),
                    &e,
                )
            })?;
        Ok(Box::new(io::Cursor::new(bytes.to_vec())))
    }
}

/// A blob read from the registry as the upload asks for it. The request is made on
/// the first read, which happens on a blocking thread.
struct RemoteBlob {
    client: Arc<Client>,
    reference: Reference,
    shown: String,
    digest: Digest,
    handle: Handle,
    stream: Option<Chunks>,
    /// The chunk being read, and how far.
    pending: Vec<u8>,
    at: usize,
}

type Chunks = oci_client::client::SizedStream;

impl Read for RemoteBlob {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.pending.len() {
            let stream = match &mut self.stream {
                Some(stream) => stream,
                None => {
                    let sized = self
                        .handle
                        .block_on(
                            self.client
                                .pull_blob_stream(&self.reference, self.digest.as_str()),
                        )
                        .map_err(|e| {
                            io::Error::other(format!(
                                "{}: {}",
                                self.shown,
                                crate::sdk::innermost(&e)
                            ))
                        })?;
                    self.stream.insert(sized)
                }
            };
            let next = self
                .handle
                .block_on(async { tokio::time::timeout(STALL_TIMEOUT, stream.next()).await });
            let next = next.map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{}: no data for {} s", self.shown, STALL_TIMEOUT.as_secs()),
                )
            })?;
            match next {
                Some(chunk) => {
                    self.pending = chunk?.to_vec();
                    self.at = 0;
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.pending.len() - self.at);
        buf[..n].copy_from_slice(&self.pending[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
