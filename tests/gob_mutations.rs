//! The controller's recorded request stream, damaged at random (bytes
//! changed, cut short, garbage inserted), through the server's decoding
//! path: every outcome is a value or an error, never a panic.

use istio_router::transport::netrpc::calls::decode_call;
use istio_router::transport::netrpc::gob::{RequestStream, split_message};
use proptest::prelude::*;

fn recorded_stream() -> Vec<u8> {
    let dir = test_support::fixtures::fixtures().join("host/wire");
    std::fs::read(dir.join("plugin-stream.c2s.gob")).expect("recorded stream")
}

#[derive(Debug, Clone)]
enum Damage {
    Set { at: usize, byte: u8 },
    Cut { at: usize },
    Insert { at: usize, bytes: Vec<u8> },
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Damage::Set { at, byte }),
        any::<usize>().prop_map(|at| Damage::Cut { at }),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Damage::Insert { at, bytes }),
    ]
}

/// Runs `bytes` through framing, the request stream and call decoding, as
/// the server does; returns how many calls decoded.
fn decode_all(bytes: &[u8]) -> usize {
    let mut stream = RequestStream::new();
    let mut calls = 0;
    let mut pos = 0;
    while pos < bytes.len() {
        let Ok(Some((start, len))) = split_message(&bytes[pos..]) else {
            break;
        };
        let Some(message) = bytes.get(pos + start..pos + start + len) else {
            break;
        };
        pos += start + len;
        let Ok(Some(raw)) = stream.push(message) else {
            continue;
        };
        if let Ok(body) = &raw.body
            && decode_call(&mut stream.values, &raw.header.service_method, body).is_ok()
        {
            calls += 1;
        }
    }
    calls
}

#[test]
fn the_undamaged_stream_decodes_every_call() {
    assert_eq!(decode_all(&recorded_stream()), 13);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn damaged_streams_give_errors_not_panics(damages in prop::collection::vec(damage(), 1..4)) {
        let mut bytes = recorded_stream();
        for damage in damages {
            let len = bytes.len().max(1);
            match damage {
                Damage::Set { at, byte } => {
                    let at = at % len;
                    if let Some(b) = bytes.get_mut(at) {
                        *b = byte;
                    }
                }
                Damage::Cut { at } => bytes.truncate(at % len),
                Damage::Insert { at, bytes: extra } => {
                    let at = at % len;
                    bytes.splice(at..at, extra);
                }
            }
        }
        decode_all(&bytes);
    }
}
