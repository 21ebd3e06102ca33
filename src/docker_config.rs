//! `docker-login`: stores the registry's credentials in the Docker CLI's config file
//! (`$DOCKER_CONFIG/config.json`, default `~/.docker/config.json`), keeping whatever
//! else the file holds. The file is replaced atomically and readable by its owner only.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("docker-login: no DOCKER_CONFIG or HOME to find the Docker config in")]
    NoHome,
    #[error("docker-login: {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("docker-login: {path} is not a JSON object; fix or remove it")]
    NotJson { path: PathBuf },
}

/// Writes `auth` (base64 of `user:password`) for `registry`; returns the file written.
pub fn store(
    registry: &str,
    auth: &str,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<PathBuf, Error> {
    let dir = match env("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env("HOME").ok_or(Error::NoHome)?).join(".docker"),
    };
    let path = dir.join("config.json");
    let io_err = |path: &Path| {
        let path = path.to_owned();
        move |source| Error::Io { path, source }
    };
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let mut config = match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .filter(|v| v.is_object())
            .ok_or_else(|| Error::NotJson { path: path.clone() })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::json!({}),
        Err(e) => return Err(io_err(&path)(e)),
    };
    let auths = config
        .as_object_mut()
        .and_then(|c| {
            c.entry("auths")
                .or_insert_with(|| serde_json::json!({}))
                .as_object_mut()
        })
        .ok_or_else(|| Error::NotJson { path: path.clone() })?;
    auths.insert(registry.to_owned(), serde_json::json!({ "auth": auth }));

    let temporary = dir.join(".config.json.ecr-push");
    let text = serde_json::to_vec_pretty(&config).map_err(|e| io_err(&path)(e.into()))?;
    write_private(&temporary, &text).map_err(io_err(&temporary))?;
    fs::rename(&temporary, &path).map_err(io_err(&path))?;
    Ok(path)
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_other_entries_and_adds_the_registry() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.json");
        fs::write(
            &config,
            r#"{"auths":{"ghcr.io":{"auth":"eA=="}},"credHelpers":{}}"#,
        )
        .unwrap();
        let home = dir.path().to_str().unwrap().to_owned();
        let env = |name: &str| (name == "DOCKER_CONFIG").then(|| home.clone());
        let written = store("1.dkr.ecr.us-east-1.amazonaws.com", "QVdTOnB3", &env).unwrap();
        assert_eq!(written, config);
        let value: serde_json::Value = serde_json::from_slice(&fs::read(&config).unwrap()).unwrap();
        assert_eq!(value["auths"]["ghcr.io"]["auth"], "eA==");
        assert_eq!(
            value["auths"]["1.dkr.ecr.us-east-1.amazonaws.com"]["auth"],
            "QVdTOnB3"
        );
        assert!(value.get("credHelpers").is_some());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&config).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
