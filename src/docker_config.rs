//! The Docker CLI's config file (`$DOCKER_CONFIG/config.json`, default
//! `~/.docker/config.json`): `docker-login` stores the registry's credentials in it,
//! keeping whatever else the file holds (replaced atomically, readable by its owner
//! only), and a registry source reads the login for its host from it.

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

/// `$DOCKER_CONFIG`, else `$HOME/.docker`, as the Docker CLI finds it.
fn config_dir(env: &impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    match env("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        Some(dir) => Some(PathBuf::from(dir)),
        None => Some(PathBuf::from(env("HOME")?).join(".docker")),
    }
}

/// A registry login the Docker CLI would use.
#[derive(Clone)]
pub struct Login {
    pub username: String,
    pub password: String,
}

/// The login for `registry` in the Docker config: from the credential helper the file
/// names for it (`credHelpers`, else `credsStore`), else from `auths`. `None` when
/// there is none, and the registry is then used anonymously.
pub fn lookup(registry: &str, env: &impl Fn(&str) -> Option<String>) -> Option<Login> {
    let dir = config_dir(env)?;
    let config: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("config.json")).ok()?).ok()?;
    // Docker Hub is stored under its v1 address.
    let keys: Vec<String> = if registry == "docker.io" || registry == "index.docker.io" {
        vec![
            "https://index.docker.io/v1/".into(),
            "docker.io".into(),
            "index.docker.io".into(),
        ]
    } else {
        vec![
            registry.to_owned(),
            format!("https://{registry}"),
            format!("http://{registry}"),
        ]
    };
    let helper = keys
        .iter()
        .find_map(|k| config.get("credHelpers")?.get(k)?.as_str())
        .or_else(|| config.get("credsStore")?.as_str())
        .filter(|h| !h.is_empty());
    if let Some(helper) = helper
        && let Some(login) = from_helper(helper, &keys[0])
    {
        return Some(login);
    }
    let auth = keys
        .iter()
        .find_map(|k| config.get("auths")?.get(k)?.get("auth")?.as_str())?;
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .ok()?;
    let (username, password) = String::from_utf8(decoded)
        .ok()?
        .split_once(':')
        .map(|(u, p)| (u.to_owned(), p.to_owned()))?;
    Some(Login { username, password })
}

/// A credential helper that asks someone (a keychain prompt) is given up on after this.
const HELPER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Asks `docker-credential-HELPER get`, as the Docker CLI does.
fn from_helper(helper: &str, registry: &str) -> Option<Login> {
    use std::io::Read as _;
    use std::process::{Command, Stdio};
    let mut child = Command::new(format!("docker-credential-{helper}"))
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(registry.as_bytes()).ok()?;
    let started = std::time::Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() < HELPER_TIMEOUT => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            _ => {
                tracing::warn!(
                    "docker-credential-{helper} did not answer in {} s; going on without its login",
                    HELPER_TIMEOUT.as_secs()
                );
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    };
    let mut stdout = Vec::new();
    child.stdout.take()?.read_to_end(&mut stdout).ok()?;
    if !status.success() {
        return None;
    }
    let answer: serde_json::Value = serde_json::from_slice(&stdout).ok()?;
    Some(Login {
        username: answer.get("Username")?.as_str()?.to_owned(),
        password: answer.get("Secret")?.as_str()?.to_owned(),
    })
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
    let dir = config_dir(env).ok_or(Error::NoHome)?;
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
    fn docker_hub_login_is_found_under_its_v1_address() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("config.json"),
            r#"{"auths":{"https://index.docker.io/v1/":{"auth":"dXNlcjpwYXNz"},"ghcr.io":{"auth":"Z2g6dG9rZW4="}}}"#,
        )
        .unwrap();
        let home = dir.path().to_str().unwrap().to_owned();
        let env = |name: &str| (name == "DOCKER_CONFIG").then(|| home.clone());
        for host in ["docker.io", "index.docker.io"] {
            let login = lookup(host, &env).expect(host);
            assert_eq!(
                (login.username.as_str(), login.password.as_str()),
                ("user", "pass")
            );
        }
        assert_eq!(
            lookup("ghcr.io", &env).map(|l| l.password).as_deref(),
            Some("token")
        );
        assert!(lookup("quay.io", &env).is_none());
    }

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
