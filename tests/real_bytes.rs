//! The bytes the real Argo Rollouts controller sent (and a Go plugin
//! answered), through the same decoding path the server uses.

use std::time::Instant;

use gobwire::{Decode, Decoder, Progress};
use istio_router::model::{Rollout, WeightDestination, from_value};
use istio_router::router::Call;
use istio_router::transport::netrpc::calls::decode_call;
use istio_router::transport::netrpc::gob::{Body, RawRequest, RequestStream};
use istio_router::transport::netrpc::plugin::{Reply, encode_response};
use serde_json::Value;
use test_support::fixtures::{fixtures, gob_messages};
use test_support::host::ReplyBody;

const SCENARIOS: [&str; 2] = ["host", "subset"];

/// The message bodies of a recorded gob byte stream.
fn messages(bytes: &[u8]) -> Vec<&[u8]> {
    gob_messages(bytes).expect("whole messages with valid framing")
}

/// Every request in `bytes`, decoded with one stream decoder.
fn decode_stream(bytes: &[u8]) -> Vec<(RawRequest, Call)> {
    decode_stream_timed(bytes)
        .into_iter()
        .map(|(r, c, _)| (r, c))
        .collect()
}

/// The same, with the time from each request's first message to its call.
fn decode_stream_timed(bytes: &[u8]) -> Vec<(RawRequest, Call, std::time::Duration)> {
    let mut stream = RequestStream::new();
    let mut out = Vec::new();
    let mut started = None;
    for msg in messages(bytes) {
        let began = *started.get_or_insert_with(Instant::now);
        if let Some(raw) = stream.push(msg).expect("header decodes") {
            let body = raw.body.clone().expect("body decodes");
            let call = decode_call(&mut stream.values, &raw.header.service_method, &body)
                .unwrap_or_else(|e| panic!("{}: {e}", raw.header.service_method));
            out.push((raw, call, began.elapsed()));
            started = None;
        }
    }
    out
}

/// The recorded calls of a scenario, in order: (file stem, args.json).
fn recorded_calls(scenario: &str) -> Vec<(String, Value)> {
    let dir = fixtures().join(scenario);
    let mut stems: Vec<String> = std::fs::read_dir(&dir)
        .expect("fixture directory (tests/fixtures/real-controller)")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".args.json").map(str::to_string)
        })
        .collect();
    stems.sort();
    stems
        .into_iter()
        .map(|stem| {
            let text = std::fs::read_to_string(dir.join(format!("{stem}.args.json"))).unwrap();
            (stem, serde_json::from_str(&text).unwrap())
        })
        .collect()
}

