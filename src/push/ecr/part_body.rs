//! The body of an UploadLayerPart request, built off the reactor straight from the blob.
//!
//! Handed a part as a `Blob`, the SDK encodes it to base64 in a new String, then copies
//! that into a second new String, the JSON body. With glibc's mmap threshold at 1 MiB
//! (`main.rs`) those two and the part's read buffer were mapped anew for every part and
//! unmapped after it: 3.7 bytes of page faults per byte pushed, and for a 2 GiB layer the
//! faults and unmaps took 44 % of the client's CPU, more than both SHA-256 passes. Here
//! the blob is read in pieces small enough to stay in the CPU's cache, each hashed and
//! then encoded straight into the body, and a body no request holds any more is reused
//! for a later part: one buffer per part in flight, mapped once per push.

use std::sync::{Arc, Mutex, PoisonError};

use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_types::body::SdkBody;
use bytes::Bytes;

use crate::image::{self, BlobReader};

/// Bytes of the blob read, hashed and encoded at a time: whole base64 blocks (3 bytes),
/// and few enough that the piece and its text are still in L2 for the encoding.
const PIECE_BYTES: usize = 3 * 64 * 1024;

/// UploadLayerPart's fields besides the part's bytes and where they go.
pub struct Fields {
    pub registry_id: String,
    pub repository_name: String,
    pub upload_id: String,
}

/// Bodies no request holds any more, for the next parts.
#[derive(Clone, Default)]
pub struct Bodies(Arc<Mutex<Vec<Vec<u8>>>>);

/// A part's request body: ECR's JSON with the part as base64 in `layerPartBlob`.
pub struct Body {
    bytes: Bytes,
    /// The part's length in the blob.
    pub part_bytes: usize,
}

impl Bodies {
    /// Reads the next part of at most `max` bytes of `blob`, which starts at
    /// `part_first_byte`, into a request body. Blocking: call it off the reactor.
    pub fn read_part(
        &self,
        blob: &mut BlobReader,
        max: usize,
        fields: &Fields,
        part_first_byte: i64,
    ) -> Result<Body, image::Error> {
        let part_bytes = blob.remaining().min(max as u64) as usize;
        let head = serde_json::json!({
            "registryId": fields.registry_id,
            "repositoryName": fields.repository_name,
            "uploadId": fields.upload_id,
            "partFirstByte": part_first_byte,
            "partLastByte": part_first_byte + part_bytes as i64 - 1,
        })
        .to_string();
        let mut body = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
            .unwrap_or_default();
        let blob_member = br#","layerPartBlob":""#;
        body.reserve(
            head.len() + blob_member.len() + base64_simd::STANDARD.encoded_length(part_bytes) + 2,
        );
        // The object without its closing brace, then the blob as its last member.
        body.extend_from_slice(&head.as_bytes()[..head.len() - 1]);
        body.extend_from_slice(blob_member);
        let mut piece = vec![0; PIECE_BYTES.min(part_bytes)];
        blob.read_part_through(max, &mut piece, |piece| {
            base64_simd::STANDARD.encode_append(piece, &mut body)
        })?;
        body.extend_from_slice(b"\"}");
        Ok(Body {
            bytes: Bytes::from_owner(Lent {
                body,
                idle: self.0.clone(),
            }),
            part_bytes,
        })
    }
}

impl Body {
    /// Puts this body in place of the one the SDK serialised, which has the same fields
    /// but no blob. Called before each attempt is signed, so the signature covers it.
    pub fn replace(&self, request: &mut HttpRequest) {
        *request.body_mut() = SdkBody::from(self.bytes.clone());
        request
            .headers_mut()
            .insert("content-length", self.bytes.len().to_string());
    }
}

/// A body lent to a request, back with the idle ones once the request lets go of it.
struct Lent {
    body: Vec<u8>,
    idle: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        &self.body
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        let mut body = std::mem::take(&mut self.body);
        body.clear();
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{Descriptor, Digest};

    #[test]
    fn body_is_ecr_json_with_the_part_as_base64_and_its_buffer_is_reused() {
        // Not a multiple of the piece or of 3, so the last piece ends in padding.
        let blob: Vec<u8> = (0..PIECE_BYTES * 2 + 100)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let descriptor = Descriptor {
            media_type: "application/octet-stream".into(),
            digest: Digest::of(&blob),
            size: blob.len() as u64,
        };
        let mut reader = BlobReader::new(Box::new(std::io::Cursor::new(blob.clone())), descriptor);
        let fields = Fields {
            registry_id: "123456789012".into(),
            repository_name: "team/app".into(),
            upload_id: "\"quoted\"".into(),
        };
        let bodies = Bodies::default();
        let part = PIECE_BYTES * 2 + 10;
        let first = bodies.read_part(&mut reader, part, &fields, 0).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&first.bytes).unwrap();
        assert_eq!(json["registryId"], "123456789012");
        assert_eq!(json["repositoryName"], "team/app");
        assert_eq!(json["uploadId"], "\"quoted\"");
        assert_eq!(json["partFirstByte"], 0);
        assert_eq!(json["partLastByte"], part - 1);
        let sent = json["layerPartBlob"].as_str().unwrap();
        assert_eq!(
            base64_simd::STANDARD.decode_to_vec(sent).unwrap(),
            &blob[..part]
        );

        let address = first.bytes.as_ptr();
        drop(first);
        let last = bodies
            .read_part(&mut reader, part, &fields, part as i64)
            .unwrap();
        assert_eq!(
            last.bytes.as_ptr(),
            address,
            "the idle buffer was not reused"
        );
        let json: serde_json::Value = serde_json::from_slice(&last.bytes).unwrap();
        assert_eq!(json["partLastByte"], blob.len() - 1);
        let sent = json["layerPartBlob"].as_str().unwrap();
        assert_eq!(
            base64_simd::STANDARD.decode_to_vec(sent).unwrap(),
            &blob[part..]
        );
        assert_eq!(reader.remaining(), 0);
    }
}
