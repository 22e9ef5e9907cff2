//! A real control plane on loopback: etcd, kube-apiserver (RBAC, service
//! account tokens, audit log) and kube-controller-manager (the ReplicaSet,
//! garbage-collector and service-account controllers), with Istio's CRDs as
//! `istio.io/api` ships them.

use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{Value, json};

use crate::kube_objects::Objects;
use crate::tools::Built;

/// The identity the controller (and so the plugin) runs as.
pub const CONTROLLER_NAMESPACE: &str = "argo-rollouts";
pub const CONTROLLER_SERVICE_ACCOUNT: &str = "argo-rollouts";

pub struct Cluster {
    work: Option<tempfile::TempDir>,
    work_path: PathBuf,
    processes: Mutex<Vec<Process>>,
    /// kube-apiserver's binary and flags, to start it again.
    apiserver: (PathBuf, Vec<String>),
    restarts: Mutex<u32>,
    /// From each kube-apiserver stop until it was ready again.
    restart_windows: Mutex<Vec<(SystemTime, SystemTime)>>,
    admin: Client,
    /// etcd's client URL (its v3 JSON gateway serves there too).
    pub etcd_url: String,
    pub server: String,
    pub ca_file: PathBuf,
    /// A certificate for 127.0.0.1 signed by the tier's CA, and its key.
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    pub admin_kubeconfig: PathBuf,
    pub audit_log: PathBuf,
}

impl Cluster {
    pub async fn start(built: &Built, root: &Path) -> anyhow::Result<Cluster> {
        let work = tempfile::Builder::new()
            .prefix("istio-plugin-e2e-")
            .tempdir()
            .context("creating the work directory")?;
        let dir = work.path().to_path_buf();
        let _ = root;

        let pki = Pki::create(&dir)?;
        let admin_token = random_token()?;
        std::fs::write(
            dir.join("tokens.csv"),
            format!("{admin_token},e2e-admin,e2e-admin,system:masters\n"),
        )?;
        // The audit log records every request of the controller's service
        // account (the controller and the plugin it starts share it; the
        // user agent tells them apart).
        std::fs::write(
            dir.join("audit-policy.yaml"),
            format!(
                "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n  - level: Metadata\n    users: [\"system:serviceaccount:{CONTROLLER_NAMESPACE}:{CONTROLLER_SERVICE_ACCOUNT}\"]\n  - level: None\n"
            ),
        )?;

        let mut processes = Vec::new();
        let etcd_client = free_port()?;
        let etcd_peer = free_port()?;
        processes.push(Process::spawn(
            "etcd",
            &dir,
            Command::new(&built.etcd).args([
                "--name=e2e".to_string(),
                format!("--data-dir={}", dir.join("etcd").display()),
                format!("--listen-client-urls=http://127.0.0.1:{etcd_client}"),
                format!("--advertise-client-urls=http://127.0.0.1:{etcd_client}"),
                format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer}"),
                format!("--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}"),
                format!("--initial-cluster=e2e=http://127.0.0.1:{etcd_peer}"),
                "--unsafe-no-fsync=true".to_string(),
                "--log-level=warn".to_string(),
            ]),
        )?);
        wait_for_port(etcd_client, Duration::from_secs(30), "etcd", &mut processes)?;

        let secure_port = free_port()?;
        let audit_log = dir.join("audit.log");
        let apiserver_args = vec![
            format!("--etcd-servers=http://127.0.0.1:{etcd_client}"),
            "--bind-address=127.0.0.1".to_string(),
            "--advertise-address=127.0.0.1".to_string(),
            // Kubernetes 1.37 refuses a loopback address for the
            // `kubernetes` Service's endpoints; nothing here reaches
            // the API server through that Service.
            "--endpoint-reconciler-type=none".to_string(),
            format!("--secure-port={secure_port}"),
            format!("--tls-cert-file={}", pki.server_cert.display()),
            format!("--tls-private-key-file={}", pki.server_key.display()),
            format!("--client-ca-file={}", pki.ca_cert.display()),
            format!("--token-auth-file={}", dir.join("tokens.csv").display()),
            "--authorization-mode=RBAC".to_string(),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".to_string(),
            format!("--service-account-key-file={}", pki.sa_public.display()),
            format!(
                "--service-account-signing-key-file={}",
                pki.sa_private.display()
            ),
            "--service-cluster-ip-range=10.96.0.0/16".to_string(),
            format!(
                "--audit-policy-file={}",
                dir.join("audit-policy.yaml").display()
            ),
            format!("--audit-log-path={}", audit_log.display()),
            "--audit-log-format=json".to_string(),
            "--audit-log-mode=blocking".to_string(),
            "--profiling=false".to_string(),
            "--v=0".to_string(),
        ];
        processes.push(Process::spawn(
            "kube-apiserver",
            &dir,
            Command::new(&built.kube_apiserver).args(&apiserver_args),
        )?);