/// Gob never sends a zero value, not even behind a pointer, so `0`,
/// `false` and `""` arrive as absent (`currentStepIndex: 0` is lost).
/// Plugin configurations are raw JSON bytes and keep theirs.
fn drop_zero_values(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, v| !matches!(v, Value::Bool(false)) && *v != 0 && *v != "");
            for (k, v) in m.iter_mut() {
                if k != "plugins" {
                    drop_zero_values(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(drop_zero_values),
        _ => {}
    }
}

/// The call `args.json` describes, built through the model's JSON parsing.
fn expected_call(recorded: &Value) -> Call {
    let method = recorded["serviceMethod"].as_str().unwrap();
    let mut args = recorded["args"].clone();
    drop_zero_values(&mut args);
    let args = &args;
    let rollout = || Rollout::from_json(args["Rollout"].clone()).unwrap();
    let additional = || -> Vec<WeightDestination> {
        match &args["AdditionalDestinations"] {
            Value::Null => Vec::new(),
            v => from_value(v.clone(), "additional").unwrap(),
        }
    };
    let weight = || args["DesiredWeight"].as_i64().unwrap_or(0) as i32;
    match method {
        "Plugin.InitPlugin" => Call::InitPlugin,
        "Plugin.Type" => Call::Type,
        "Plugin.UpdateHash" => Call::UpdateHash {
            rollout: rollout(),
            canary_hash: args["CanaryHash"].as_str().unwrap_or_default().into(),
            stable_hash: args["StableHash"].as_str().unwrap_or_default().into(),
            additional: additional(),
        },
        "Plugin.SetWeight" => Call::SetWeight {
            rollout: rollout(),
            desired_weight: weight(),
            additional: additional(),
        },
        "Plugin.VerifyWeight" => Call::VerifyWeight {
            rollout: rollout(),
            desired_weight: weight(),
            additional: additional(),
        },
        "Plugin.SetHeaderRoute" => Call::SetHeaderRoute {
            rollout: rollout(),
            route: from_value(args["SetHeaderRoute"].clone(), "route").unwrap(),
        },
        "Plugin.SetMirrorRoute" => Call::SetMirrorRoute {
            rollout: rollout(),
            route: from_value(args["SetMirrorRoute"].clone(), "route").unwrap(),
        },
        "Plugin.RemoveManagedRoutes" => Call::RemoveManagedRoutes { rollout: rollout() },
        other => panic!("unexpected method {other}"),
    }
}

fn check(stem: &str, raw: &RawRequest, call: &Call, recorded: &Value) {
    assert_eq!(
        raw.header.service_method, recorded["serviceMethod"],
        "{stem}: method"
    );
    assert_eq!(
        raw.header.seq,
        recorded["seq"].as_u64().unwrap(),
        "{stem}: seq"
    );
    let name = match raw.body.as_ref().unwrap() {
        Body::Nil => String::new(),
        Body::Interface { name, .. } => name.clone(),
        Body::Plain { .. } => panic!("{stem}: body is not an interface"),
    };
    assert_eq!(name, recorded["argsGobName"], "{stem}: registered name");
    assert_eq!(call, &expected_call(recorded), "{stem}: arguments");
}

#[test]
fn every_self_contained_request_decodes_to_its_recorded_arguments() {
    for scenario in SCENARIOS {
        for (stem, recorded) in recorded_calls(scenario) {
            let path = fixtures()
                .join(scenario)
                .join(format!("{stem}.request.bin"));
            let bytes = std::fs::read(&path).unwrap();
            let started = Instant::now();
            let decoded = decode_stream(&bytes);
            let elapsed = started.elapsed();
            assert_eq!(decoded.len(), 1, "{scenario}/{stem}: one request");
            let (raw, call) = &decoded[0];
            check(&format!("{scenario}/{stem}"), raw, call, &recorded);
            eprintln!(
                "{scenario}/{stem}.request.bin: {} bytes, {} messages, decoded in {elapsed:?}",
                bytes.len(),
                messages(&bytes).len()
            );
        }
    }
}

#[test]
fn the_whole_recorded_stream_decodes_call_by_call() {
    for scenario in SCENARIOS {
        let bytes =
            std::fs::read(fixtures().join(scenario).join("wire/plugin-stream.c2s.gob")).unwrap();
        let started = Instant::now();
        let timed = decode_stream_timed(&bytes);
        eprintln!(
            "{scenario}: whole stream ({} bytes, {} calls) decoded in {:?}; per call: {:?}",
            bytes.len(),
            timed.len(),
            started.elapsed(),
            timed.iter().map(|t| t.2).collect::<Vec<_>>()
        );
        let decoded: Vec<_> = timed.into_iter().map(|(r, c, _)| (r, c)).collect();
        let recorded = recorded_calls(scenario);
        assert_eq!(decoded.len(), recorded.len(), "{scenario}: number of calls");
        for ((raw, call), (stem, args)) in decoded.iter().zip(&recorded) {
            check(&format!("{scenario}/{stem} (stream)"), raw, call, args);
        }
    }
}

#[test]
fn the_first_rollout_carries_what_the_router_needs() {
    let bytes = std::fs::read(fixtures().join("host/04-UpdateHash.request.bin")).unwrap();
    let decoded = decode_stream(&bytes);
    let Call::UpdateHash { rollout, .. } = &decoded[0].1 else {
        panic!("not UpdateHash")
    };
    let routing = rollout.traffic_routing().expect("trafficRouting");
    assert_eq!(
        routing.plugins["argoproj-labs/istio"],
        serde_json::json!({"virtualService": {"name": "rollout-vsvc", "routes": ["primary"]}})
    );
    assert_eq!(
        routing
            .managed_routes
            .as_ref()
            .map(|r| r.iter().map(|m| m.name.as_str()).collect::<Vec<_>>()),
        Some(vec!["header-route-1", "mirror-route-1"])
    );
    assert_eq!(rollout.metadata.namespace, "demo");
    assert_eq!(rollout.status.stable_rs, "7c4b9d6f8d");
    assert_eq!(rollout.kind.as_deref(), Some("Rollout"));
}

/// A method given another method's argument type is refused, naming both.
#[test]
fn a_registered_name_that_does_not_fit_the_method_is_an_error() {
    let bytes = std::fs::read(fixtures().join("host/12-RemoveManagedRoutes.request.bin")).unwrap();
    let mut stream = RequestStream::new();
    let mut raw = None;
    for msg in messages(&bytes) {
        raw = stream.push(msg).unwrap().or(raw);
    }
    let body = raw.unwrap().body.unwrap();
    let err = decode_call(&mut stream.values, "Plugin.SetWeight", &body).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("RemoveManagedRoutesArgs"), "{text}");
    assert!(text.contains("SetWeightAndVerifyWeightArgs"), "{text}");
}

