//! `docker-login`: stores the registry's credentials in the Docker CLI's config file
//! (`$DOCKER_CONFIG/config.json`, default `~/.docker/config.json`), keeping whatever
//! else the file holds. The file is replaced atomically and readable by its owner only.

use std::fs;
use std::io::Write as _;
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

/// What [`store`] wrote.
pub struct Stored {
    pub path: PathBuf,
    /// A credential helper docker consults for this registry before `auths`, if the
    /// file names one (`credHelpers.REGISTRY` or `credsStore`).
    pub shadowed_by: Option<String>,
}

/// Writes `auth` (base64 of `user:password`) for `registry`.
pub fn store(
    registry: &str,
    auth: &str,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Stored, Error> {
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

    let shadowed_by = ["credHelpers", "credsStore"].iter().find_map(|key| {
        let entry = config.get(*key)?;
        let helper = if *key == "credHelpers" {
            entry.get(registry)?
        } else {
            entry
        };
        helper.as_str().filter(|h| !h.is_empty()).map(str::to_owned)
    });

    let text = serde_json::to_vec_pretty(&config).map_err(|e| io_err(&path)(e.into()))?;
    // A fresh file of the owner's only (mode 0600), renamed over the old one.
    let mut temporary = tempfile::NamedTempFile::new_in(&dir).map_err(io_err(&dir))?;
    temporary
        .write_all(&text)
        .map_err(io_err(temporary.path()))?;
    temporary
        .persist(&path)
        .map_err(|e| io_err(&path)(e.error))?;
    Ok(Stored { path, shadowed_by })
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
            r#"{"auths":{"ghcr.io":{"auth":"eA=="}},"credHelpers":{"1.dkr.ecr.us-east-1.amazonaws.com":"ecr-login"}}"#,
        )
        .unwrap();
        let home = dir.path().to_str().unwrap().to_owned();
        let env = |name: &str| (name == "DOCKER_CONFIG").then(|| home.clone());
        let stored = store("1.dkr.ecr.us-east-1.amazonaws.com", "QVdTOnB3", &env).unwrap();
        assert_eq!(stored.path, config);
        assert_eq!(stored.shadowed_by.as_deref(), Some("ecr-login"));
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
