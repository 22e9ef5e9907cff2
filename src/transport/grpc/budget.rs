//! The gRPC side of the per-request memory budget: a message's protobuf
//! bytes are walked before prost decodes them, and a message whose decoded
//! form could take more than [`MODEL_PER_BYTE`] bytes per byte plus
//! [`MODEL_BASE`] is refused with `RESOURCE_EXHAUSTED`. prost grows a
//! repeated field one element at a time, so without this a message of many
//! empty elements (two bytes each on the wire) costs tens of times its size.
//!
//! The walk needs no schema. Every length-delimited field may be a message
//! that prost allocates (at most [`ELEMENT_BYTES`] per element, vector growth
//! included) or a string or byte field that it copies (its length); a payload
//! that parses as protobuf is walked in turn, down to [`NESTING`] levels (the
//! deepest message of these protos is five levels down). The count is an
//! upper bound: a string that happens to parse as protobuf is counted as
//! messages too, which only makes the bound larger, and real requests are a
//! few KB, far inside [`MODEL_BASE`]. The walk allocates nothing and visits
//! each byte at most [`NESTING`] times.

use std::marker::PhantomData;

use prost::Message;
use prost::bytes::Buf;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::{ProstDecoder, ProstEncoder};

use crate::transport::{MODEL_BASE, MODEL_PER_BYTE};

/// The most a decoded element of any message of these protos takes, with
/// vector growth and the model built from it (measured in
/// `tests/decode_memory.rs`: an empty `RouteMatch`, the largest, costs about
/// 490 bytes in all once its model's header map exists).
const ELEMENT_BYTES: usize = 512;

/// How deep payloads are walked; deeper ones are counted as bytes (no
/// message of these protos is nested that deep, so prost skips them as
/// unknown fields or copies them as strings).
const NESTING: usize = 8;

/// The decoded size a message of `bytes` may take.
pub fn allowance(bytes: usize) -> usize {
    bytes
        .saturating_mul(MODEL_PER_BYTE)
        .saturating_add(MODEL_BASE)
}

/// An upper bound of what decoding `message` allocates, or `None` when it is
/// not well-formed protobuf (prost will say why).
pub fn decoded_bound(message: &[u8]) -> Option<usize> {
    walk(message, 0)
}

fn varint(buf: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = buf.split_first()?;
        *buf = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

fn walk(mut buf: &[u8], depth: usize) -> Option<usize> {
    let mut bound = 0usize;
    while !buf.is_empty() {
        let key = varint(&mut buf)?;
        if key >> 3 == 0 {
            return None;
        }
        match key & 7 {
            0 => {
                varint(&mut buf)?;
            }
            1 => buf = buf.get(8..)?,
            5 => buf = buf.get(4..)?,
            2 => {
                let len = usize::try_from(varint(&mut buf)?).ok()?;
                let payload = buf.get(..len)?;
                buf = &buf[len..];
                let nested = if depth + 1 < NESTING {
                    walk(payload, depth + 1).unwrap_or(0)
                } else {
                    0
                };
                bound = bound
                    .saturating_add(ELEMENT_BYTES)
                    .saturating_add(len.max(nested));
            }
            _ => return None,
        }
    }
    Some(bound)
}

/// Refuses `message` when its decoded form could exceed its allowance.
pub fn check(message: &[u8]) -> Result<(), Status> {
    let Some(bound) = decoded_bound(message) else {
        return Ok(());
    };
    let allowed = allowance(message.len());
    if bound > allowed {
        return Err(Status::resource_exhausted(format!(
            "a request of {} bytes may decode to {bound} bytes, more than {allowed} \
             ({MODEL_PER_BYTE} per byte + {MODEL_BASE})",
            message.len()
        )));
    }
    Ok(())
}

/// prost's codec with [`check`] before every decode; the generated services
/// use it (`build.rs`).
#[derive(Debug, Clone)]
pub struct BudgetCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for BudgetCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for BudgetCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = BudgetDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        BudgetDecoder(ProstDecoder::new(BufferSettings::default()))
    }
}

/// [`ProstDecoder`] after [`check`].
#[derive(Debug)]
pub struct BudgetDecoder<U>(ProstDecoder<U>);

impl<U: Message + Default> Decoder for BudgetDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        // The message is one contiguous buffer (tonic's `BytesMut`).
        check(buf.chunk())?;
        self.0.decode(buf)
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}
