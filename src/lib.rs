//! Argo Rollouts traffic-router plugin for Istio.
//!
//! Layers, outermost first: transports (net/rpc, gRPC) decode calls and hand
//! them to a [`router::TrafficRouter`]; the [`router::IstioRouter`] resolves
//! the Rollout's configuration, reads objects through the [`cluster::Cluster`]
//! port, runs the pure [`core`] (JSON in, JSON out) and writes back what
//! changed.

pub mod cluster;
pub mod config;
pub mod core;
pub mod logging;
pub mod model;
pub mod process;
pub mod router;
pub mod simulate;
pub mod transport;
