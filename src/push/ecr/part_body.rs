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
//!
//! The bodies of every ECR destination of the process share one budget
//! ([`BODY_BUDGET`], [`Bodies::shared`]): a part is read only when the bodies already
//! lent out leave room for it, else it waits for a request to let one go. Memory then
//! follows the parts in flight, whatever the concurrency, the number of layers or the
//! number of targets (two bodies per blob, as before, was 107 MiB of bodies at the
//! default concurrency of 4 and 425 MiB at 16; a budget per target, 68 MiB more per ECR
//! target, 285 MiB for four). One body is always let out, so a part larger than the
//! budget still goes.

use std::sync::{Arc, Condvar, Mutex, PoisonError};

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

/// The bytes of part bodies the process may hold at once: five bodies of the default
/// 10 MiB part (13.3 MiB of base64 each), which keeps four uploads sending and one part
/// read ahead, and a whole push's peak under 100 MiB. Targets share it, as they share
/// the runner's uplink.
pub const BODY_BUDGET: usize = 72 * 1024 * 1024;

/// Bodies no request holds any more, for the next parts, and what is lent out now.
#[derive(Clone)]
pub struct Bodies(Arc<(Mutex<Pool>, Condvar)>);

struct Pool {
    idle: Vec<Vec<u8>>,
    /// The bytes of the bodies lent out, as charged when they were read.
    lent: usize,
    budget: usize,
}

/// The one pool of the process, which every ECR destination draws on.
static SHARED: std::sync::OnceLock<Bodies> = std::sync::OnceLock::new();

/// A part's request body: ECR's JSON with the part as base64 in `layerPartBlob`.
pub struct Body {
    bytes: Bytes,
    /// The part's length in the blob.
    pub part_bytes: usize,
}

impl Bodies {
    /// The process's pool, under [`BODY_BUDGET`].
    pub fn shared() -> Self {
        SHARED
            .get_or_init(|| Self::with_budget(BODY_BUDGET))
            .clone()
    }

    pub fn with_budget(budget: usize) -> Self {
        Self(Arc::new((
            Mutex::new(Pool {
                idle: Vec::new(),
                lent: 0,
                budget,
            }),
            Condvar::new(),
        )))
    }

    /// An idle buffer (or a new one) for a body of `charge` bytes, once the budget has
    /// room for it (always when nothing is lent). Blocking.
    fn take(&self, charge: usize) -> Vec<u8> {
        let (pool, freed) = &*self.0;
        let mut pool = pool.lock().unwrap_or_else(PoisonError::into_inner);
        while pool.lent > 0 && pool.lent + charge > pool.budget {
            pool = freed.wait(pool).unwrap_or_else(PoisonError::into_inner);
        }
        pool.lent += charge;
        pool.idle.pop().unwrap_or_default()
    }

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
        let blob_member = br#","layerPartBlob":""#;
        let length =
            head.len() + blob_member.len() + base64_simd::STANDARD.encoded_length(part_bytes) + 2;
        // Charged for a whole part of `max`, whatever this one's length: a buffer kept
        // idle has the capacity of the largest part it held.
        let charge = length.max(base64_simd::STANDARD.encoded_length(max));
        let mut body = self.take(charge);
        body.reserve(length);
        // The object without its closing brace, then the blob as its last member.
        body.extend_from_slice(&head.as_bytes()[..head.len() - 1]);
        body.extend_from_slice(blob_member);
        let mut piece = vec![0; PIECE_BYTES.min(part_bytes)];
        // Lent from here on: an error below gives the body back as a request would.
        let mut lent = Lent {
            body,
            charge,
            pool: self.0.clone(),
        };
        blob.read_part_through(max, &mut piece, |piece| {
            base64_simd::STANDARD.encode_append(piece, &mut lent.body)
        })?;
        lent.body.extend_from_slice(b"\"}");
        Ok(Body {
            bytes: Bytes::from_owner(lent),
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
    charge: usize,
    pool: Arc<(Mutex<Pool>, Condvar)>,
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
        let (pool, freed) = &*self.pool;
        let mut pool = pool.lock().unwrap_or_else(PoisonError::into_inner);
        pool.idle.push(body);
        pool.lent -= self.charge;
        freed.notify_all();
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
        let bodies = Bodies::with_budget(BODY_BUDGET);
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

    #[test]
    fn a_part_waits_until_the_bodies_lent_out_leave_room_for_it() {
        let blob = vec![7u8; 3 * 4096];
        let descriptor = Descriptor {
            media_type: "application/octet-stream".into(),
            digest: Digest::of(&blob),
            size: blob.len() as u64,
        };
        let fields = Fields {
            registry_id: "123456789012".into(),
            repository_name: "app".into(),
            upload_id: "u".into(),
        };
        // Room for two bodies of a 4096-byte part, not three.
        let bodies = Bodies::with_budget(2 * 5700);
        let mut reader = BlobReader::new(Box::new(std::io::Cursor::new(blob)), descriptor);
        let first = bodies.read_part(&mut reader, 4096, &fields, 0).unwrap();
        let second = bodies.read_part(&mut reader, 4096, &fields, 4096).unwrap();
        let (done, waited) = std::sync::mpsc::channel();
        let third = std::thread::spawn({
            let bodies = bodies.clone();
            move || {
                let body = bodies.read_part(&mut reader, 4096, &fields, 8192);
                done.send(()).unwrap();
                body.map(|b| b.part_bytes)
            }
        });
        assert!(
            waited
                .recv_timeout(std::time::Duration::from_millis(200))
                .is_err(),
            "the third part was read while two bodies were lent"
        );
        drop(first);
        waited
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the third part, once a body was given back");
        assert_eq!(third.join().unwrap().unwrap(), 4096);
        drop(second);
        // A part larger than the whole budget still goes when nothing is lent.
        let tiny = Bodies::with_budget(1);
        let blob = vec![1u8; 100];
        let descriptor = Descriptor {
            media_type: "application/octet-stream".into(),
            digest: Digest::of(&blob),
            size: 100,
        };
        let mut reader = BlobReader::new(Box::new(std::io::Cursor::new(blob)), descriptor);
        let fields = Fields {
            registry_id: "123456789012".into(),
            repository_name: "app".into(),
            upload_id: "u".into(),
        };
        assert_eq!(
            tiny.read_part(&mut reader, 100, &fields, 0)
                .unwrap()
                .part_bytes,
            100
        );
    }
}
