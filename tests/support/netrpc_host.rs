//! The controller's side of the net/rpc plugin protocol, for driving the
//! built binary: launch with the magic cookie, read the handshake, connect
//! with a go-plugin host (yamux client, control stream, MuxBroker dial), and
//! talk to the `Plugin` stream with raw bytes or encoded arguments. One
//! concern per file: `launch`, `frames` (raw yamux), `host` (host and
//! `Plugin` stream), `go` (the controller's Go argument types), `fixtures`.
//! The common items are re-exported here.

// Each test crate and bench uses a part of this module; dead-code analysis
// is per crate, so an item unused by one crate is not unused.
#![allow(dead_code)]

#[path = "netrpc_host/fixtures.rs"]
pub mod fixtures;
#[path = "netrpc_host/frames.rs"]
pub mod frames;
#[path = "netrpc_host/go.rs"]
pub mod go;
#[path = "netrpc_host/host.rs"]
pub mod host;
#[path = "netrpc_host/launch.rs"]
pub mod launch;

// Re-exported for the tests and benches that name them from here; each
// crate uses some of them.
#[allow(unused_imports)]
pub use {fixtures::*, frames::*, host::*, launch::*};
