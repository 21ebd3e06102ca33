//! What refers to an image: OCI 1.1 referrers (a manifest whose `subject` names
//! another: a Notation or cosign 3 signature, an SBOM attached with oras), cosign's
//! older tag scheme (`sha256-<hex>.sig`, `.att`, `.sbom`, kept under those tags), and
//! BuildKit's attestation manifests, which sit in the index as `unknown/unknown`
//! entries and can be moved out of it into referrers (`attestations: referrers`).
//!
//! Each source says which manifests it holds that may refer to a given one
//! ([`super::Blobs::referrers`]); the walk (`walk.rs`) reads each, verified, keeps those that
//! do refer to it, and asks again for each kept one, so a signature on an SBOM goes
//! along with the SBOM. Bytes are never changed, except for an attestation moved out
//! of its index, which gains `subject` and `artifactType` (its in-toto statements,
//! the layers, stay as they were).

use std::path::PathBuf;

use super::{Descriptor, Digest, Error, Manifest, REFERENCE_DIGEST, REFERENCE_TYPE};

/// The `artifactType` of an attestation moved out of its index: in-toto statements.
pub const IN_TOTO: &str = "application/vnd.in-toto+json";

/// The value of `vnd.docker.reference.type` that marks BuildKit's attestations.
const ATTESTATION_MANIFEST: &str = "attestation-manifest";

/// What becomes of BuildKit's attestation manifests in an index (`attestations`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Attestations {
    /// In the index as the source has it: bytes and digest unchanged.
    #[default]
    Keep,
    /// Out of the index, each pushed as a referrer of the platform manifest it
    /// describes.
    Referrers,
    /// Out of the index, not pushed.
    Drop,
}

impl Attestations {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "keep" => Some(Self::Keep),
            "referrers" => Some(Self::Referrers),
            "drop" => Some(Self::Drop),
            _ => None,
        }
    }
}

/// Whether referrers go along (`referrers`): not at all, where the destination stores
/// them (a refusal is a warning), or all of them (a refusal fails the push).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Referrers {
    Off,
    #[default]
    Carry,
    Required,
}

impl Referrers {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "false" => Some(Self::Off),
            "true" => Some(Self::Carry),
            "required" => Some(Self::Required),
            _ => None,
        }
    }
}

/// A manifest that refers to one the push sends, pushed after it.
#[derive(Clone, Debug)]
pub struct Referrer {
    pub manifest: Manifest,
    /// For a referrer that is an index: the manifests it lists, each before those that
    /// list it.
    pub children: Vec<Manifest>,
    /// What it refers to.
    pub subject: Descriptor,
    /// Its `artifactType`, else its config's or first layer's media type: what a
    /// reader is told it is.
    pub artifact_type: String,
    /// The tag cosign's scheme keeps it under (`sha256-<hex>.sig`).
    pub tag: Option<String>,
    /// The digest the source had, for an attestation this push gave a `subject`.
    pub rewritten_from: Option<Digest>,
}

/// The JSON of a manifest, for the fields this module reads.
fn json(manifest: &Manifest) -> Result<serde_json::Value, Error> {
    serde_json::from_slice(&manifest.bytes).map_err(|source| Error::Json {
        path: PathBuf::from(manifest.digest.as_str()),
        what: "the manifest".into(),
        source,
    })
}

fn text<'a>(value: &'a serde_json::Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(|v| v.as_str())
}

/// What a reader is told a referrer is: its `artifactType`, else its config's media
/// type where that is not an image's, else its first layer's (cosign's signatures),
/// else its own media type.
pub(super) fn artifact_type(manifest: &Manifest) -> String {
    let Ok(value) = json(manifest) else {
        return manifest.media_type.clone();
    };
    let image_config = [
        "application/vnd.oci.image.config.v1+json",
        "application/vnd.docker.container.image.v1+json",
        "application/vnd.oci.empty.v1+json",
    ];
    text(&value, "/artifactType")
        .or_else(|| text(&value, "/config/mediaType").filter(|t| !image_config.contains(t)))
        .or_else(|| text(&value, "/layers/0/mediaType"))
        .unwrap_or(&manifest.media_type)
        .to_owned()
}

/// A referrer as a message names it: what it is, its digest, and its cosign tag.
pub(super) fn named(manifest: &Manifest, tag: Option<&str>) -> String {
    let tag = tag.map(|t| format!(" (tag {t})")).unwrap_or_default();
    format!("{} {}{tag}", artifact_type(manifest), manifest.digest)
}

/// The digest a manifest's `subject` names, if it has one.
pub fn subject_of(bytes: &[u8]) -> Option<Digest> {
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    Digest::parse(text(&value, "/subject/digest")?).ok()
}

