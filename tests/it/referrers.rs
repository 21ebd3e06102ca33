//! The supply chain goes along: what refers to an image (an SBOM, a signature on that
//! SBOM, cosign's `.sig` and `.att` tags) lands in moto byte for byte after the image
//! and before its tags; BuildKit's attestations leave the index as referrers of their
//! platforms; a referrer ECR refuses is one warning, unless `referrers: required`.
//!
//! The artifacts are written by oras-py (0.2.43, into docker-registry) or as their
//! tools write them: OCI 1.1 artifacts (the empty config, `artifactType`, `subject`) as
//! in the OCI image-spec 1.1 "Guidelines for Artifact Usage" and as `oras attach`
//! pushes them; cosign's tag-scheme signatures and
//! attestations as in sigstore/cosign `specs/SIGNATURE_SPEC.md` and
//! `specs/ATTESTATION_SPEC.md` (an image config, one layer of simple signing or of a
//! DSSE envelope, the signature in an annotation).

use serde_json::{Value, json};

use crate::support::*;

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const EMPTY: &[u8] = b"{}";

/// A manifest and the blobs it lists, not yet stored anywhere.
pub(crate) struct Artifact {
    pub(crate) bytes: Vec<u8>,
    pub(crate) digest: String,
    blobs: Vec<Vec<u8>>,
}

impl Artifact {
    fn descriptor(&self, artifact_type: Option<&str>) -> Value {
        let mut d = json!({"mediaType": MANIFEST, "digest": self.digest, "size": self.bytes.len()});
        if let Some(t) = artifact_type {
            d["artifactType"] = t.into();
        }
        d
    }
}

fn descriptor(media_type: &str, bytes: &[u8]) -> Value {
    json!({"mediaType": media_type, "digest": sha256(bytes), "size": bytes.len()})
}

/// An OCI 1.1 artifact of one layer, referring to `subject` (media type, bytes).
fn oci_artifact(artifact_type: &str, layer: &[u8], subject: (&str, &[u8])) -> Artifact {
    let bytes = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "artifactType": artifact_type,
        "config": descriptor("application/vnd.oci.empty.v1+json", EMPTY),
        "layers": [descriptor(artifact_type, layer)],
        "subject": descriptor(subject.0, subject.1),
        "annotations": {"org.opencontainers.image.created": "2026-12-01T10:00:00Z"},
    }))
    .unwrap();
    Artifact {
        digest: sha256(&bytes),
        bytes,
        blobs: vec![EMPTY.to_vec(), layer.to_vec()],
    }
}

/// A signature or attestation of cosign's tag scheme: no `subject`, found by its tag.
pub(crate) fn cosign_artifact(
    layer_type: &str,
    layer: &[u8],
    annotation: (&str, &str),
) -> Artifact {
    let config = br#"{"architecture":"","created":"0001-01-01T00:00:00Z","history":[{"created":"0001-01-01T00:00:00Z"}],"os":"","rootfs":{"type":"layers","diff_ids":[]},"config":{}}"#;
    let mut layer_descriptor = descriptor(layer_type, layer);
    layer_descriptor["annotations"] = json!({annotation.0: annotation.1});
    let bytes = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": descriptor("application/vnd.oci.image.config.v1+json", config),
        "layers": [layer_descriptor],
    }))
    .unwrap();
    Artifact {
        digest: sha256(&bytes),
        bytes,
        blobs: vec![config.to_vec(), layer.to_vec()],
    }
}

/// An SPDX SBOM of `subject` and a Notation-style signature on that SBOM.
pub(crate) fn sbom_and_signature(subject: (&str, &[u8])) -> (Artifact, Artifact) {
    let sbom = oci_artifact(
        "application/spdx+json",
        br#"{"spdxVersion":"SPDX-2.3","name":"app","packages":[{"name":"openssl","versionInfo":"3.0.15"}]}"#,
        subject,
    );
    let signature = oci_artifact(
        "application/vnd.cncf.notary.signature",
        &random_bytes(170, 1200),
        (MANIFEST, &sbom.bytes),
    );
    (sbom, signature)
}

/// Adds artifacts to an OCI layout's blobs and, unnamed, to its index.json, as
/// `oras cp -r --to-oci-layout` leaves them.
pub(crate) fn add_to_layout(layout: &std::path::Path, artifacts: &[&Artifact]) {
    for artifact in artifacts {
        add_named_to_layout(layout, artifact, None);
    }
}

/// Adds one artifact to an OCI layout, its index.json entry named `name` if given: a
/// tag of cosign's scheme, by which the layout source knows what it signs.
pub(crate) fn add_named_to_layout(
    layout: &std::path::Path,
    artifact: &Artifact,
    name: Option<&str>,
) {
    let blobs = layout.join("blobs/sha256");
    let index_path = layout.join("index.json");
    let mut index: Value = serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    for blob in artifact.blobs.iter().chain([&artifact.bytes]) {
        std::fs::write(blobs.join(sha256(blob).trim_start_matches("sha256:")), blob).unwrap();
    }
    let mut entry = artifact.descriptor(None);
    if let Some(name) = name {
        entry["annotations"] = json!({"org.opencontainers.image.ref.name": name});
    }
    index["manifests"].as_array_mut().unwrap().push(entry);
    std::fs::write(index_path, index.to_string()).unwrap();
}

