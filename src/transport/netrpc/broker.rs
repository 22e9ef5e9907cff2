//! The plugin side of go-plugin's MuxBroker (mux_broker.go): the host opens
//! a yamux stream, writes the id `Dispense` handed out, and the plugin acks
//! with the same id. Unlike a plain port, every wait is bounded: a stream
//! that does not send its id within [`IDENTIFY_TIMEOUT`] is closed, at most
//! [`MAX_IDENTIFYING`] streams may be identifying at once (more are closed at
//! once), and at most [`MAX_WAITING`] dispensed ids wait for their stream.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use goplugin::yamux::{Session, Stream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Semaphore, oneshot};

/// How long a new stream may take to send its id, and how long a dispensed
/// id waits for its stream (go-plugin's accept timeout).
pub const IDENTIFY_TIMEOUT: Duration = Duration::from_secs(5);
/// Streams reading their id at once; the controller opens one per plugin.
pub const MAX_IDENTIFYING: usize = 64;
/// Dispensed ids waiting for their stream at once.
pub const MAX_WAITING: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("too many plugin streams awaited at once (limit {MAX_WAITING})")]
    Full,
    #[error("timeout waiting for the plugin stream {0}")]
    Timeout(u32),
    #[error("acknowledging the plugin stream {id}: {error}")]
    Ack { id: u32, error: std::io::Error },
}

/// Hands out ids and delivers the streams dialled to them.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

struct Inner {
    next_id: AtomicU32,
    waiting: Mutex<HashMap<u32, oneshot::Sender<Stream>>>,
    identifying: Arc<Semaphore>,
    timeout: Duration,
}

impl Broker {
    /// A broker whose waits last `timeout` ([`IDENTIFY_TIMEOUT`] in the plugin).
    pub fn new(timeout: Duration) -> Self {
        Broker {
            inner: Arc::new(Inner {
                next_id: AtomicU32::new(0),
                waiting: Mutex::new(HashMap::new()),
                identifying: Arc::new(Semaphore::new(MAX_IDENTIFYING)),
                timeout,
            }),
        }
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, HashMap<u32, oneshot::Sender<Stream>>> {
        self.inner
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A fresh id (from 1) and the wait for its stream; refused when
    /// [`MAX_WAITING`] ids already wait.
    pub fn expect(&self) -> Result<(u32, Pending), BrokerError> {
        let mut waiting = self.waiting();
        if waiting.len() >= MAX_WAITING {
            return Err(BrokerError::Full);
        }
        let id = self
            .inner
            .next_id
            .fetch_add(1, Ordering::SeqCst)
            .wrapping_add(1);
        let (tx, rx) = oneshot::channel();
        waiting.insert(id, tx);
        Ok((
            id,
            Pending {
                id,
                rx,
                broker: self.clone(),
            },
        ))
    }

    /// Streams reading their id right now.
    pub fn identifying(&self) -> usize {
        MAX_IDENTIFYING - self.inner.identifying.available_permits()
    }

    /// Routes every stream the host opens by the id it starts with, until
    /// the session ends.
    pub async fn run(self, session: Session) {
        while let Ok(mut stream) = session.accept().await {
            let Ok(permit) = self.inner.identifying.clone().try_acquire_owned() else {
                tracing::warn!(
                    limit = MAX_IDENTIFYING,
                    "too many streams identifying at once; closing a new one"
                );
                continue;
            };
            let broker = self.clone();
            tokio::spawn(async move {
                let mut id = [0u8; 4];
                let read = tokio::time::timeout(broker.inner.timeout, stream.read_exact(&mut id));
                let identified = matches!(read.await, Ok(Ok(_)));
                drop(permit);
                if !identified {
                    tracing::debug!("a stream never sent its id; closed");
                    return;
                }
                let id = u32::from_le_bytes(id);
                match broker.waiting().remove(&id) {
                    Some(tx) => {
                        let _ = tx.send(stream);
                    }
                    None => tracing::debug!(id, "a stream for an id nobody waits for; closed"),
                }
            });
        }
    }
}

/// The wait for one dispensed id's stream.
pub struct Pending {
    id: u32,
    rx: oneshot::Receiver<Stream>,
    broker: Broker,
}

impl Pending {
    /// The stream, acknowledged, or a timeout.
    pub async fn accept(self) -> Result<Stream, BrokerError> {
        let id = self.id;
        let got = tokio::time::timeout(self.broker.inner.timeout, self.rx).await;
        self.broker.waiting().remove(&id);
        let mut stream = match got {
            Ok(Ok(stream)) => stream,
            _ => return Err(BrokerError::Timeout(id)),
        };
        stream
            .write_all(&id.to_le_bytes())
            .await
            .map_err(|error| BrokerError::Ack { id, error })?;
        Ok(stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use goplugin::yamux::Config;

    fn pair() -> (Session, Session) {
        let (a, b) = tokio::io::duplex(1 << 16);
        (
            Session::client(a, Config::default()).unwrap(),
            Session::server(b, Config::default()).unwrap(),
        )
    }

    #[tokio::test]
    async fn silent_streams_are_closed_after_the_timeout_and_bounded() {
        let (host, plugin) = pair();
        let broker = Broker::new(Duration::from_millis(200));
        tokio::spawn(broker.clone().run(plugin));
        let mut silent = Vec::new();
        for _ in 0..MAX_IDENTIFYING + 10 {
            let mut s = host.open().await.unwrap();
            // yamux opens lazily: one byte short of an id makes it real.
            s.write_all(&[0]).await.unwrap();
            silent.push(s);
        }
        // The streams past the limit are closed at once, the others when
        // their time is up: every read ends (EOF or reset), none hangs.
        for mut s in silent {
            let mut buf = [0u8; 4];
            let read = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await;
            assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
        }
        assert_eq!(broker.identifying(), 0);
        // The broker still serves a stream that identifies itself.
        let (id, pending) = broker.expect().unwrap();
        let mut s = host.open().await.unwrap();
        s.write_all(&id.to_le_bytes()).await.unwrap();
        let _served = pending.accept().await.unwrap();
        let mut ack = [0u8; 4];
        s.read_exact(&mut ack).await.unwrap();
        assert_eq!(u32::from_le_bytes(ack), id);
    }

    #[tokio::test]
    async fn waiting_ids_are_bounded_and_time_out() {
        let broker = Broker::new(Duration::from_millis(50));
        let pending: Vec<_> = (0..MAX_WAITING).map(|_| broker.expect().unwrap()).collect();
        assert!(matches!(broker.expect(), Err(BrokerError::Full)));
        for (id, p) in pending {
            assert!(matches!(p.accept().await, Err(BrokerError::Timeout(i)) if i == id));
        }
        assert!(broker.expect().is_ok());
    }
}
