//! Raw yamux frames, for checking ACKs, pings and FINs one frame at a time.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::Path;
use std::time::Duration;

pub const TYPE_DATA: u8 = 0;
pub const TYPE_WINDOW_UPDATE: u8 = 1;
pub const TYPE_PING: u8 = 2;
pub const FLAG_SYN: u16 = 1;
pub const FLAG_ACK: u16 = 2;
pub const FLAG_FIN: u16 = 4;
pub const FLAG_RST: u16 = 8;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub ty: u8,
    pub flags: u16,
    pub stream: u32,
    pub length: u32,
    pub body: Vec<u8>,
}

/// A blocking yamux connection driven frame by frame.
pub struct RawConn(pub StdUnixStream);

impl RawConn {
    pub fn connect(path: &Path) -> RawConn {
        let s = StdUnixStream::connect(path).unwrap();
        RawConn(s)
    }

    pub fn send(&mut self, ty: u8, flags: u16, stream: u32, length: u32, body: &[u8]) {
        let mut frame = vec![0, ty];
        frame.extend_from_slice(&flags.to_be_bytes());
        frame.extend_from_slice(&stream.to_be_bytes());
        frame.extend_from_slice(&length.to_be_bytes());
        frame.extend_from_slice(body);
        self.0.write_all(&frame).unwrap();
    }

    pub fn data(&mut self, stream: u32, body: &[u8]) {
        self.send(TYPE_DATA, 0, stream, body.len() as u32, body);
    }

    /// The next frame, or `None` if none arrives within `limit`.
    pub fn next(&mut self, limit: Duration) -> Option<Frame> {
        self.0.set_read_timeout(Some(limit)).unwrap();
        let mut header = [0u8; 12];
        self.0.read_exact(&mut header).ok()?;
        self.0
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let ty = header[1];
        let flags = u16::from_be_bytes([header[2], header[3]]);
        let stream = u32::from_be_bytes(header[4..8].try_into().unwrap());
        let length = u32::from_be_bytes(header[8..12].try_into().unwrap());
        let mut body = Vec::new();
        if ty == TYPE_DATA {
            body = vec![0; length as usize];
            self.0.read_exact(&mut body).unwrap();
        }
        Some(Frame {
            ty,
            flags,
            stream,
            length,
            body,
        })
    }
}
