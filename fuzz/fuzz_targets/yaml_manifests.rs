//! `simulate`'s input: YAML manifests (a Rollout and the objects it
//! routes), read, then played through the in-memory cluster.
#![no_main]

use std::sync::OnceLock;

use istio_router::simulate::{Output, Scenario, run};
use libfuzzer_sys::fuzz_target;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
    })
}

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let Ok(scenario) = Scenario::from_texts(&[("fuzz.yaml".into(), text.into())], None) else {
        return;
    };
    let _ = runtime().block_on(run(&scenario, Output::Yaml));
});