        let server = format!("https://127.0.0.1:{secure_port}");
        let admin_kubeconfig = dir.join("admin.kubeconfig");
        write_kubeconfig(
            &admin_kubeconfig,
            &server,
            &pki.ca_cert,
            "e2e-admin",
            &admin_token,
        )?;
        let admin = client_from(&admin_kubeconfig).await?;
        wait_for_apiserver(&admin, || check_alive(&mut processes)).await?;

        processes.push(Process::spawn(
            "kube-controller-manager",
            &dir,
            Command::new(&built.kube_controller_manager).args([
                format!("--kubeconfig={}", admin_kubeconfig.display()),
                "--controllers=replicaset,garbagecollector,serviceaccount".to_string(),
                "--secure-port=0".to_string(),
                "--leader-elect=false".to_string(),
                "--concurrent-replicaset-syncs=10".to_string(),
                "--v=0".to_string(),
            ]),
        )?);

        let cluster = Cluster {
            work_path: dir.clone(),
            work: Some(work),
            processes: Mutex::new(processes),
            apiserver: (built.kube_apiserver.clone(), apiserver_args),
            restarts: Mutex::new(0),
            restart_windows: Mutex::new(Vec::new()),
            admin,
            etcd_url: format!("http://127.0.0.1:{etcd_client}"),
            server,
            ca_file: pki.ca_cert,
            serving_cert: pki.server_cert,
            serving_key: pki.server_key,
            admin_kubeconfig,
            audit_log,
        };
        let istio_crds = built
            .istio_api_dir
            .join("kubernetes/customresourcedefinitions.gen.yaml");
        let objects = Objects::new(cluster.admin.clone());
        objects
            .apply_file(&istio_crds, None, "e2e-installer")
            .await?;
        objects.wait_crds_established(&istio_crds).await?;
        Ok(cluster)
    }

    pub fn admin_client(&self) -> Client {
        self.admin.clone()
    }

    pub fn work_dir(&self) -> &Path {
        &self.work_path
    }

    /// Stops kube-apiserver (SIGTERM, as a node drains it), waits `down`
    /// while `meanwhile` runs (it may write to etcd, as another API server
    /// of the cluster would), then starts it again with the same flags on
    /// the same etcd and waits until it is ready and kube-controller-manager
    /// has caught up; the outcome of `meanwhile`.
    pub async fn restart_apiserver<T, F: std::future::Future<Output = anyhow::Result<T>>>(
        &self,
        down: Duration,
        meanwhile: F,
    ) -> anyhow::Result<T> {
        let restart = {
            let mut restarts = self.restarts.lock().unwrap_or_else(|p| p.into_inner());
            *restarts += 1;
            *restarts
        };
        let stopped = SystemTime::now();
        {
            let mut processes = self.processes.lock().unwrap_or_else(|p| p.into_inner());
            let index = processes
                .iter()
                .position(|p| p.name.starts_with("kube-apiserver"))
                .context("no kube-apiserver process")?;
            let mut apiserver = processes.remove(index);
            // Its graceful shutdown outlasts what the tier waits for (its
            // open watches): after 3 s it is killed.
            tokio::task::block_in_place(|| apiserver.stop_within(Duration::from_secs(3)));
        }
        let started = Instant::now();
        let outcome = meanwhile.await?;
        tokio::time::sleep(down.saturating_sub(started.elapsed())).await;
        let process = Process::spawn(
            &format!("kube-apiserver-restart{restart}"),
            &self.work_path,
            Command::new(&self.apiserver.0).args(&self.apiserver.1),
        )?;
        self.processes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(process);
        let deadline = Instant::now() + Duration::from_secs(120);
        wait_for_apiserver(&self.admin, || {
            check_alive(&mut self.processes.lock().unwrap_or_else(|p| p.into_inner()))
        })
        .await
        .context("after its restart")?;
        self.restart_windows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((stopped, SystemTime::now()));
        // The rest of the cluster must have caught up too before the next
        // step (or the next scenario): kube-controller-manager gives a new
        // namespace its `default` ServiceAccount, without which no pod can
        // be created. Its informers recover at their own pace, more slowly
        // after a compaction.
        let objects = Objects::new(self.admin.clone());
        let probe = format!("e2e-restart-probe-{restart}");
        objects.ensure_namespace(&probe).await?;
        while objects
            .get("ServiceAccount", &probe, "default")
            .await?
            .is_none()
        {
            if Instant::now() > deadline {
                bail!(
                    "kube-controller-manager gave namespace {probe} no ServiceAccount within 120 s of the restart"
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Ok(outcome)
    }

    /// Whether `time` fell while kube-apiserver was being restarted (a
    /// starting API server refuses requests until its RBAC caches are
    /// filled).
    pub fn during_restart(&self, time: SystemTime) -> bool {
        self.restart_windows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|(from, to)| *from <= time && time <= *to)
    }

    /// One request to etcd's v3 JSON gateway (`/v3/kv/range`, `/v3/kv/put`,
    /// `/v3/kv/compaction`, …); the answer as JSON.
    pub async fn etcd(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        use http_body_util::{BodyExt, Full};
        let address = self.etcd_url.trim_start_matches("http://").to_string();
        let stream = tokio::net::TcpStream::connect(&address)
            .await
            .with_context(|| format!("connecting to etcd at {address}"))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let request = http::Request::post(path)
            .header(http::header::HOST, &address)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(bytes::Bytes::from(body.to_string())))?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            bail!("etcd {path}: {status}: {}", String::from_utf8_lossy(&bytes));
        }
        serde_json::from_slice(&bytes).with_context(|| format!("etcd {path}: answer"))
    }

    /// The stored JSON of a custom resource in etcd (`key` as the API
    /// server stores it, e.g. `/registry/networking.istio.io/virtualservices/ns/name`).
    pub async fn etcd_get(&self, key: &str) -> anyhow::Result<Value> {
        let answer = self
            .etcd("/v3/kv/range", json!({"key": base64(key.as_bytes())}))
            .await?;
        let value = answer["kvs"][0]["value"]
            .as_str()
            .with_context(|| format!("etcd has no key {key}: {answer}"))?;
        serde_json::from_slice(&unbase64(value)?)
            .with_context(|| format!("etcd key {key} does not hold JSON"))
    }

    /// Compacts etcd's history up to its current revision, physically (the
    /// answer comes once the old revisions are gone); says which revision.
    pub async fn compact_etcd(&self) -> anyhow::Result<String> {
        // Any read answers with the store's current revision.
        let range = self
            .etcd("/v3/kv/range", json!({"key": base64(b"/e2e-revision")}))
            .await?;
        let revision = match &range["header"]["revision"] {
            Value::String(r) => r.clone(),
            Value::Number(r) => r.to_string(),
            _ => bail!("etcd's answer has no revision: {range}"),
        };
        self.etcd(
            "/v3/kv/compaction",
            json!({"revision": revision, "physical": true}),
        )
        .await?;
        Ok(format!("etcd compacted up to revision {revision}"))
    }

    pub async fn etcd_put(&self, key: &str, value: &Value) -> anyhow::Result<()> {
        self.etcd(
            "/v3/kv/put",
            json!({"key": base64(key.as_bytes()), "value": base64(value.to_string().as_bytes())}),
        )
        .await
        .map(|_| ())
    }

    /// Stops every process; keeps the work directory (logs, audit log)
    /// when something failed or `E2E_KEEP` is set.
    pub fn finish(mut self, success: bool) {
        let processes = self
            .processes
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for process in processes.iter_mut().rev() {
            process.stop();
        }
        if (!success || std::env::var_os("E2E_KEEP").is_some())
            && let Some(work) = self.work.take()
        {
            let kept = work.keep();
            eprintln!("e2e: logs kept in {}", kept.display());
        }
    }
}

