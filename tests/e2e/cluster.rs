//! A real control plane on loopback: etcd, kube-apiserver (RBAC, service
//! account tokens, audit log) and kube-controller-manager (the ReplicaSet,
//! garbage-collector and service-account controllers), with Istio's CRDs as
//! `istio.io/api` ships them.

use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::kube_objects::Objects;
use crate::tools::Built;

/// The identity the controller (and so the plugin) runs as.
pub const CONTROLLER_NAMESPACE: &str = "argo-rollouts";
pub const CONTROLLER_SERVICE_ACCOUNT: &str = "argo-rollouts";

pub struct Cluster {
    work: Option<tempfile::TempDir>,
    work_path: PathBuf,
    processes: Vec<Process>,
    admin: Client,
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
        processes.push(Process::spawn(
            "kube-apiserver",
            &dir,
            Command::new(&built.kube_apiserver).args([
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
            ]),
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
        wait_for_apiserver(&admin, &mut processes).await?;

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
            processes,
            admin,
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

    /// Stops every process; keeps the work directory (logs, audit log)
    /// when something failed or `E2E_KEEP` is set.
    pub fn finish(mut self, success: bool) {
        for process in self.processes.iter_mut().rev() {
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

async fn wait_for_apiserver(client: &Client, processes: &mut [Process]) -> anyhow::Result<()> {
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
                check_alive(processes)?;
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
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
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
