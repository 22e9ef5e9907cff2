//! Serves the release directory (`target/dist`) over HTTPS on loopback, as
//! a release page serves it to a cluster: the controller downloads the
//! plugin from the generated manifest's `https://` location (its host
//! pointed here) and checks the manifest's sha256, exactly as it does in a
//! user's cluster. The certificate is the tier's CA's; the controller trusts
//! it through `SSL_CERT_FILE`. Like a private release server, it can demand
//! an `Authorization` header ([`ReleaseServer::require_authorization`]),
//! which the controller sends from the entry's `headersFrom` Secret.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

pub struct ReleaseServer {
    pub port: u16,
    /// The `Authorization` value a download must carry; `None`: anyone.
    required: Arc<Mutex<Option<String>>>,
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
        let required = Arc::new(Mutex::new(None));
        let demanded = required.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let dir = dir.clone();
                let required = demanded.lock().unwrap_or_else(|p| p.into_inner()).clone();
                tokio::spawn(async move {
                    if let Ok(stream) = acceptor.accept(stream).await {
                        let _ = serve_one(stream, &dir, required.as_deref()).await;
                    }
                });
            }
        });
        Ok(ReleaseServer {
            port,
            required,
            task,
        })
    }

    /// From now on a download without this `Authorization` value is
    /// answered 401 (`None`: served to anyone).
    pub fn require_authorization(&self, value: Option<String>) {
        *self.required.lock().unwrap_or_else(|p| p.into_inner()) = value;
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

/// One HTTP/1.1 request: `GET /any/path/<file>` answers the file or 404;
/// 401 without the required `Authorization` header.
async fn serve_one<S>(stream: S, dir: &Path, required: Option<&str>) -> std::io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut stream = BufReader::new(stream);
    let mut request_line = String::new();
    stream.read_line(&mut request_line).await?;
    let mut authorization = None;
    loop {
        let mut header = String::new();
        if stream.read_line(&mut header).await? == 0 || header == "\r\n" {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("authorization")
        {
            authorization = Some(value.trim().to_string());
        }
    }
    if let Some(required) = required
        && authorization.as_deref() != Some(required)
    {
        let stream = stream.get_mut();
        stream
            .write_all(
                b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )
            .await?;
        return stream.shutdown().await;
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
