//! Hostile and huge requests through the plugin stream's decoding path
//! (framing, request stream, call decoding), with every allocation counted:
//! memory is bounded by the request, not by the counts it declares.
//! Numbers, not wall time; `--nocapture` prints them.

use gobwire::{Encoder, Interface};
use istio_router::router::Call;
use istio_router::transport::netrpc::calls::decode_call;
use istio_router::transport::netrpc::gob::{
    GobError, MAX_MESSAGE, MODEL_BASE, MODEL_PER_BYTE, RequestStream, split_message,
};
use test_support::fixtures::{fixtures, rollout};
use test_support::go_args::{CanaryStep, IntOrString, RolloutPause, SetWeightAndVerifyWeightArgs};
use test_support::heap::{self, MEASURING, peak_during};
use test_support::host::encode_request;

#[global_allocator]
static ALLOC: heap::Counting = heap::Counting;

/// Every call in `bytes` decoded as the server does; the calls or errors.
fn decode_all(bytes: &[u8]) -> Vec<Result<Call, String>> {
    let mut stream = RequestStream::new();
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let (start, len) = match split_message(&bytes[pos..]) {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(e) => {
                out.push(Err(e.to_string()));
                break;
            }
        };
        let message = &bytes[pos + start..pos + start + len];
        pos += start + len;
        match stream.push(message) {
            Ok(None) => {}
            Ok(Some(raw)) => out.push(raw.body.map_err(|e| e.to_string()).and_then(|body| {
                decode_call(&mut stream.values, &raw.header.service_method, &body)
                    .map_err(|e| e.to_string())
            })),
            Err(e) => out.push(Err(e.to_string())),
        }
    }
    out
}

/// A SetWeight request whose Rollout has `steps` empty steps (one byte each
/// on the wire), as one gob stream.
fn set_weight_with_steps(steps: usize) -> Vec<u8> {
    let mut rollout = rollout("ns", "r");
    rollout
        .spec
        .strategy
        .canary
        .as_mut()
        .unwrap()
        .steps
        .resize(steps, CanaryStep::default());
    set_weight_request(rollout)
}

/// A SetWeight request for `rollout`, as one gob stream.
fn set_weight_request(rollout: test_support::go_args::Rollout) -> Vec<u8> {
    let args = Interface::new(
        "SetWeightAndVerifyWeightArgs",
        &SetWeightAndVerifyWeightArgs {
            rollout,
            desired_weight: 10,
            additional_destinations: Vec::new(),
        },
    )
    .unwrap();
    encode_request(&mut Encoder::new(), "Plugin.SetWeight", 1, &Some(args)).unwrap()
}

#[test]
fn the_recorded_controller_requests_stay_within_a_small_multiple_of_their_size() {
    let _one = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    for scenario in ["host", "subset"] {
        let path = fixtures().join(scenario).join("wire/plugin-stream.c2s.gob");
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let (calls, peak) = peak_during(|| decode_all(&bytes));
        assert!(calls.iter().all(Result::is_ok), "{calls:?}");
        eprintln!(
            "recorded {scenario}: {} calls, {} bytes, peak {peak} bytes",
            calls.len(),
            bytes.len()
        );
        assert!(
            peak <= 16 * bytes.len(),
            "peak {peak} for {} bytes",
            bytes.len()
        );
    }
}

/// Bytes of heap per request byte the crafted requests may cost.
const FACTOR: usize = 8;

#[test]
fn a_1mb_request_of_tiny_steps_costs_a_bounded_multiple_of_its_size() {
    let _one = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    let bytes = set_weight_with_steps(1_000_000);
    let (calls, peak) = peak_during(|| decode_all(&bytes));
    eprintln!(
        "1 MB of empty steps: {} bytes, peak {peak} bytes ({}x): {:?}",
        bytes.len(),
        peak / bytes.len(),
        calls.iter().map(|c| c.as_ref().err()).collect::<Vec<_>>()
    );
    assert_eq!(calls.len(), 1);
    let error = calls[0].as_ref().unwrap_err();
    assert!(
        error.starts_with(
            "Plugin.SetWeight: decoding SetWeightAndVerifyWeightArgs: gob: a value of "
        ) && error.ends_with(&format!("bytes ({MODEL_PER_BYTE} per byte + {MODEL_BASE})")),
        "{error}"
    );
    assert!(
        peak <= FACTOR * bytes.len(),
        "peak {peak} for {} bytes",
        bytes.len()
    );
}