/// Stores an artifact of cosign's tag scheme under its tag, as cosign does.
fn add_to_registry(registry: &Registry, repository: &str, artifact: &Artifact, tag: &str) {
    for blob in &artifact.blobs {
        registry.put_blob(repository, blob);
    }
    registry.put_manifest(repository, tag, MANIFEST, &artifact.bytes);
}

/// moto holds `artifact` under its digest with its exact bytes.
fn assert_in_moto(stack: &Stack, repository: &str, artifact: &Artifact) {
    let (_, bytes) = stack
        .moto
        .manifest_by_digest(CI_ACCOUNT, repository, &artifact.digest)
        .unwrap_or_else(|| panic!("{} not in {repository}", artifact.digest));
    assert_eq!(
        bytes.as_bytes(),
        artifact.bytes.as_slice(),
        "{}",
        artifact.digest
    );
    let digests: Vec<String> = artifact.blobs.iter().map(|b| sha256(b)).collect();
    let available = stack.moto.available_blobs(CI_ACCOUNT, repository, &digests);
    for blob in &artifact.blobs {
        assert_eq!(available.get(&sha256(blob)), Some(&(blob.len() as i64)));
    }
}

fn referrers_output(run: &Run) -> Vec<Value> {
    serde_json::from_str::<Value>(&run.outputs["referrers"])
        .unwrap()
        .as_array()
        .cloned()
        .unwrap()
}

#[test]
fn an_sbom_and_a_signature_on_it_go_along_from_a_layout_by_digest_before_the_tag() {
    let stack = Stack::start();
    stack.moto.create_repository(CI_ACCOUNT, "app", false);
    let dir = tempfile::tempdir().unwrap();
    let layout = write_layout(dir.path(), "v1", &[random_bytes(171, 300 * 1024)]);
    let (sbom, signature) = sbom_and_signature((MANIFEST, &layout.manifest));
    add_to_layout(dir.path(), &[&sbom, &signature]);

    // Without REF: the layout's one image is the entry nothing else refers from.
    let reference = format!("oci:{}", dir.path().display());
    let run = stack
        .action()
        .input("image", &reference)
        .input("repository", "app")
        .input("tags", "v1")
        .run();

    assert!(run.ok(), "{}", run.log());
    let (digest, _) = stack.moto.manifest(CI_ACCOUNT, "app", "v1").unwrap();
    assert_eq!(digest, layout.digest);
    assert_in_moto(&stack, "app", &sbom);
    assert_in_moto(&stack, "app", &signature);
    // The image by digest, its SBOM, the signature on the SBOM, then the tag.
    assert_eq!(
        stack.recorder.put_images(),
        vec![
            (layout.digest.clone(), None),
            (sbom.digest.clone(), None),
            (signature.digest.clone(), None),
            (layout.digest.clone(), Some("v1".to_owned())),
        ]
    );
    let carried = referrers_output(&run);
    assert_eq!(carried.len(), 2, "{carried:?}");
    assert_eq!(carried[0]["digest"], sbom.digest.as_str());
    assert_eq!(carried[0]["artifactType"], "application/spdx+json");
    assert_eq!(carried[0]["subject"], layout.digest.as_str());
    assert_eq!(carried[1]["subject"], sbom.digest.as_str());
    assert!(
        run.summary
            .contains("application/vnd.cncf.notary.signature"),
        "{}",
        run.summary
    );

    // `referrers: false`: the image alone.
    let alone = Stack::start();
    alone.moto.create_repository(CI_ACCOUNT, "app", false);
    let run = alone
        .action()
        .input("image", &reference)
        .input("repository", "app")
        .input("tags", "v1")
        .input("referrers", "false")
        .run();
    assert!(run.ok(), "{}", run.log());
    assert_eq!(
        alone.recorder.put_images(),
        vec![(layout.digest.clone(), Some("v1".to_owned()))]
    );
    assert!(
        alone
            .moto
            .manifest_by_digest(CI_ACCOUNT, "app", &sbom.digest)
            .is_none()
    );
}

