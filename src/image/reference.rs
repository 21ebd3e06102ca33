//! An image reference in skopeo's transport syntax, parsed once into the parts each
//! adapter takes: `docker://HOST/REPO[:TAG|@DIGEST]` (a registry), `docker-daemon:NAME[:TAG]`
//! or a bare `NAME[:TAG]` (the Docker engine), `oci:DIR[:REF]`, `oci-archive:FILE[:REF]`
//! and `docker-archive:FILE[:NAME:TAG|:@N]`.
//!
//! Only the text is read here. Whether a path exists, and whether it holds what its
//! transport reads, is found when the image is opened, so a parse never touches a file
//! and the fuzz target and the login lookup can parse what the user wrote as often as
//! they like.

use std::path::PathBuf;

use super::docker_archive::{Select, normalize};
use super::{Digest, Error};

/// Where an image is read from, and what in it is pushed.
#[derive(Debug, PartialEq)]
pub(super) enum Reference {
    Registry(crate::registry::Reference),
    Daemon(DaemonRef),
    /// A layout folder; `reference` picks a manifest by its ref name.
    OciLayout {
        path: PathBuf,
        reference: Option<String>,
    },
    /// A tar of a layout; `reference` as for a folder.
    OciArchive {
        path: PathBuf,
        reference: Option<String>,
    },
    /// A `docker save` tar. A FILE that is not there is the first thing to fix, so a
    /// selector that does not parse keeps its reason until the file has been found.
    DockerArchive {
        path: PathBuf,
        select: Result<Select, &'static str>,
    },
}

/// An image in the daemon, as the user named it.
#[derive(Debug, PartialEq)]
pub(super) struct DaemonRef {
    /// As the engine's API takes it: `app:v1`, `ghcr.io/o/app@sha256:…`.
    pub(super) name: String,
    /// The tag it names, the default tag of the push.
    pub(super) tag: Option<String>,
}

impl Reference {
    /// Parses `text`; the error says what is wrong with it, and how to write it.
    pub(super) fn parse(text: &str) -> Result<Self, Error> {
        if let Some(rest) = text.strip_prefix("docker:") {
            return registry(rest).map(Self::Registry);
        }
        let owned = |reference: Option<&str>| reference.map(str::to_owned);
        match text.split_once(':') {
            Some(("oci", rest)) => {
                let (path, reference) = local(text, "oci", "DIR[:REF]", rest)?;
                Ok(Self::OciLayout {
                    path,
                    reference: owned(reference),
                })
            }
            Some(("oci-archive", rest)) => {
                let (path, reference) = local(text, "oci-archive", "FILE", rest)?;
                Ok(Self::OciArchive {
                    path,
                    reference: owned(reference),
                })
            }
            Some(("docker-archive", rest)) => {
                let (path, reference) = local(text, "docker-archive", "FILE", rest)?;
                Ok(Self::DockerArchive {
                    path,
                    select: select(reference),
                })
            }
            Some((transport @ ("containers-storage" | "dir"), _)) => {
                Err(Error::UnsupportedTransport {
                    transport: transport.to_owned(),
                })
            }
            Some(("docker-daemon", name)) => daemon(text, name, true).map(Self::Daemon),
            _ => daemon(text, text, false).map(Self::Daemon),
        }
    }
}

/// What follows `docker:`, with or without its `//`.
fn registry(rest: &str) -> Result<crate::registry::Reference, Error> {
    let name = rest.strip_prefix("//").unwrap_or(rest);
    crate::registry::Reference::parse(name).map_err(|e| {
        Error::reference(
            &format!("docker://{name}"),
            Some(&format!(
                "{e}; write docker://HOST/REPO:TAG or docker://HOST/REPO@sha256:DIGEST"
            )),
        )
    })
}

/// The path and REF of what follows a local transport; `form` is how to write it.
fn local<'a>(
    text: &str,
    transport: &str,
    form: &str,
    rest: &'a str,
) -> Result<(PathBuf, Option<&'a str>), Error> {
    let (path, reference) = split_path_ref(rest);
    if path.is_empty() {
        return Err(Error::reference(
            text,
            Some(&format!("it names no path; write {transport}:{form}")),
        ));
    }
    Ok((PathBuf::from(path), reference))
}

/// Splits `PATH[:REF]` the way skopeo does for oci: and oci-archive: (first colon).
fn split_path_ref(rest: &str) -> (&str, Option<&str>) {
    match rest.split_once(':') {
        Some((path, reference)) if !reference.is_empty() => (path, Some(reference)),
        Some((path, _)) => (path, None),
        None => (rest, None),
    }
}

/// Which image of a docker-archive its `NAME[:TAG]` or `@N` picks; the reason when it
/// is neither.
fn select(reference: Option<&str>) -> Result<Select, &'static str> {
    let Some(reference) = reference else {
        return Ok(Select::Only);
    };
    match reference.strip_prefix('@') {
        Some(n) => n
            .parse()
            .map(Select::Position)
            .map_err(|_| "@N takes a number"),
        None => normalize(reference)
            .map(Select::Name)
            .ok_or("what follows the file is not NAME[:TAG]"),
    }
}

