//! The walk from a top manifest down: every manifest read whole and verified (strict
//! JSON, no cycles, bounded depth), an index cut to the `platforms` asked for, and
//! every blob gathered once. What each adapter hands [`load`] becomes an [`Image`].

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use super::referrers::{self, Attestations, Referrer, Referrers};
use super::*;

/// Builds an [`Image`] from a blob store and the descriptor of its top manifest: reads
/// and verifies every manifest below it, gathers their blobs, and what refers to them.
pub(crate) fn load(
    store: Arc<dyn Blobs>,
    top: &Descriptor,
    tag: Option<String>,
    scope: &Scope,
) -> Result<Image, Error> {
    let mut manifest = read_manifest(&*store, top)?;
    let mut original_digest = None;
    if !scope.platforms.is_empty() {
        if !is_index(&manifest.media_type) {
            return Err(Error::NotAnIndex {
                digest: manifest.digest,
            });
        }
        if let Some(bytes) = keep_platforms(&manifest, &scope.platforms)? {
            original_digest = Some(manifest.digest.clone());
            manifest = Manifest {
                digest: Digest::of(&bytes),
                bytes,
                media_type: manifest.media_type,
            };
        }
    }
    let mut attached = Vec::new();
    if scope.attestations != Attestations::Keep
        && is_index(&manifest.media_type)
        && let Some(taken) = referrers::take_attestations(&manifest)?
    {
        original_digest.get_or_insert(manifest.digest.clone());
        manifest = Manifest {
            digest: Digest::of(&taken.index),
            bytes: taken.index,
            media_type: manifest.media_type,
        };
        attached = taken.attached;
    }
    let attestations_taken = attached.len();
    let mut walk = Walk {
        store: &*store,
        children: Vec::new(),
        blobs: Vec::new(),
        seen: HashSet::new(),
    };
    walk.manifest(&manifest, &mut vec![manifest.digest.clone()])?;

    let mut referrers = Vec::new();
    if scope.attestations == Attestations::Referrers {
        for attestation in attached {
            let Some(subject) = walk
                .children
                .iter()
                .find(|c| c.digest == attestation.describes)
                .cloned()
            else {
                tracing::warn!(
                    "attestations: {} describes {}, which the index does not list; left out",
                    attestation.descriptor.digest,
                    attestation.describes
                );
                continue;
            };
            let read = read_manifest(walk.store, &attestation.descriptor)?;
            let referrer = referrers::as_referrer(&read, &subject)?;
            walk.referrer(&referrer.manifest)?;
            referrers.push(referrer);
        }
    }
    if scope.referrers != Referrers::Off {
        let pushed: Vec<&Manifest> = walk.children.iter().chain([&manifest]).collect();
        let subjects: Vec<Descriptor> = pushed
            .iter()
            .map(|m| Descriptor {
                media_type: m.media_type.clone(),
                digest: m.digest.clone(),
                size: m.bytes.len() as u64,
            })
            .collect();
        let mut known: HashSet<Digest> = pushed
            .iter()
            .map(|m| m.digest.clone())
            .chain(referrers.iter().map(|r| r.manifest.digest.clone()))
            .collect();
        if original_digest.is_some() {
            let left_out = listed(&*store, top, scope.referrers)?;
            if scope.referrers == Referrers::Required {
                refuse_orphans(&*store, top, &left_out, scope, attestations_taken)?;
            }
            if !left_out.is_empty() {
                tracing::warn!(
                    "referrers: {} manifests refer to the source's index {}, which this push rewrote; they are left out, as they would hold for nothing pushed",
                    left_out.len(),
                    top.digest
                );
            }
        }
        referrers.extend(gather(&mut walk, subjects, &mut known, scope.referrers)?);
    }
    Ok(Image {
        children: walk.children,
        blobs: walk.blobs,
        manifest,
        original_digest,
        tag,
        referrers,
        attestations_taken,
        store,
    })
}