#[test]
fn referrers_and_cosign_tags_go_along_from_a_registry_without_the_referrers_api() {
    let stack = Stack::start();
    stack.moto.create_repository(CI_ACCOUNT, "app", false);
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let layout = write_layout(dir.path(), "v1", &[random_bytes(172, 200 * 1024)]);
    registry.skopeo_copy(&layout.reference("v1"), "team/app:v1");
    // The SBOM and the signature on it as oras writes them, in the registry.
    let files = tempfile::tempdir().unwrap();
    let attach = |tag: &str, subject: &[u8], content: &[u8], media_type: &str| {
        let path = files.path().join(tag);
        std::fs::write(&path, content).unwrap();
        let bytes = registry.oras_attach("team/app", tag, (MANIFEST, subject), &path, media_type);
        Artifact {
            digest: sha256(&bytes),
            bytes,
            blobs: vec![EMPTY.to_vec(), content.to_vec()],
        }
    };
    let sbom = attach(
        "sbom",
        &layout.manifest,
        br#"{"spdxVersion":"SPDX-2.3","name":"app"}"#,
        "application/spdx+json",
    );
    let signature = attach(
        "signature",
        &sbom.bytes,
        &random_bytes(175, 900),
        "application/vnd.cncf.notary.signature",
    );
    // Distribution 2.8 has no referrers API: the OCI 1.1 fallback tag lists them, as
    // a client pushing them there writes it (distribution-spec 1.1, "Referrers Tag Schema").
    let fallback = |of: &str, listed: &Artifact, artifact_type: &str| {
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": INDEX,
            "manifests": [listed.descriptor(Some(artifact_type))],
        }))
        .unwrap();
        let tag = format!("sha256-{}", of.trim_start_matches("sha256:"));
        registry.put_manifest("team/app", &tag, INDEX, &index);
    };
    fallback(&layout.digest, &sbom, "application/spdx+json");
    fallback(
        &sbom.digest,
        &signature,
        "application/vnd.cncf.notary.signature",
    );
    let base = format!("sha256-{}", layout.digest.trim_start_matches("sha256:"));
    let sig = cosign_artifact(
        "application/vnd.dev.cosign.simplesigning.v1+json",
        format!(r#"{{"critical":{{"identity":{{"docker-reference":"registry.test/team/app"}},"image":{{"docker-manifest-digest":"{}"}},"type":"cosign container image signature"}},"optional":null}}"#, layout.digest).as_bytes(),
        ("dev.cosignproject.cosign/signature", "MEUCIQDfake+signature+bytes=="),
    );
    let att = cosign_artifact(
        "application/vnd.dsse.envelope.v1+json",
        br#"{"payloadType":"application/vnd.in-toto+json","payload":"eyJfdHlwZSI6Imh0dHBzOi8vaW4tdG90by5pby9TdGF0ZW1lbnQvdjAuMSJ9","signatures":[{"sig":"MEUCIQ=="}]}"#,
        ("predicateType", "https://slsa.dev/provenance/v1"),
    );
    // `cosign attach sbom`: the SBOM itself as the one layer, no signature on it.
    let spdx = br#"{"spdxVersion":"SPDX-2.3","name":"app","packages":[]}"#;
    let config =
        br#"{"architecture":"","os":"","rootfs":{"type":"layers","diff_ids":[]},"config":{}}"#;
    let sbom_bytes = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": descriptor("application/vnd.oci.image.config.v1+json", config),
        "layers": [descriptor("text/spdx+json", spdx)],
    }))
    .unwrap();
    let cosign_sbom = Artifact {
        digest: sha256(&sbom_bytes),
        bytes: sbom_bytes,
        blobs: vec![config.to_vec(), spdx.to_vec()],
    };
    add_to_registry(&registry, "team/app", &sig, &format!("{base}.sig"));
    add_to_registry(&registry, "team/app", &att, &format!("{base}.att"));
    add_to_registry(&registry, "team/app", &cosign_sbom, &format!("{base}.sbom"));

    let run = stack
        .action()
        .input(
            "image",
            &format!("docker://{}/team/app:v1", registry.host()),
        )
        .input("repository", "app")
        .run();

    assert!(run.ok(), "{}", run.log());
    let (digest, _) = stack.moto.manifest(CI_ACCOUNT, "app", "v1").unwrap();
    assert_eq!(digest, layout.digest);
    for artifact in [&sbom, &signature, &sig, &att, &cosign_sbom] {
        assert_in_moto(&stack, "app", artifact);
    }
    // cosign's artifacts keep their tags; the fallback index is not copied, as ECR
    // answers the referrers API itself.
    for (tag, artifact) in [
        (format!("{base}.sig"), &sig),
        (format!("{base}.att"), &att),
        (format!("{base}.sbom"), &cosign_sbom),
    ] {
        let (digest, bytes) = stack.moto.manifest(CI_ACCOUNT, "app", &tag).unwrap();
        assert_eq!(digest, artifact.digest, "{tag}");
        assert_eq!(bytes.as_bytes(), artifact.bytes.as_slice());
    }
    assert!(stack.moto.manifest(CI_ACCOUNT, "app", &base).is_none());
    let carried = referrers_output(&run);
    assert_eq!(carried.len(), 5, "{carried:?}");
    let mut tagged: Vec<&str> = carried.iter().filter_map(|c| c["tag"].as_str()).collect();
    tagged.sort();
    assert_eq!(
        tagged,
        [
            format!("{base}.att"),
            format!("{base}.sbom"),
            format!("{base}.sig")
        ],
        "{carried:?}"
    );
    let sbom_entry = carried
        .iter()
        .find(|c| c["digest"] == cosign_sbom.digest.as_str())
        .unwrap();
    assert_eq!(sbom_entry["artifactType"], "text/spdx+json");
    assert_eq!(sbom_entry["subject"], layout.digest.as_str());
}