/// Decodes one response stream (header and body pairs) with a Go-like
/// decoder, the body as the method's reply type.
fn decode_responses(bytes: &[u8]) -> Vec<(go_netrpc::Response, ReplyBody)> {
    let mut dec = Decoder::new();
    let mut out = Vec::new();
    let mut header: Option<go_netrpc::Response> = None;
    for msg in messages(bytes) {
        if dec.push_message(msg).unwrap() != Progress::Ready {
            continue;
        }
        match header.take() {
            None => header = Some(dec.decode().unwrap()),
            Some(h) => {
                let body = if !h.error.is_empty() {
                    dec.decode::<go_netrpc::InvalidRequest>().unwrap();
                    ReplyBody::Empty
                } else {
                    match h.service_method.as_str() {
                        "Plugin.Type" => ReplyBody::Str(get(&mut dec)),
                        "Plugin.VerifyWeight" => ReplyBody::Verify(get(&mut dec)),
                        _ => ReplyBody::Error(get(&mut dec)),
                    }
                };
                out.push((h, body));
            }
        }
    }
    out
}

fn get<T: Decode + Default>(dec: &mut Decoder) -> T {
    dec.decode().unwrap()
}

#[test]
fn our_responses_decode_like_the_go_plugin_responses() {
    for scenario in SCENARIOS {
        let recorded =
            std::fs::read(fixtures().join(scenario).join("wire/plugin-stream.s2c.gob")).unwrap();
        let go = decode_responses(&recorded);
        assert_eq!(go.len(), recorded_calls(scenario).len(), "{scenario}");
        // The same replies through our encoder, one stream like the Go one.
        let mut enc = gobwire::Encoder::new();
        let mut ours = Vec::new();
        for (header, body) in &go {
            let reply = match body {
                ReplyBody::Empty => Err(header.error.clone()),
                ReplyBody::Str(s) => Ok(Reply::Type(s.clone())),
                ReplyBody::Verify(v) => Ok(Reply::Verify(v.clone())),
                ReplyBody::Error(e) => Ok(Reply::Error(e.clone())),
                ReplyBody::Deadline(d) => Ok(Reply::Deadline(d.clone())),
            };
            ours.extend(
                encode_response(&mut enc, &header.service_method, header.seq, &reply).unwrap(),
            );
        }
        assert_eq!(decode_responses(&ours), go, "{scenario}");
        // Definitions once per stream, as Go: the same messages, which
        // differ at most in the type ids chosen.
        assert_eq!(
            messages(&ours).len(),
            messages(&recorded).len(),
            "{scenario}: messages"
        );
    }
}
