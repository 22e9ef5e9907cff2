//! The plugin stream's bytes as the controller would send them: framing,
//! the request stream (type definitions, headers, bodies) and call decoding.
//! Seeded from the recorded controller streams.
#![no_main]

use istio_router::transport::netrpc::calls::decode_call;
use istio_router::transport::netrpc::gob::{GobError, RequestStream, split_message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let mut stream = RequestStream::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let (start, len) = match split_message(&bytes[pos..]) {
            Ok(Some(frame)) => frame,
            Ok(None) => return,
            // The server answers and drops the message without reading it.
            Err(GobError::TooLarge { .. }) => {
                stream.refuse_message();
                return;
            }
            Err(_) => return,
        };
        let message = &bytes[pos + start..pos + start + len];
        pos += start + len;
        if let Ok(Some(raw)) = stream.push(message)
            && let Ok(body) = &raw.body
        {
            let _ = decode_call(&mut stream.values, &raw.header.service_method, body);
        }
    }
});