#[test]
fn buildkit_attestations_become_referrers_of_their_platforms() {
    let stack = Stack::start();
    stack.moto.create_repository(CI_ACCOUNT, "multi", false);
    let dir = tempfile::tempdir().unwrap();
    let layout = write_index_layout(dir.path(), "v1", &["linux/amd64", "linux/arm64"]);

    let run = stack
        .action()
        .input("image", &layout.reference("v1"))
        .input("repository", "multi")
        .input("attestations", "referrers")
        .run();

    assert!(run.ok(), "{}", run.log());
    let (digest, bytes) = stack.moto.manifest(CI_ACCOUNT, "multi", "v1").unwrap();
    assert_ne!(digest, layout.index.digest);
    assert_eq!(run.outputs["digest"], digest);
    let index: Value = serde_json::from_str(&bytes).unwrap();
    let listed: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap())
        .collect();
    let platforms: Vec<&str> = layout.images.iter().map(|i| i.digest.as_str()).collect();
    assert_eq!(listed, platforms);
    assert!(
        run.summary.contains(&layout.index.digest),
        "{}",
        run.summary
    );

    let carried = referrers_output(&run);
    assert_eq!(carried.len(), layout.attestations.len(), "{carried:?}");
    for (entry, (image, attestation)) in carried
        .iter()
        .zip(layout.images.iter().zip(&layout.attestations))
    {
        assert_eq!(entry["subject"], image.digest.as_str());
        assert_eq!(entry["sourceDigest"], attestation.digest.as_str());
        assert_eq!(entry["artifactType"], "application/vnd.in-toto+json");
        let (_, stored) = stack
            .moto
            .manifest_by_digest(CI_ACCOUNT, "multi", entry["digest"].as_str().unwrap())
            .expect("the attestation by digest");
        let stored: Value = serde_json::from_str(&stored).unwrap();
        let source: Value = serde_json::from_slice(&attestation.bytes).unwrap();
        assert_eq!(stored["subject"]["digest"], image.digest.as_str());
        assert_eq!(stored["subject"]["size"], image.bytes.len());
        assert_eq!(stored["artifactType"], "application/vnd.in-toto+json");
        // The in-toto statement is the source's blob, unchanged.
        assert_eq!(stored["layers"], source["layers"]);
    }
    // The source's attestation manifests themselves were not pushed.
    for attestation in &layout.attestations {
        assert!(
            stack
                .moto
                .manifest_by_digest(CI_ACCOUNT, "multi", &attestation.digest)
                .is_none()
        );
    }

    // `drop`: the index of platforms, and no attestation anywhere.
    let dropped = Stack::start();
    dropped.moto.create_repository(CI_ACCOUNT, "multi", false);
    let run = dropped
        .action()
        .input("image", &layout.reference("v1"))
        .input("repository", "multi")
        .input("attestations", "drop")
        .run();
    assert!(run.ok(), "{}", run.log());
    assert_eq!(run.outputs["digest"], digest);
    assert_eq!(referrers_output(&run), Vec::<Value>::new());
    assert_eq!(dropped.recorder.put_images().len(), layout.images.len() + 1);
}

