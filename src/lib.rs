//! Argo Rollouts traffic-router plugin for Istio.
//!
//! Layers, outermost first: transports (net/rpc, gRPC) decode bytes into a
//! [`router::Call`] and [`router::dispatch`] it to a [`router::TrafficRouter`];
//! the [`istio::IstioRouter`] resolves the Rollout's configuration, reads
//! objects through the [`cluster::Cluster`] port, runs the pure
//! [`istio::core`] (JSON in, JSON out) and writes back what changed. Only
//! [`istio`] knows Istio; the router interface, transports and cluster port
//! are mesh-neutral.

pub mod cluster;
pub mod controller;
pub mod istio;
pub mod logging;
pub mod model;
pub mod process;
pub mod router;
pub mod simulate;
pub mod transport;
pub mod validate;
pub mod yaml;