/// With `referrers: required`, the first of `candidates` that does refer to the
/// source's index `top`, which `platforms` or `attestations` rewrote, as an error: it
/// would hold for nothing pushed, and required means the signatures and SBOMs or
/// nothing. Each is read and checked as [`gather`] checks one.
fn refuse_orphans(
    store: &dyn Blobs,
    top: &Descriptor,
    candidates: &[Found],
    scope: &Scope,
    attestations_taken: usize,
) -> Result<(), Error> {
    for candidate in candidates {
        let manifest = read_manifest(store, &candidate.descriptor)?;
        if candidate.tag.is_none()
            && referrers::subject_of(&manifest.bytes) != Some(top.digest.clone())
        {
            continue;
        }
        let mut why = Vec::new();
        if !scope.platforms.is_empty() {
            why.push("platforms");
        }
        if attestations_taken > 0 {
            why.push("attestations");
        }
        return Err(Error::OrphanedReferrer {
            referrer: referrers::named(&manifest, candidate.tag.as_deref()),
            subject: top.digest.clone(),
            why: why.join(" and "),
        });
    }
    Ok(())
}

/// The manifests found to refer to one image; beyond this a source is more likely
/// answering in a loop than holding real signatures and SBOMs.
const MAX_REFERRERS: usize = 256;

/// Every manifest in the source that refers to one of `subjects`, and to those, each
/// read and verified, its blobs added to the walk's, in an order where a subject
/// always comes before what refers to it. `known`: the manifests pushed already,
/// never pushed twice.
fn gather(
    walk: &mut Walk<'_>,
    subjects: Vec<Descriptor>,
    known: &mut HashSet<Digest>,
    wanted: Referrers,
) -> Result<Vec<Referrer>, Error> {
    let mut found = Vec::new();
    let mut queue = std::collections::VecDeque::from(subjects);
    while let Some(subject) = queue.pop_front() {
        for candidate in listed(walk.store, &subject, wanted)? {
            if known.contains(&candidate.descriptor.digest) {
                continue;
            }
            if found.len() == MAX_REFERRERS {
                tracing::warn!(
                    "referrers: the source lists more than {MAX_REFERRERS} manifests that refer to this image; the first {MAX_REFERRERS} go along"
                );
                return Ok(found);
            }
            let manifest = read_manifest(walk.store, &candidate.descriptor)?;
            // An OCI referrer proves what it refers to; cosign's tag scheme names it.
            if candidate.tag.is_none()
                && referrers::subject_of(&manifest.bytes) != Some(subject.digest.clone())
            {
                tracing::debug!(
                    "{} is listed as referring to {} but does not; left out",
                    manifest.digest,
                    subject.digest
                );
                continue;
            }
            let children = walk.referrer(&manifest)?;
            known.insert(manifest.digest.clone());
            queue.push_back(Descriptor {
                media_type: manifest.media_type.clone(),
                digest: manifest.digest.clone(),
                size: manifest.bytes.len() as u64,
            });
            found.push(Referrer {
                artifact_type: referrers::artifact_type(&manifest),
                manifest,
                children,
                subject: subject.clone(),
                tag: candidate.tag,
                rewritten_from: None,
            });
        }
    }
    Ok(found)
}

/// What the source lists as referring to `subject`. A source that cannot tell (it
/// refuses the referrers API, or answers what is not a list) fails the push only when
/// the referrers are `required`; else it is one warning, and the image goes without.
fn listed(store: &dyn Blobs, subject: &Descriptor, wanted: Referrers) -> Result<Vec<Found>, Error> {
    match store.referrers(subject) {
        Ok(found) => Ok(found),
        Err(error) if wanted == Referrers::Required => Err(error),
        Err(error) => {
            tracing::warn!(
                "referrers: what refers to {} could not be listed: {error}; it goes without them (referrers: required fails instead)",
                subject.digest.short()
            );
            Ok(Vec::new())
        }
    }
}