/// The daemon image `name` names; `text` is the whole reference, and `explicit` whether
/// it wrote the `docker-daemon:` transport.
fn daemon(text: &str, name: &str, explicit: bool) -> Result<DaemonRef, Error> {
    let invalid = || {
        Error::reference(
            text,
            Some("a Docker daemon image is NAME[:TAG] or NAME@sha256:DIGEST"),
        )
    };
    let (named, digest) = match name.split_once('@') {
        Some((named, digest)) => (named, Some(digest)),
        None => (name, None),
    };
    let Some(normalized) = normalize(named) else {
        // A bare word that is no image name is most likely a misspelt transport.
        return Err(if explicit {
            invalid()
        } else {
            Error::reference(text, None)
        });
    };
    if let Some(digest) = digest
        && Digest::parse(digest).is_err()
    {
        return Err(invalid());
    }
    // `app` and `app:latest` name the same image; only a tag written out is a tag here,
    // and a digest names no tag.
    let named_tag = named
        .rsplit_once(':')
        .filter(|(_, t)| !t.contains('/'))
        .map(|_| normalized.rsplit_once(':').map(|(_, t)| t.to_owned()));
    let tag = named_tag.flatten().filter(|_| digest.is_none());
    // The engine exports every tag of a bare repository name; Docker means :latest.
    let name = if tag.is_none() && digest.is_none() {
        format!("{name}:latest")
    } else {
        name.to_owned()
    };
    Ok(DaemonRef { name, tag })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn daemon_parsed(reference: &str) -> Option<(String, Option<String>)> {
        match Reference::parse(reference) {
            Ok(Reference::Daemon(r)) => Some((r.name, r.tag)),
            _ => None,
        }
    }

    #[test]
    fn daemon_references_are_names_with_or_without_the_transport() {
        let some = |name: &str, tag: Option<&str>| Some((name.to_owned(), tag.map(str::to_owned)));
        let parsed = daemon_parsed;
        assert_eq!(parsed("docker-daemon:app:v1"), some("app:v1", Some("v1")));
        assert_eq!(parsed("app:v1"), some("app:v1", Some("v1")));
        assert_eq!(parsed("app"), some("app:latest", None));
        assert_eq!(
            parsed("localhost:5000/team/app"),
            some("localhost:5000/team/app:latest", None)
        );
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            parsed(&format!("ghcr.io/o/app@{digest}")),
            some(&format!("ghcr.io/o/app@{digest}"), None)
        );
        assert_eq!(parsed("oci:dir:v1"), None);
        assert_eq!(parsed("docker-archive:app.tar"), None);
        for invalid in [
            "docker-daemon:App",
            "app@sha256:short",
            "oci-archve:./image.tar",
        ] {
            assert!(Reference::parse(invalid).is_err(), "{invalid}");
        }
    }

    #[test]
    fn split_path_ref_uses_the_first_colon() {
        assert_eq!(split_path_ref("dir"), ("dir", None));
        assert_eq!(split_path_ref("dir:v1"), ("dir", Some("v1")));
        assert_eq!(split_path_ref("dir:"), ("dir", None));
        assert_eq!(split_path_ref("dir:a:b"), ("dir", Some("a:b")));
    }

    #[test]
    fn local_transports_split_their_path_and_what_picks_the_image() {
        assert_eq!(
            Reference::parse("oci:build/layout:v1").ok(),
            Some(Reference::OciLayout {
                path: "build/layout".into(),
                reference: Some("v1".into())
            })
        );
        assert_eq!(
            Reference::parse("oci-archive:image.tar:").ok(),
            Some(Reference::OciArchive {
                path: "image.tar".into(),
                reference: None
            })
        );
        let archive = |text| match Reference::parse(text) {
            Ok(Reference::DockerArchive { path, select }) => Some((path, select)),
            _ => None,
        };
        assert_eq!(
            archive("docker-archive:app.tar:app:v1"),
            Some((
                "app.tar".into(),
                Ok(Select::Name("docker.io/library/app:v1".into()))
            ))
        );
        assert_eq!(
            archive("docker-archive:app.tar:@1"),
            Some(("app.tar".into(), Ok(Select::Position(1))))
        );
        assert_eq!(
            archive("docker-archive:app.tar:@x"),
            Some(("app.tar".into(), Err("@N takes a number")))
        );
        assert!(matches!(
            Reference::parse("dir:/tmp/x"),
            Err(Error::UnsupportedTransport { .. })
        ));
        assert!(Reference::parse("docker-archive:").is_err());
    }

    #[test]
    fn registry_references_take_one_or_two_slashes() {
        let registry = |text| match Reference::parse(text) {
            Ok(Reference::Registry(r)) => Some(r.registry),
            _ => None,
        };
        assert_eq!(
            registry("docker://ghcr.io/o/app:v1").as_deref(),
            Some("ghcr.io")
        );
        assert_eq!(registry("docker:ghcr.io/o/app").as_deref(), Some("ghcr.io"));
        assert!(Reference::parse("docker://localhost:5000/App:v1").is_err());
    }
}
