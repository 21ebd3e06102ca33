//! The Docker daemon (`docker-daemon:NAME[:TAG]`, `docker-daemon:NAME@sha256:…`, or the
//! same without the transport): the image `docker build -t NAME` left in the engine.
//!
//! The engine's image-save endpoint is streamed into a temporary file (never into
//! memory: images are gigabytes), which is then read as the docker-archive it is. This
//! is what skopeo's docker-daemon transport does, so the digests agree with it. The
//! engine is the one at `DOCKER_HOST` (`unix://` or `tcp://`), else
//! `/var/run/docker.sock`, which the Actions runner mounts into container actions.

use std::path::PathBuf;
use std::time::Instant;

use bollard::Docker;
use bollard::errors::Error as DockerError;
use futures_util::StreamExt as _;
use tokio::io::AsyncWriteExt as _;

use super::Error;
use super::docker_archive::{self, Select};
use super::oci::Opened;
use super::reference::DaemonRef;
use super::tarball::Tarball;

const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";
/// Seconds to wait for the engine to start answering a request (not for a whole export).
const TIMEOUT_SECONDS: u64 = 120;
/// Exports the image from the engine into a temporary file and opens it.
pub(super) async fn export(image: &DaemonRef, docker_host: Option<&str>) -> Result<Spooled, Error> {
    let host = docker_host
        .filter(|h| !h.is_empty())
        .unwrap_or(DEFAULT_HOST)
        .to_owned();
    let daemon_err = |reason: String| Error::Daemon {
        host: host.clone(),
        reason,
    };
    let docker = connect(&host).await?;
    match docker.inspect_image(&image.name).await {
        Ok(_) => {}
        Err(DockerError::DockerResponseServerError {
            status_code: 404, ..
        }) => {
            let close = close_names(&docker, &image.name).await;
            return Err(Error::NotInDaemon {
                host,
                name: image.name.clone(),
                close,
            });
        }
        Err(e) => {
            return Err(daemon_err(format!(
                "did not describe {}: {}",
                image.name,
                describe(&e)
            )));
        }
    }

    let spool_dir = super::spool_dir();
    let spool = tempfile::NamedTempFile::new_in(&spool_dir).map_err(|source| Error::Io {
        path: spool_dir,
        source,
    })?;
    let spool_err = |source| Error::Io {
        path: spool.path().to_owned(),
        source,
    };
    let mut file = tokio::fs::File::from_std(spool.reopen().map_err(spool_err)?);
    let started = Instant::now();
    let mut bytes = 0u64;
    let mut stream = docker.export_image(&image.name);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            daemon_err(format!(
                "stopped exporting {}: {}",
                image.name,
                describe(&e)
            ))
        })?;
        bytes += chunk.len() as u64;
        file.write_all(&chunk).await.map_err(spool_err)?;
    }
    file.flush().await.map_err(spool_err)?;
    tracing::info!(
        "exported {} from the Docker daemon: {} in {:.1} s",
        image.name,
        crate::units::human_bytes(bytes),
        started.elapsed().as_secs_f64()
    );
    Ok(Spooled {
        spool: spool.into_temp_path(),
        shown: PathBuf::from(format!("docker-daemon:{}", image.name)),
        tag: image.tag.clone(),
    })
}

/// An exported image waiting in a temporary file, to be read off the reactor.
pub(super) struct Spooled {
    spool: tempfile::TempPath,
    shown: PathBuf,
    tag: Option<String>,
}

impl Spooled {
    /// Reads the export as the docker-archive it is. Blocking.
    pub(super) fn open(self) -> Result<Opened, Error> {
        let tarball = Tarball::open_spooled(self.spool, self.shown, "an image export")?;
        let (store, top, _) = docker_archive::open_tarball(tarball, &Select::Only)?;
        Ok((store, top, self.tag))
    }
}

async fn connect(host: &str) -> Result<Docker, Error> {
    let daemon_err = |reason: String| Error::Daemon {
        host: host.to_owned(),
        reason,
    };
    let docker = if let Some(path) = host.strip_prefix("unix://") {
        if !std::path::Path::new(path).exists() {
            return Err(daemon_err(
                "has no socket there; start Docker, mount its socket, or set DOCKER_HOST".into(),
            ));
        }
        Docker::connect_with_unix(path, TIMEOUT_SECONDS, bollard::API_DEFAULT_VERSION)
    } else if host.starts_with("tcp://") || host.starts_with("http://") {
        Docker::connect_with_http(host, TIMEOUT_SECONDS, bollard::API_DEFAULT_VERSION)
    } else {
        return Err(daemon_err(
            "is not a unix:// or tcp:// address; set DOCKER_HOST to one".into(),
        ));
    }
    .map_err(|e| daemon_err(describe(&e)))?;
    // The engine may speak an older API than the client's default; agree on one.
    docker.negotiate_version().await.map_err(|e| {
        daemon_err(format!(
            "does not answer ({}); is Docker running, and is its socket mounted?",
            describe(&e)
        ))
    })
}

/// The engine's images whose names share the repository (or its last part) with
/// `wanted`, for a message; empty when there are none.
async fn close_names(docker: &Docker, wanted: &str) -> Vec<String> {
    let repository = |name: &str| {
        let name = name.split('@').next().unwrap_or(name);
        match name.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => repo.to_owned(),
            _ => name.to_owned(),
        }
    };
    let last = |name: &str| {
        repository(name)
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    let Ok(images) = docker
        .list_images(None::<bollard::query_parameters::ListImagesOptions>)
        .await
    else {
        return Vec::new();
    };
    let mut close: Vec<String> = images
        .iter()
        .flat_map(|i| i.repo_tags.iter())
        .filter(|name| last(name) == last(wanted))
        .cloned()
        .collect();
    close.sort();
    close.dedup();
    close.truncate(10);
    close
}

/// An engine error in one line: its own message, not the client's debug form.
fn describe(error: &DockerError) -> String {
    match error {
        DockerError::DockerResponseServerError {
            status_code,
            message,
        } => format!("HTTP {status_code}: {}", message.trim()),
        DockerError::RequestTimeoutError => format!("no answer in {TIMEOUT_SECONDS} s"),
        other => crate::sdk::innermost(other),
    }
}