#[test]
fn a_referrer_of_an_index_that_ecr_refuses_is_a_warning_unless_required() {
    let dir = tempfile::tempdir().unwrap();
    let layout = write_index_layout(dir.path(), "v1", &["linux/amd64", "linux/arm64"]);
    let (sbom, _) = sbom_and_signature((INDEX, &layout.index.bytes));
    add_to_layout(dir.path(), &[&sbom]);
    // ECR refuses a referrer whose subject is an index (aws/containers-roadmap#2783
    // records the registry endpoint's 405; the API's own answer to it is not public,
    // so the refusal here is PutImage's InvalidParameterException).
    let refuse = |stack: &Stack| {
        stack.recorder.refuse_digest(
            "PutImage",
            &sbom.digest,
            "400 Bad Request",
            "InvalidParameterException",
            "Invalid parameter at 'imageManifest' failed to satisfy constraint: 'Invalid JSON syntax'",
        );
    };

    let stack = Stack::start();
    stack.moto.create_repository(CI_ACCOUNT, "multi", false);
    refuse(&stack);
    let run = stack
        .action()
        .input("image", &layout.reference("v1"))
        .input("repository", "multi")
        .run();

    assert!(run.ok(), "{}", run.log());
    let (digest, _) = stack.moto.manifest(CI_ACCOUNT, "multi", "v1").unwrap();
    assert_eq!(digest, layout.index.digest);
    let warnings: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("::warning") && l.contains("referrers"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", run.log());
    assert!(warnings[0].contains(&sbom.digest), "{}", warnings[0]);
    assert!(
        warnings[0].contains("containers-roadmap#2783"),
        "{}",
        warnings[0]
    );
    assert_eq!(referrers_output(&run), Vec::<Value>::new());
    assert!(run.summary.contains("no: "), "{}", run.summary);

    let strict = Stack::start();
    strict.moto.create_repository(CI_ACCOUNT, "multi", false);
    refuse(&strict);
    let run = strict
        .action()
        .input("image", &layout.reference("v1"))
        .input("repository", "multi")
        .input("referrers", "required")
        .run();
    assert_eq!(run.code, Some(1), "{}", run.log());
    assert!(run.error().contains(&sbom.digest), "{}", run.error());
    assert!(
        run.error().contains("no tag was written"),
        "{}",
        run.error()
    );
    assert!(strict.moto.manifest(CI_ACCOUNT, "multi", "v1").is_none());
}

#[test]
fn to_a_registry_without_the_referrers_api_referrers_are_listed_under_the_fallback_tag() {
    let stack = Stack::start();
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let layout = write_layout(dir.path(), "v1", &[random_bytes(173, 100 * 1024)]);
    let (sbom, signature) = sbom_and_signature((MANIFEST, &layout.manifest));
    add_to_layout(dir.path(), &[&sbom, &signature]);

    let run = stack
        .action()
        .without("INPUT_ROLE-TO-ASSUME")
        .input("image", &layout.reference("v1"))
        .input("registry", &registry.host())
        .input("repository", "team/app")
        .input("tags", "v1")
        .run();

    assert!(run.ok(), "{}", run.log());
    let fallback = |of: &str| {
        let tag = format!("team/app:sha256-{}", of.trim_start_matches("sha256:"));
        serde_json::from_slice::<Value>(&registry.manifest(&tag)).unwrap()
    };
    let listed = fallback(&layout.digest);
    assert_eq!(listed["manifests"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["manifests"][0]["digest"], sbom.digest.as_str());
    assert_eq!(
        listed["manifests"][0]["artifactType"],
        "application/spdx+json"
    );
    assert_eq!(listed["manifests"][0]["size"], sbom.bytes.len());
    assert_eq!(
        fallback(&sbom.digest)["manifests"][0]["digest"],
        signature.digest.as_str()
    );

    // What landed there is found again when that registry is the source.
    stack.moto.create_repository(CI_ACCOUNT, "app", false);
    let run = stack
        .action()
        .input(
            "image",
            &format!("docker://{}/team/app:v1", registry.host()),
        )
        .input("repository", "app")
        .run();
    assert!(run.ok(), "{}", run.log());
    assert_in_moto(&stack, "app", &sbom);
    assert_in_moto(&stack, "app", &signature);
}

#[test]
fn every_target_of_a_release_gets_the_referrers_before_any_tag() {
    let stack = Stack::start();
    stack.moto.create_repository(CI_ACCOUNT, "app", false);
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let layout = write_layout(dir.path(), "v1", &[random_bytes(174, 64 * 1024)]);
    let (sbom, signature) = sbom_and_signature((MANIFEST, &layout.manifest));
    add_to_layout(dir.path(), &[&sbom, &signature]);
    let targets = format!(
        "{CI_ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/app\n{}/mirror/app",
        registry.host()
    );

    let run = stack
        .action()
        .input("image", &layout.reference("v1"))
        .input("targets", &targets)
        .input("tags", "v1")
        .run();

    assert!(run.ok(), "{}", run.log());
    assert_in_moto(&stack, "app", &sbom);
    assert_in_moto(&stack, "app", &signature);
    // In moto, every referrer is stored before the one tag write.
    let puts = stack.recorder.put_images();
    assert_eq!(
        puts.last(),
        Some(&(layout.digest.clone(), Some("v1".to_owned())))
    );
    assert_eq!(puts.iter().filter(|(_, tag)| tag.is_some()).count(), 1);
    for artifact in [&sbom, &signature] {
        let stored = registry.manifest(&format!("mirror/app@{}", artifact.digest));
        assert_eq!(stored, artifact.bytes);
    }
    assert_eq!(referrers_output(&run).len(), 2);
    assert!(run.summary.contains("on every target"), "{}", run.summary);
}

#[test]
fn referrers_of_a_manifest_the_push_rewrites_are_left_out_with_a_warning() {
    let stack = Stack::start();
    stack.moto.create_repository(CI_ACCOUNT, "app", false);
    let dir = tempfile::tempdir().unwrap();
    // Uncompressed layers: `compression: gzip` gives the image a new digest.
    let layout = write_layout(dir.path(), "v1", &[random_bytes(176, 64 * 1024)]);
    let (sbom, _) = sbom_and_signature((MANIFEST, &layout.manifest));
    add_to_layout(dir.path(), &[&sbom]);

    let run = stack
        .action()
        .input("image", &layout.reference("v1"))
        .input("repository", "app")
        .input("compression", "gzip")
        .run();

    assert!(run.ok(), "{}", run.log());
    assert_ne!(run.outputs["digest"], layout.digest);
    let warning = run
        .stdout
        .lines()
        .find(|l| l.starts_with("::warning") && l.contains("left out"))
        .unwrap_or_else(|| panic!("no warning: {}", run.log()));
    assert!(warning.contains("application/spdx+json"), "{warning}");
    assert!(
        stack
            .moto
            .manifest_by_digest(CI_ACCOUNT, "app", &sbom.digest)
            .is_none()
    );
    assert_eq!(referrers_output(&run), Vec::<Value>::new());
    // Nor are its blobs uploaded for nothing.
    let sbom_layer = sha256(&sbom.blobs[1]);
    assert!(
        !stack.recorder.uploaded_layers().contains_key(&sbom_layer),
        "the SBOM's blob was uploaded"
    );
}

#[test]
fn required_referrers_a_rewrite_would_leave_behind_fail_before_any_upload() {
    let stack = Stack::start();
    stack.moto.create_repository(CI_ACCOUNT, "app", false);
    let dir = tempfile::tempdir().unwrap();
    let layout = write_layout(dir.path(), "v1", &[random_bytes(179, 64 * 1024)]);
    let (sbom, _) = sbom_and_signature((MANIFEST, &layout.manifest));
    add_to_layout(dir.path(), &[&sbom]);

    let run = stack
        .action()
        .input("image", &layout.reference("v1"))
        .input("repository", "app")
        .input("compression", "gzip")
        .input("referrers", "required")
        .run();

    assert_eq!(run.code, Some(2), "{}", run.log());
    assert!(
        run.error().starts_with(&format!(
            "referrers: required, and application/spdx+json {} refers to {}, which compression rewrote",
            sbom.digest, layout.digest
        )),
        "{}",
        run.log()
    );
    assert!(stack.recorder.calls().is_empty(), "something was sent");

    // A signature of the source's index, which `platforms` rewrites.
    let dir = tempfile::tempdir().unwrap();
    let index = write_index_layout(dir.path(), "v1", &["linux/amd64", "linux/arm64"]);
    let (sbom, _) = sbom_and_signature((INDEX, &index.index.bytes));
    add_to_layout(dir.path(), &[&sbom]);
    let run = stack
        .action()
        .input("image", &index.reference("v1"))
        .input("repository", "app")
        .input("platforms", "linux/amd64")
        .input("referrers", "required")
        .run();
    assert_eq!(run.code, Some(2), "{}", run.log());
    assert!(
        run.error().contains(&format!(
            "{} refers to {}, which platforms rewrote",
            sbom.digest, index.index.digest
        )),
        "{}",
        run.log()
    );
    assert!(stack.recorder.calls().is_empty(), "something was sent");
}

#[test]
fn a_registry_with_the_referrers_api_is_asked_there_page_by_page_and_not_by_the_fallback_tag() {
    let stack = Stack::start();
    stack.moto.create_repository(CI_ACCOUNT, "app", false);
    let registry = Registry::start();
    let port = registry.port;
    let dir = tempfile::tempdir().unwrap();
    let layout = write_layout(dir.path(), "v1", &[random_bytes(177, 64 * 1024)]);
    registry.skopeo_copy(&layout.reference("v1"), "team/app:v1");
    let (sbom, _) = sbom_and_signature((MANIFEST, &layout.manifest));
    for blob in &sbom.blobs {
        registry.put_blob("team/app", blob);
    }
    registry.put_manifest("team/app", &sbom.digest, MANIFEST, &sbom.bytes);
    // In front of it, the referrers API as distribution-spec 1.1 answers it: an index
    // of descriptors with their artifactType.
    // A second referrer on a second page, which the first names in `Link`.
    let cyclonedx = oci_artifact(
        "application/vnd.cyclonedx+json",
        br#"{"bomFormat":"CycloneDX","specVersion":"1.5"}"#,
        (MANIFEST, &layout.manifest),
    );
    for blob in &cyclonedx.blobs {
        registry.put_blob("team/app", blob);
    }
    registry.put_manifest("team/app", &cyclonedx.digest, MANIFEST, &cyclonedx.bytes);
    let api = Recorder::start(port);
    let page = |artifact: &Artifact, artifact_type: &str| {
        json!({
            "schemaVersion": 2,
            "mediaType": INDEX,
            "manifests": [artifact.descriptor(Some(artifact_type))],
        })
        .to_string()
    };
    let first = format!("/v2/team/app/referrers/{}", layout.digest);
    let second = format!("{first}?n=1&last={}", sbom.digest);
    api.answer_page(
        &first,
        "application/vnd.oci.image.index.v1+json",
        page(&sbom, "application/spdx+json"),
        &second,
    );
    api.answer_path(
        &second,
        "application/vnd.oci.image.index.v1+json",
        page(&cyclonedx, "application/vnd.cyclonedx+json"),
    );

    let run = stack
        .action()
        .input(
            "image",
            &format!("docker://127.0.0.1:{}/team/app:v1", api.port),
        )
        .input("repository", "app")
        .run();

    assert!(run.ok(), "{}", run.log());
    assert_in_moto(&stack, "app", &sbom);
    assert_in_moto(&stack, "app", &cyclonedx);
    let paths: Vec<String> = api.calls().iter().map(|c| c.path.clone()).collect();
    assert!(paths.contains(&second), "the second page: {paths:?}");
    let fallback = format!(
        "/v2/team/app/manifests/sha256-{}",
        layout.digest.trim_start_matches("sha256:")
    );
    assert!(
        paths
            .iter()
            .any(|p| p.ends_with(&format!("/referrers/{}", layout.digest))),
        "{paths:?}"
    );
    assert!(
        !paths.contains(&fallback),
        "the fallback tag was asked: {paths:?}"
    );
    assert_eq!(referrers_output(&run).len(), 2);
}

#[test]
fn a_cosign_tag_the_source_refuses_to_show_is_a_warning_or_with_required_an_error() {
    let stack = Stack::start();
    stack.moto.create_repository(CI_ACCOUNT, "app", false);
    let registry = Registry::start();
    let port = registry.port;
    let dir = tempfile::tempdir().unwrap();
    let layout = write_layout(dir.path(), "v1", &[random_bytes(178, 64 * 1024)]);
    registry.skopeo_copy(&layout.reference("v1"), "team/app:v1");
    let sig_tag = format!("sha256-{}.sig", layout.digest.trim_start_matches("sha256:"));
    let sig = cosign_artifact(
        "application/vnd.dev.cosign.simplesigning.v1+json",
        b"{}",
        ("dev.cosignproject.cosign/signature", "MEUCIQDfake=="),
    );
    add_to_registry(&registry, "team/app", &sig, &sig_tag);
    // The signature is there, but the registry will not say so: not a 404.
    let api = Recorder::start(port);
    api.refuse_path(
        &format!("/v2/team/app/manifests/{sig_tag}"),
        "403 Forbidden",
    );
    let image = format!("docker://127.0.0.1:{}/team/app:v1", api.port);

    let run = stack
        .action()
        .input("image", &image)
        .input("repository", "app")
        .run();

    assert!(run.ok(), "{}", run.log());
    let warning = run
        .stdout
        .lines()
        .find(|l| l.starts_with("::warning") && l.contains(&sig_tag))
        .unwrap_or_else(|| panic!("no warning naming {sig_tag}: {}", run.log()));
    assert!(warning.contains("could not be listed"), "{warning}");

    let run = stack
        .action()
        .input("image", &image)
        .input("repository", "app")
        .input("tags", "v2")
        .input("referrers", "required")
        .run();
    assert_eq!(run.code, Some(1), "{}", run.log());
    assert!(run.error().contains(&sig_tag), "{}", run.error());
    assert!(stack.moto.manifest(CI_ACCOUNT, "app", "v2").is_none());
}

#[test]
fn attestations_made_referrers_follow_their_platforms_through_compression() {
    let stack = Stack::start();
    stack.moto.create_repository(CI_ACCOUNT, "multi", false);
    let dir = tempfile::tempdir().unwrap();
    // Uncompressed layers: gzip gives every platform manifest a new digest.
    let layout = write_index_layout(dir.path(), "v1", &["linux/amd64", "linux/arm64"]);

    let run = stack
        .action()
        .input("image", &layout.reference("v1"))
        .input("repository", "multi")
        .input("attestations", "referrers")
        .input("compression", "gzip")
        .run();

    assert!(run.ok(), "{}", run.log());
    assert!(
        !run.stdout.contains("left out"),
        "an attestation was left out: {}",
        run.log()
    );
    let (_, index) = stack.moto.manifest(CI_ACCOUNT, "multi", "v1").unwrap();
    let index: Value = serde_json::from_str(&index).unwrap();
    let platforms: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap())
        .collect();
    assert_eq!(platforms.len(), layout.images.len());
    for image in &layout.images {
        assert!(
            !platforms.contains(&image.digest.as_str()),
            "not compressed"
        );
    }
    let carried = referrers_output(&run);
    assert_eq!(carried.len(), layout.attestations.len(), "{carried:?}");
    for (entry, platform) in carried.iter().zip(&platforms) {
        assert_eq!(entry["subject"], *platform);
        let (_, stored) = stack
            .moto
            .manifest_by_digest(CI_ACCOUNT, "multi", entry["digest"].as_str().unwrap())
            .expect("the attestation by digest");
        let stored: Value = serde_json::from_str(&stored).unwrap();
        assert_eq!(stored["subject"]["digest"], *platform);
        let (_, subject) = stack
            .moto
            .manifest_by_digest(CI_ACCOUNT, "multi", platform)
            .unwrap();
        assert_eq!(stored["subject"]["size"], subject.len());
    }
}

#[test]
fn an_invalid_referrers_or_attestations_value_is_one_line_before_any_call() {
    let stack = Stack::start();
    let dir = tempfile::tempdir().unwrap();
    let layout = write_layout(dir.path(), "v1", &[random_bytes(180, 4096)]);
    let cases = [
        (
            "referrers",
            "yes",
            "referrers: `yes` is not true, false or required",
        ),
        (
            "attestations",
            "move",
            "attestations: `move` is not keep, referrers or drop",
        ),
    ];
    for (input, value, error) in cases {
        let run = stack
            .action()
            .input("image", &layout.reference("v1"))
            .input("repository", "app")
            .input(input, value)
            .run();
        assert_eq!(run.code, Some(2), "{input}: {}", run.log());
        assert_eq!(run.error(), error, "{}", run.log());
        let errors = run.stdout.lines().filter(|l| l.starts_with("::error"));
        assert_eq!(errors.count(), 1, "{}", run.log());
    }
    assert!(stack.recorder.calls().is_empty(), "a call was made");
    assert!(stack.oidc.audiences().is_empty(), "a token was asked for");
}

/// An image signed in cosign's scheme (its `.sig` entry in the layout), bound for the
/// immutable repository `app`, where another image already holds a tag: the
/// signature's own tag, or `v1`.
struct Held {
    layout: Layout,
    sig_tag: String,
    sig: Artifact,
    /// The image that holds the tag.
    older: Layout,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

fn a_signed_image_and_a_held_tag(stack: &Stack, seed: u64, signature_tag_held: bool) -> Held {
    stack.moto.create_repository(CI_ACCOUNT, "app", true);
    let dir = tempfile::tempdir().unwrap();
    let layout = write_layout(dir.path(), "v1", &[random_bytes(seed, 64 * 1024)]);
    let sig_tag = format!("sha256-{}.sig", layout.digest.trim_start_matches("sha256:"));
    let sig = cosign_artifact(
        "application/vnd.dev.cosign.simplesigning.v1+json",
        b"{}",
        ("dev.cosignproject.cosign/signature", "MEUCIQDfake=="),
    );
    add_named_to_layout(dir.path(), &sig, Some(&sig_tag));
    let older_dir = tempfile::tempdir().unwrap();
    let older = write_layout(older_dir.path(), "v1", &[random_bytes(seed + 1, 4096)]);
    let held = if signature_tag_held {
        sig_tag.as_str()
    } else {
        "v1"
    };
    let run = stack
        .action()
        .input("image", &older.reference("v1"))
        .input("repository", "app")
        .input("tags", held)
        .run();
    assert!(run.ok(), "{}", run.log());
    Held {
        layout,
        sig_tag,
        sig,
        older,
        _dirs: (dir, older_dir),
    }
}

#[test]
fn a_cosign_tag_an_immutable_repository_holds_elsewhere_stops_required_before_any_tag() {
    let stack = Stack::start();
    let registry = Registry::start();
    // An older signature holds the tag already, and the repository's tags cannot move.
    let Held {
        layout,
        sig_tag,
        sig,
        older,
        _dirs,
    } = a_signed_image_and_a_held_tag(&stack, 181, true);

    let targets = format!(
        "{CI_ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/app\n{}/mirror/app",
        registry.host()
    );
    let run = stack
        .action()
        .input("image", &layout.reference("v1"))
        .input("targets", &targets)
        .input("tags", "v1")
        .input("referrers", "required")
        .run();

    assert_eq!(run.code, Some(1), "{}", run.log());
    assert!(
        run.error().contains(&format!(
            "(account {CI_ACCOUNT}): referrers: required, and the tag `{sig_tag}` of application/vnd.dev.cosign.simplesigning.v1+json {} already points at {} in an immutable repository",
            sig.digest, older.digest
        )),
        "{}",
        run.log()
    );
    assert!(
        run.error().contains("no tag was moved on any target"),
        "{}",
        run.log()
    );
    assert!(stack.moto.manifest(CI_ACCOUNT, "app", "v1").is_none());
    assert!(!registry.has("mirror/app/manifests/v1"));
    assert!(!registry.has(&format!("mirror/app/manifests/{sig_tag}")));

    // One target: the same, before its one tag.
    let run = stack
        .action()
        .input("image", &layout.reference("v1"))
        .input("repository", "app")
        .input("tags", "v1")
        .input("referrers", "required")
        .run();
    assert_eq!(run.code, Some(1), "{}", run.log());
    assert!(
        run.error()
            .starts_with(&format!("referrers: required, and the tag `{sig_tag}` of")),
        "{}",
        run.log()
    );
    assert!(run.error().contains("no tag was moved"), "{}", run.log());
    assert!(stack.moto.manifest(CI_ACCOUNT, "app", "v1").is_none());

    // With referrers: true, a warning, and the image is tagged.
    let run = stack
        .action()
        .input("image", &layout.reference("v1"))
        .input("repository", "app")
        .input("tags", "v1")
        .run();
    assert!(run.ok(), "{}", run.log());
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with("::warning") && l.contains(&sig_tag)),
        "{}",
        run.log()
    );
    assert!(stack.moto.manifest(CI_ACCOUNT, "app", "v1").is_some());
}

#[test]
fn a_gated_push_whose_tag_an_immutable_repository_holds_moves_no_referrer_tag() {
    let stack = Stack::start();
    // Another image holds v1, and the repository's tags cannot move.
    let Held {
        layout,
        sig_tag,
        older,
        _dirs,
        ..
    } = a_signed_image_and_a_held_tag(&stack, 183, false);

    // The gate passes (moto's fixed finding is HIGH); the tag check then stops the push
    // before the signature's tag moves.
    let run = stack
        .action()
        .input("image", &layout.reference("v1"))
        .input("repository", "app")
        .input("tags", "v1")
        .input("scan-fail-on", "critical")
        .run();

    assert_eq!(run.code, Some(1), "{}", run.log());
    assert!(
        run.error().contains(&format!(
            "tag `v1` of an immutable repository already points at {}, not at {}",
            older.digest, layout.digest
        )) && run.error().contains("no tag was moved"),
        "{}",
        run.log()
    );
    assert!(stack.moto.manifest(CI_ACCOUNT, "app", &sig_tag).is_none());
    let (holder, _) = stack.moto.manifest(CI_ACCOUNT, "app", "v1").unwrap();
    assert_eq!(holder, older.digest);
}