/// A referrer as a referrers list names it: its descriptor with its `artifactType`
/// and annotations (distribution-spec 1.1, the referrers API's answer).
pub fn referrer_descriptor(manifest: &Manifest) -> serde_json::Value {
    let value = json(manifest).unwrap_or_default();
    let mut descriptor = serde_json::json!({
        "mediaType": manifest.media_type,
        "digest": manifest.digest.as_str(),
        "size": manifest.bytes.len(),
        "artifactType": artifact_type(manifest),
    });
    if let Some(annotations) = value.get("annotations") {
        descriptor["annotations"] = annotations.clone();
    }
    descriptor
}

/// BuildKit's attestation entries of an index: each entry's descriptor and the digest
/// of the platform manifest it describes.
pub(super) struct Attached {
    pub descriptor: Descriptor,
    pub describes: Digest,
}

/// An index without its attestation entries, and those entries.
pub(super) struct Taken {
    pub index: Vec<u8>,
    pub attached: Vec<Attached>,
}

/// The index without its attestation entries (`None` when it has none), and those
/// entries.
pub(super) fn take_attestations(index: &Manifest) -> Result<Option<Taken>, Error> {
    let mut value = json(index)?;
    let Some(entries) = value.get_mut("manifests").and_then(|m| m.as_array_mut()) else {
        return Ok(None);
    };
    let mut attached = Vec::new();
    let mut kept = Vec::new();
    for entry in entries.drain(..) {
        let is_attestation = text(
            &entry,
            &format!("/annotations/{}", pointer_key(REFERENCE_TYPE)),
        ) == Some(ATTESTATION_MANIFEST);
        let describes = text(
            &entry,
            &format!("/annotations/{}", pointer_key(REFERENCE_DIGEST)),
        )
        .and_then(|d| Digest::parse(d).ok());
        match (is_attestation, describes) {
            (true, Some(describes)) => {
                let spec: oci_spec::image::Descriptor =
                    serde_json::from_value(entry).map_err(|source| Error::Json {
                        path: PathBuf::from(index.digest.as_str()),
                        what: "an attestation entry of the index".into(),
                        source,
                    })?;
                attached.push(Attached {
                    descriptor: Descriptor::from_spec(&spec)?,
                    describes,
                });
            }
            _ => kept.push(entry),
        }
    }
    if attached.is_empty() {
        return Ok(None);
    }
    *entries = kept;
    let bytes = serde_json::to_vec(&value).map_err(|source| Error::Json {
        path: PathBuf::from(index.digest.as_str()),
        what: "the index".into(),
        source,
    })?;
    Ok(Some(Taken {
        index: bytes,
        attached,
    }))
}

