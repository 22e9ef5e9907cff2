//! Transports that carry the controller's calls to a [`crate::router::TrafficRouter`].

pub mod grpc;
pub mod netrpc;

/// The largest request either transport accepts, in bytes. The controller's
/// biggest real call is about 23 KB (a whole Rollout); a larger message is
/// answered with an error before it is buffered (net/rpc) or refused by the
/// gRPC server's decoder, so one request never costs more than a small
/// multiple of this.
pub const MAX_REQUEST_BYTES: usize = 16 << 20;