/// Reads one manifest whole, verified against its descriptor, with its media type from
/// itself or, where it has none (umoci writes it so), from the descriptor.
fn read_manifest(store: &dyn Blobs, descriptor: &Descriptor) -> Result<Manifest, Error> {
    if descriptor.size > MAX_MANIFEST_BYTES {
        return Err(Error::ManifestTooLarge {
            digest: descriptor.digest.clone(),
            size: descriptor.size,
        });
    }
    let mut reader = BlobReader::new(store.open_manifest(descriptor)?, descriptor.clone());
    let bytes = reader.read_part(descriptor.size as usize)?;
    #[derive(serde::Deserialize)]
    struct MediaTypeOnly {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
    }
    strict_json(&bytes).map_err(|source| Error::Json {
        path: PathBuf::from(descriptor.digest.as_str()),
        what: "the manifest".into(),
        source,
    })?;
    let declared = serde_json::from_slice::<MediaTypeOnly>(&bytes)
        .map_err(|source| Error::Json {
            path: PathBuf::from(descriptor.digest.as_str()),
            what: "the manifest".into(),
            source,
        })?
        .media_type;
    let media_type = match declared {
        Some(in_manifest)
            if !descriptor.media_type.is_empty() && in_manifest != descriptor.media_type =>
        {
            return Err(Error::MediaTypeConflict {
                digest: descriptor.digest.clone(),
                in_manifest,
                in_descriptor: descriptor.media_type.clone(),
            });
        }
        Some(in_manifest) => in_manifest,
        None if !descriptor.media_type.is_empty() => descriptor.media_type.clone(),
        None => {
            return Err(Error::NoMediaType {
                digest: descriptor.digest.clone(),
            });
        }
    };
    Ok(Manifest {
        bytes,
        media_type,
        digest: descriptor.digest.clone(),
    })
}

/// How deep a manifest may nest: an index of manifests with annotations is 4 levels.
const MAX_JSON_DEPTH: usize = 32;

/// Refuses JSON that parsers may read differently: an object with a key twice (one
/// parser takes the first, another the last, and they see two different images), or
/// nesting deeper than [`MAX_JSON_DEPTH`] (a stack exhausted elsewhere, or here).
fn strict_json(bytes: &[u8]) -> Result<(), serde_json::Error> {
    use serde::de::{DeserializeSeed, Error as _, MapAccess, SeqAccess, Visitor};

    #[derive(Clone, Copy)]
    struct Strict(usize);

    impl Strict {
        /// The seed for what this array or object holds, if it may nest one deeper.
        fn inner<E: serde::de::Error>(&self) -> Result<Strict, E> {
            if self.0 >= MAX_JSON_DEPTH {
                return Err(E::custom(format!(
                    "it nests deeper than {MAX_JSON_DEPTH} levels"
                )));
            }
            Ok(Strict(self.0 + 1))
        }
    }

    impl<'de> DeserializeSeed<'de> for Strict {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Strict {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let inner = self.inner()?;
            while seq.next_element_seed(inner)?.is_some() {}
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let inner = self.inner()?;
            let mut keys = HashSet::new();
            while let Some(key) = map.next_key::<String>()? {
                if !keys.insert(key.clone()) {
                    return Err(A::Error::custom(format!(
                        "the key `{key}` appears twice in one object"
                    )));
                }
                map.next_value_seed(inner)?;
            }
            Ok(())
        }
    }

    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    Strict(0).deserialize(&mut deserializer)?;
    deserializer.end()
}

/// The walk down from the top manifest.
struct Walk<'a> {
    store: &'a dyn Blobs,
    children: Vec<Manifest>,
    blobs: Vec<Descriptor>,
    seen: HashSet<Digest>,
}

impl Walk<'_> {
    /// Walks a referrer: its blobs join the image's; for a referrer that is an index,
    /// the manifests it lists are returned, apart from the image's.
    fn referrer(&mut self, manifest: &Manifest) -> Result<Vec<Manifest>, Error> {
        let image_children = std::mem::take(&mut self.children);
        let walked = self.manifest(manifest, &mut vec![manifest.digest.clone()]);
        let children = std::mem::replace(&mut self.children, image_children);
        walked.map(|()| children)
    }

    /// `path`: the digests from the top down to this manifest, to refuse cycles.
    fn manifest(&mut self, manifest: &Manifest, path: &mut Vec<Digest>) -> Result<(), Error> {
        let json_err = |source| Error::Json {
            path: PathBuf::from(manifest.digest.as_str()),
            what: "the manifest".into(),
            source,
        };
        if !is_index(&manifest.media_type) {
            let parsed: oci_spec::image::ImageManifest =
                serde_json::from_slice(&manifest.bytes).map_err(json_err)?;
            for spec in std::iter::once(parsed.config()).chain(parsed.layers()) {
                let descriptor = Descriptor::from_spec(spec)?;
                if self.seen.insert(descriptor.digest.clone()) {
                    self.blobs.push(descriptor);
                }
            }
            return Ok(());
        }
        if path.len() > MAX_INDEX_DEPTH {
            return Err(Error::IndexTooDeep {
                digest: manifest.digest.clone(),
            });
        }
        let index: oci_spec::image::ImageIndex =
            serde_json::from_slice(&manifest.bytes).map_err(json_err)?;
        for spec in index.manifests() {
            let descriptor = Descriptor::from_spec(spec)?;
            if path.contains(&descriptor.digest) {
                return Err(Error::IndexCycle {
                    digest: descriptor.digest,
                });
            }
            if self.children.iter().any(|c| c.digest == descriptor.digest) {
                continue;
            }
            let child = read_manifest(self.store, &descriptor)?;
            path.push(child.digest.clone());
            self.manifest(&child, path)?;
            path.pop();
            self.children.push(child);
        }
        Ok(())
    }
}

