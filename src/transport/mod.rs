//! Transports that carry the controller's calls to a [`crate::router::TrafficRouter`].

#[cfg(feature = "runtime")]
pub mod grpc;
pub mod netrpc;

/// The largest request either transport accepts, in bytes. The controller's
/// biggest real call is about 23 KB (a whole Rollout); a larger message is
/// answered with an error before it is buffered (net/rpc) or refused by the
/// gRPC server's decoder, so one request never costs more than a small
/// multiple of this.
pub const MAX_REQUEST_BYTES: usize = 16 << 20;

/// The memory a request's decoded model may take, on either transport:
/// [`MODEL_PER_BYTE`] bytes per byte of the value on the wire (a gob value,
/// or the gRPC request's `rollout_json`) plus [`MODEL_BASE`]. A value is
/// checked and its model's size counted (an upper bound: element sizes,
/// vector growth, map nodes, parsed JSON) before anything is allocated for
/// it, so a request that declares (or really holds) a great many tiny
/// elements is refused instead of costing hundreds of bytes per byte. Real
/// requests need a fraction of it: a Rollout is mostly pod template, which
/// is skipped, and the base covers a few hundred steps of any Rollout.
pub const MODEL_PER_BYTE: usize = 4;
/// See [`MODEL_PER_BYTE`].
pub const MODEL_BASE: usize = 1 << 20;
