//! Transports that carry the controller's calls to a [`crate::router::TrafficRouter`].

pub mod grpc;
pub mod netrpc;