/// A new index with only the entries for `platforms`, and the attestation manifests
/// that describe them. Everything else in the index is kept as it was. `None` when the
/// platforms asked for are all the index has.
fn keep_platforms(index: &Manifest, platforms: &[Platform]) -> Result<Option<Vec<u8>>, Error> {
    let json_err = |source| Error::Json {
        path: PathBuf::from(index.digest.as_str()),
        what: "the index".into(),
        source,
    };
    let mut value: serde_json::Value = serde_json::from_slice(&index.bytes).map_err(json_err)?;
    let entries = value
        .get("manifests")
        .and_then(|m| m.as_array())
        .cloned()
        .unwrap_or_default();
    let annotation = |entry: &serde_json::Value, key: &str| {
        entry
            .get("annotations")
            .and_then(|a| a.get(key))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    let kept_images: Vec<String> = entries
        .iter()
        .filter(|e| annotation(e, REFERENCE_TYPE).is_none())
        .filter(|e| {
            e.get("platform")
                .is_some_and(|p| platforms.iter().any(|wanted| wanted.matches(p)))
        })
        .filter_map(|e| e.get("digest").and_then(|d| d.as_str()).map(str::to_owned))
        .collect();
    if kept_images.is_empty() {
        let available: Vec<String> = entries
            .iter()
            .filter_map(|e| e.get("platform"))
            .map(|p| {
                let field = |n: &str| p.get(n).and_then(|v| v.as_str()).unwrap_or("?");
                match p.get("variant").and_then(|v| v.as_str()) {
                    Some(v) => format!("{}/{}/{v}", field("os"), field("architecture")),
                    None => format!("{}/{}", field("os"), field("architecture")),
                }
            })
            .filter(|p| p != "unknown/unknown")
            .collect();
        return Err(Error::NoPlatform {
            digest: index.digest.clone(),
            wanted: platforms
                .iter()
                .map(Platform::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            available: available.join(", "),
        });
    }
    let count = entries.len();
    let kept: Vec<serde_json::Value> = entries
        .into_iter()
        .filter(|e| {
            let digest = e.get("digest").and_then(|d| d.as_str()).unwrap_or_default();
            kept_images.iter().any(|k| k == digest)
                || annotation(e, REFERENCE_DIGEST).is_some_and(|d| kept_images.contains(&d))
        })
        .collect();
    // Every entry kept: the index is the source's, bytes and digest.
    if kept.len() == count {
        return Ok(None);
    }
    if let Some(object) = value.as_object_mut() {
        object.insert("manifests".into(), serde_json::Value::Array(kept));
    }
    serde_json::to_vec(&value).map(Some).map_err(json_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_with_a_key_twice_or_deep_nesting_are_refused() {
        assert!(strict_json(br#"{"a":[1,{"b":null}],"c":"d"}"#).is_ok());
        let twice = strict_json(br#"{"a":{"b":1,"b":2}}"#).unwrap_err();
        assert!(twice.to_string().contains("`b` appears twice"), "{twice}");
        let deep = format!("{}{}", "[".repeat(33), "]".repeat(33));
        let error = strict_json(deep.as_bytes()).unwrap_err();
        assert!(error.to_string().contains("deeper than 32"), "{error}");
        let fine = format!("{}{}", "[".repeat(32), "]".repeat(32));
        assert!(strict_json(fine.as_bytes()).is_ok());
        assert!(strict_json(b"{} trailing").is_err());
    }
}
