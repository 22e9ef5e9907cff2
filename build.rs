//! Compiles the gRPC protos with protox, a pure-Rust protobuf compiler, so a
//! build needs no system `protoc`.

const PROTOS: &[&str] = &[
    "proto/istio_router.proto",
    "proto/plugin/grpc_broker.proto",
    "proto/plugin/grpc_controller.proto",
    "proto/plugin/grpc_stdio.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(PROTOS, ["proto"])?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