/// Certificates and keys, made with the `openssl` command.
struct Pki {
    ca_cert: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    sa_private: PathBuf,
    sa_public: PathBuf,
}

impl Pki {
    fn create(dir: &Path) -> anyhow::Result<Pki> {
        let path = |name: &str| dir.join(name);
        let p256 = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(
            dir,
            &[
                &["req", "-x509"],
                &p256[..],
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.crt",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=e2e-ca",
                ],
            ]
            .concat(),
        )?;
        // The serving certificate: a leaf (CA:FALSE) signed by the CA.
        openssl(
            dir,
            &[
                &["req"],
                &p256[..],
                &[
                    "-keyout",
                    "apiserver.key",
                    "-out",
                    "apiserver.csr",
                    "-subj",
                    "/CN=kube-apiserver",
                ],
            ]
            .concat(),
        )?;
        std::fs::write(
            dir.join("apiserver.ext"),
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\n",
        )?;
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "apiserver.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "apiserver.ext",
                "-out",
                "apiserver.crt",
            ],
        )?;
        openssl(
            dir,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                "sa.key",
            ],
        )?;
        openssl(dir, &["pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub"])?;
        Ok(Pki {
            ca_cert: path("ca.crt"),
            server_cert: path("apiserver.crt"),
            server_key: path("apiserver.key"),
            sa_private: path("sa.key"),
            sa_public: path("sa.pub"),
        })
    }
}