#[test]
fn a_rollout_of_many_real_steps_decodes() {
    let _one = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    // 200 steps, each a weight and a pause: far more than a real Rollout.
    let mut rollout = rollout("ns", "r");
    let canary = rollout.spec.strategy.canary.as_mut().unwrap();
    canary.steps = (0..200)
        .map(|i| CanaryStep {
            set_weight: Some(i % 100),
            pause: Some(RolloutPause {
                duration: Some(IntOrString {
                    ty: 1,
                    str_val: "10m".into(),
                    ..IntOrString::default()
                }),
            }),
            ..CanaryStep::default()
        })
        .collect();
    let bytes = set_weight_request(rollout);
    let (calls, peak) = peak_during(|| decode_all(&bytes));
    eprintln!("200 steps: {} bytes, peak {peak} bytes", bytes.len());
    match &calls[..] {
        [Ok(Call::SetWeight { rollout, .. })] => {
            let steps = &rollout.canary().unwrap().steps;
            assert_eq!(steps.len(), 200);
            assert_eq!(steps[199].set_weight, Some(99));
            assert_eq!(
                steps[199].pause,
                Some(serde_json::json!({"duration": "10m"}))
            );
        }
        other => panic!(
            "{:?}",
            other.iter().map(|c| c.as_ref().err()).collect::<Vec<_>>()
        ),
    }
}

#[test]
fn a_count_as_large_as_the_bytes_left_with_an_invalid_first_element_reserves_nothing() {
    let _one = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    let mut bytes = set_weight_with_steps(1_000_000);
    // The steps are a run of a million 0x00 bytes (one empty struct each),
    // preceded by their count: break the first element (0xF7 announces a
    // 9-byte integer, more than a u64 holds).
    let run = bytes
        .windows(1_000_000)
        .position(|w| w.iter().all(|&b| b == 0))
        .expect("the run of empty steps");
    bytes[run] = 0xF7;
    let (calls, peak) = peak_during(|| decode_all(&bytes));
    eprintln!(
        "count = bytes, first invalid: {} bytes, peak {peak} bytes",
        bytes.len()
    );
    assert_eq!(calls.len(), 1);
    let error = calls[0].as_ref().unwrap_err();
    assert!(error.contains("invalid unsigned integer"), "{error}");
    assert!(
        peak <= 4 * bytes.len(),
        "peak {peak} for {} bytes",
        bytes.len()
    );
}

#[test]
fn a_message_past_the_size_limit_is_refused_by_its_length_prefix() {
    let _one = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    // The length prefix of a message one byte over the limit, nothing more:
    // refused before any of it is buffered.
    let len = MAX_MESSAGE as u64 + 1;
    let mut prefix = vec![0xFC];
    prefix.extend_from_slice(&(len as u32).to_be_bytes());
    assert_eq!(
        split_message(&prefix),
        Err(GobError::TooLarge { header: 5, len })
    );
    assert_eq!(
        split_message(&prefix).unwrap_err().to_string(),
        format!("gob: message of {len} bytes exceeds the limit of {MAX_MESSAGE} bytes")
    );
    // The largest allowed length is only waited for.
    let mut prefix = vec![0xFC];
    prefix.extend_from_slice(&(MAX_MESSAGE as u32).to_be_bytes());
    assert_eq!(split_message(&prefix), Ok(None));
}

#[test]
fn crafted_overflow_inputs_are_errors() {
    let _one = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    // A type definition of id -i64::MIN (message: length 9, then u64::MAX).
    let mut bytes = vec![0x09, 0xF8];
    bytes.extend_from_slice(&[0xFF; 8]);
    let calls = decode_all(&bytes);
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0].as_ref().unwrap_err(),
        &format!("gob: invalid type id {}", i64::MIN)
    );
}

/// `simulate` over the embedded example with one line replaced.
fn simulate_with(from: &str, to: &str) -> Result<String, String> {
    let text = include_str!("../examples/host-split.yaml");
    assert!(text.contains(from), "{from}");
    let text = text.replacen(from, to, 1);
    let scenario =
        istio_router::simulate::Scenario::from_texts(&[("host-split.yaml".into(), text)], None)
            .map_err(|e| e.to_string())?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(istio_router::simulate::run(
            &scenario,
            istio_router::simulate::Output::Yaml,
        ))
        .map_err(|e| e.to_string())
}

#[test]
fn non_finite_and_fractional_weights_in_manifests_are_errors_naming_the_field() {
    let _one = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    for (from, to, field) in [
        ("setWeight: 20", "setWeight: .nan", "setWeight"),
        ("setWeight: 20", "setWeight: .inf", "setWeight"),
        ("setWeight: 20", "setWeight: 20.5", "setWeight"),
        ("setWeight: 20", "setWeight: 4294967296", "setWeight"),
        ("weight: 100", "weight: .nan", "weight"),
        ("weight: 100", "weight: -.inf", "weight"),
        ("weight: 100", "weight: 99.5", "weight"),
        ("weight: 100", "weight: 1e999", "weight"),
        ("setWeight: 20", "setWeight: 1e999", "setWeight"),
        ("weight: 100", "weight: 9223372036854775807", "weight"),
    ] {
        let error = simulate_with(from, to).expect_err(to);
        eprintln!("{to}: {error}");
        assert!(error.contains(field), "{to}: {error}");
    }
}
