//! Serves the release directory (`target/dist`) over HTTPS on loopback, as
//! a release page serves it to a cluster: the controller downloads the
//! plugin from the generated manifest's `https://` location (its host
//! pointed here) and checks the manifest's sha256, exactly as it does in a
//! user's cluster. The certificate is the tier's CA's; the controller trusts
//! it through `SSL_CERT_FILE`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

pub struct ReleaseServer {
    pub port: u16,
    task: JoinHandle<()>,
}

impl ReleaseServer {
    /// Serves the files of `dir` by their name (the last path segment of a
    /// request), with the certificate and key given (PEM).
    pub async fn start(dir: &Path, cert: &Path, key: &Path) -> anyhow::Result<ReleaseServer> {
        let certs = CertificateDer::pem_file_iter(cert)
            .with_context(|| format!("reading {}", cert.display()))?
            .collect::<Result<Vec<_>, _>>()?;
        let key = PrivateKeyDer::from_pem_file(key)
            .with_context(|| format!("reading {}", key.display()))?;
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let dir = dir.to_path_buf();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let dir = dir.clone();
                tokio::spawn(async move {
                    if let Ok(stream) = acceptor.accept(stream).await {
                        let _ = serve_one(stream, &dir).await;
                    }
                });
            }
        });
        Ok(ReleaseServer { port, task })
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

/// One HTTP/1.1 request: `GET /any/path/<file>` answers the file or 404.
async fn serve_one<S>(stream: S, dir: &Path) -> std::io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut stream = BufReader::new(stream);
    let mut request_line = String::new();
    stream.read_line(&mut request_line).await?;
    loop {
        let mut header = String::new();
        if stream.read_line(&mut header).await? == 0 || header == "\r\n" {
            break;
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    let file: Option<PathBuf> = path
        .rsplit('/')
        .next()
        .filter(|name| !name.is_empty() && !name.starts_with('.'))
        .map(|name| dir.join(name));
    let body = match file {
        Some(file) => tokio::fs::read(file).await.ok(),
        None => None,
    };
    let stream = stream.get_mut();
    match body {
        Some(body) => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(&body).await?;
        }
        None => {
            stream
                .write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .await?;
        }
    }
    stream.shutdown().await
}