/// A JSON pointer's form of an object key (`/` and `~` escaped).
fn pointer_key(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// An attestation manifest as a referrer of the platform manifest it describes: the
/// same manifest with `artifactType` and `subject` added, its layers (the in-toto
/// statements) untouched.
pub(super) fn as_referrer(attestation: &Manifest, subject: &Manifest) -> Result<Referrer, Error> {
    let mut value = json(attestation)?;
    let object = value.as_object_mut().ok_or_else(|| Error::Json {
        path: PathBuf::from(attestation.digest.as_str()),
        what: "the attestation manifest".into(),
        source: serde::de::Error::custom("it is not an object"),
    })?;
    let descriptor = Descriptor {
        media_type: subject.media_type.clone(),
        digest: subject.digest.clone(),
        size: subject.bytes.len() as u64,
    };
    object.insert("artifactType".into(), IN_TOTO.into());
    object.insert(
        "subject".into(),
        serde_json::json!({
            "mediaType": descriptor.media_type,
            "digest": descriptor.digest.as_str(),
            "size": descriptor.size,
        }),
    );
    let bytes = serde_json::to_vec(&value).map_err(|source| Error::Json {
        path: PathBuf::from(attestation.digest.as_str()),
        what: "the attestation manifest".into(),
        source,
    })?;
    Ok(Referrer {
        manifest: Manifest {
            digest: Digest::of(&bytes),
            bytes,
            media_type: attestation.media_type.clone(),
        },
        children: Vec::new(),
        subject: descriptor,
        artifact_type: IN_TOTO.to_owned(),
        tag: None,
        rewritten_from: Some(attestation.digest.clone()),
    })
}

/// Whether a tag names an artifact of cosign's scheme (`sha256-<hex>.sig`, `.att`,
/// `.sbom`), and the digest of the manifest it belongs to.
pub(super) fn cosign_subject(tag: &str) -> Option<Digest> {
    let (name, suffix) = tag.rsplit_once('.')?;
    if !COSIGN_SUFFIXES.contains(&suffix) {
        return None;
    }
    Digest::parse(&name.replacen("sha256-", "sha256:", 1)).ok()
}

/// cosign's tag scheme: signatures, attestations, SBOMs.
pub(super) const COSIGN_SUFFIXES: [&str; 3] = ["sig", "att", "sbom"];

/// The tags of cosign's scheme for a manifest, and the OCI 1.1 fallback tag for its
/// referrers (`sha256-<hex>`, first).
pub(super) fn tags_for(digest: &Digest) -> Vec<String> {
    let base = format!("sha256-{}", digest.hex());
    std::iter::once(base.clone())
        .chain(COSIGN_SUFFIXES.iter().map(|s| format!("{base}.{s}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(value: serde_json::Value) -> Manifest {
        let bytes = serde_json::to_vec(&value).unwrap();
        Manifest {
            digest: Digest::of(&bytes),
            bytes,
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        }
    }

    #[test]
    fn a_referrer_is_told_by_its_artifact_type_else_its_config_else_its_first_layer() {
        let sbom = manifest(serde_json::json!({
            "artifactType": "application/spdx+json",
            "config": {"mediaType": "application/vnd.oci.empty.v1+json"},
        }));
        assert_eq!(artifact_type(&sbom), "application/spdx+json");
        let notation = manifest(serde_json::json!({
            "config": {"mediaType": "application/vnd.cncf.notary.signature"},
        }));
        assert_eq!(
            artifact_type(&notation),
            "application/vnd.cncf.notary.signature"
        );
        // cosign's signatures: an image config, a layer of simple signing.
        let cosign = manifest(serde_json::json!({
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json"},
            "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json"}],
        }));
        assert_eq!(
            artifact_type(&cosign),
            "application/vnd.dev.cosign.simplesigning.v1+json"
        );
    }

    #[test]
    fn cosign_tags_name_the_manifest_they_belong_to() {
        let digest = Digest::of(b"image");
        let tags = tags_for(&digest);
        assert_eq!(tags[0], format!("sha256-{}", digest.hex()));
        assert_eq!(cosign_subject(&tags[1]), Some(digest.clone()));
        assert_eq!(cosign_subject(&tags[3]), Some(digest));
        assert_eq!(cosign_subject(&tags[0]), None);
        assert_eq!(cosign_subject("sha256-abc.sig"), None);
        assert_eq!(cosign_subject("v1.2.sig"), None);
    }

    #[test]
    fn attestations_leave_the_index_and_gain_a_subject_their_layers_unchanged() {
        let platform = manifest(serde_json::json!({"layers": []}));
        let attestation = manifest(serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": Digest::of(b"{}").as_str(), "size": 2},
            "layers": [{"mediaType": IN_TOTO, "digest": Digest::of(b"statement").as_str(), "size": 9,
                        "annotations": {"in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2"}}],
        }));
        let index = Manifest {
            media_type: "application/vnd.oci.image.index.v1+json".into(),
            ..manifest(serde_json::json!({
                "schemaVersion": 2,
                "manifests": [
                    {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": platform.digest.as_str(), "size": platform.bytes.len(),
                     "platform": {"os": "linux", "architecture": "amd64"}},
                    {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": attestation.digest.as_str(), "size": attestation.bytes.len(),
                     "platform": {"os": "unknown", "architecture": "unknown"},
                     "annotations": {"vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": platform.digest.as_str()}},
                ],
            }))
        };
        let Taken {
            index: bytes,
            attached,
        } = take_attestations(&index).unwrap().unwrap();
        let rewritten: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(rewritten["manifests"].as_array().unwrap().len(), 1);
        assert_eq!(
            rewritten["manifests"][0]["digest"],
            platform.digest.as_str()
        );
        assert_eq!(attached.len(), 1);
        assert_eq!(attached[0].describes, platform.digest);
        assert_eq!(attached[0].descriptor.digest, attestation.digest);

        let referrer = as_referrer(&attestation, &platform).unwrap();
        assert_eq!(
            subject_of(&referrer.manifest.bytes),
            Some(platform.digest.clone())
        );
        assert_eq!(referrer.rewritten_from, Some(attestation.digest.clone()));
        let value: serde_json::Value = serde_json::from_slice(&referrer.manifest.bytes).unwrap();
        let before: serde_json::Value = serde_json::from_slice(&attestation.bytes).unwrap();
        assert_eq!(value["layers"], before["layers"]);
        assert_eq!(value["artifactType"], IN_TOTO);
        assert_eq!(value["subject"]["size"], platform.bytes.len());
        // An index with no attestation is left as it is.
        assert!(
            take_attestations(&Manifest { bytes, ..index })
                .unwrap()
                .is_none()
        );
    }
}