fn openssl(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .context("running openssl (the tier makes its certificates with it)")?;
    if !output.status.success() {
        bail!(
            "openssl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (etcd's JSON gateway carries bytes so).
fn base64(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(BASE64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn unbase64(text: &str) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    let (mut bits, mut count) = (0u32, 0);
    for c in text.bytes().filter(|c| *c != b'=') {
        let value = BASE64
            .iter()
            .position(|b| *b == c)
            .with_context(|| format!("not base64: {text:?}"))?;
        bits = bits << 6 | value as u32;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count & 0xff) as u8);
        }
    }
    Ok(out)
}

fn random_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 16];
    std::io::Read::read_exact(&mut File::open("/dev/urandom")?, &mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// A kubeconfig with one bearer-token user.
pub fn write_kubeconfig(
    path: &Path,
    server: &str,
    ca: &Path,
    user: &str,
    token: &str,
) -> anyhow::Result<()> {
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n  - name: e2e\n    cluster:\n      server: {server}\n      certificate-authority: {ca}\ncontexts:\n  - name: e2e\n    context: {{cluster: e2e, user: {user}}}\ncurrent-context: e2e\nusers:\n  - name: {user}\n    user:\n      token: {token}\n",
        ca = ca.display()
    );
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

pub async fn client_from(kubeconfig: &Path) -> anyhow::Result<Client> {
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(kubeconfig)?,
        &KubeConfigOptions::default(),
    )
    .await?;
    Ok(Client::try_from(config)?)
}

/// Until `/readyz` answers ok; `alive` fails when a process of the
/// cluster has exited meanwhile.
async fn wait_for_apiserver(
    client: &Client,
    mut alive: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let ready = client
            .request_text(
                http::Request::get("/readyz")
                    .body(Vec::new())
                    .expect("static request"),
            )
            .await;
        match ready {
            Ok(text) if text.trim() == "ok" => return Ok(()),
            _ if Instant::now() > deadline => {
                bail!("kube-apiserver not ready after 120 s: {ready:?}")
            }
            _ => {
                alive()?;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

fn wait_for_port(
    port: u16,
    limit: Duration,
    what: &str,
    processes: &mut [Process],
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        check_alive(processes)?;
        if Instant::now() > deadline {
            bail!("{what} did not listen on 127.0.0.1:{port} within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

fn check_alive(processes: &mut [Process]) -> anyhow::Result<()> {
    for process in processes {
        if let Some(status) = process.child.try_wait()? {
            bail!(
                "{} exited ({status}); last log lines:\n{}",
                process.name,
                process.log_tail(20)
            );
        }
    }
    Ok(())
}

/// A child process whose output goes to `<work>/<name>.log`; stopped
/// (SIGTERM, then SIGKILL) when dropped.
pub struct Process {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

impl Process {
    pub fn spawn(name: &str, dir: &Path, command: &mut Command) -> anyhow::Result<Process> {
        let log = dir.join(format!("{name}.log"));
        let file = File::create(&log)?;
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Process {
            name: name.to_string(),
            child,
            log,
        })
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    pub fn stop(&mut self) {
        self.stop_within(Duration::from_secs(10));
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub fn stop_within(&mut self, grace: Duration) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}
