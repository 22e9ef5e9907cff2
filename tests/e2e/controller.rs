//! The genuine Argo Rollouts controller, installed as users install it: its
//! CRDs and stock ClusterRole from the same module, its ServiceAccount, the
//! extra RBAC of `plugin-manifest.yaml`, and the `argo-rollouts-config`
//! ConfigMap built from that manifest's plugin entry. It runs under its
//! ServiceAccount's token; the plugin it starts inherits that identity.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use serde_json::{Value, json};

use crate::cluster::{
    CONTROLLER_NAMESPACE, CONTROLLER_SERVICE_ACCOUNT, Cluster, Process, free_port, write_kubeconfig,
};
use crate::kube_objects::{Objects, kind_and_name, yaml_documents};
use crate::release_server::ReleaseServer;
use crate::tools::Built;

/// The plugin under test and the manifest that installs it.
pub struct PluginArtifact {
    /// The binary the controller will run (reported, and for `file://`).
    pub binary: PathBuf,
    pub sha256: String,
    pub manifest: PathBuf,
    /// Release mode: the directory the manifest's `https://` location is
    /// served from (the release build's output); `None`: this build's
    /// binary, installed by `file://`.
    pub release_dir: Option<PathBuf>,
}

impl PluginArtifact {
    /// `E2E_PLUGIN_MANIFEST` set (CI passes `target/dist/plugin-manifest.yaml`):
    /// the release artifact, downloaded by the controller over HTTPS from the
    /// manifest's location with the manifest's sha256. Otherwise this
    /// build's binary through the committed `plugin-manifest.yaml`'s entry,
    /// as `file://`.
    pub fn locate(root: &Path) -> anyhow::Result<PluginArtifact> {
        match std::env::var_os("E2E_PLUGIN_MANIFEST") {
            Some(manifest) => Self::release(PathBuf::from(manifest)),
            None => {
                let binary =
                    PathBuf::from(env!("CARGO_BIN_EXE_rollouts-plugin-trafficrouter-istio"));
                Ok(PluginArtifact {
                    sha256: sha256_of(&binary)?,
                    binary,
                    manifest: root.join("plugin-manifest.yaml"),
                    release_dir: None,
                })
            }
        }
    }

    fn release(manifest: PathBuf) -> anyhow::Result<PluginArtifact> {
        let manifest = manifest
            .canonicalize()
            .with_context(|| format!("E2E_PLUGIN_MANIFEST {}", manifest.display()))?;
        let dir = manifest.parent().map(Path::to_path_buf).unwrap_or_default();
        let entry = plugin_entry(&manifest)?;
        let location = entry["location"].as_str().unwrap_or_default();
        let file = location.rsplit('/').next().unwrap_or_default();
        let binary = dir.join(file);
        let sha256 = entry["sha256"].as_str().unwrap_or_default().to_string();
        let actual = sha256_of(&binary)?;
        if actual != sha256 {
            bail!(
                "{}: the entry's sha256 {sha256} is not that of {} ({actual})",
                manifest.display(),
                binary.display()
            );
        }
        Ok(PluginArtifact {
            binary,
            sha256,
            manifest,
            release_dir: Some(dir),
        })
    }
}

fn sha256_of(file: &Path) -> anyhow::Result<String> {
    let output = Command::new("sha256sum")
        .arg(file)
        .output()
        .context("running sha256sum")?;
    let sha256 = String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    if !output.status.success() || sha256.len() != 64 {
        bail!("cannot compute the sha256 of {}", file.display());
    }
    Ok(sha256)
}

/// The first `trafficRouterPlugins` entry of a manifest's
/// `argo-rollouts-config` ConfigMap.
fn plugin_entry(manifest: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(manifest)
        .with_context(|| format!("reading {}", manifest.display()))?;
    for document in yaml_documents(&text)? {
        let (kind, name) = kind_and_name(&document)?;
        if kind == "ConfigMap" && name == "argo-rollouts-config" {
            let entries = document["data"]["trafficRouterPlugins"]
                .as_str()
                .ok_or_else(|| {
                    anyhow!(
                        "{}: the ConfigMap has no data.trafficRouterPlugins",
                        manifest.display()
                    )
                })?;
            let entries: Vec<Value> = serde_yaml::from_str(entries)?;
            return entries
                .into_iter()
                .next()
                .ok_or_else(|| anyhow!("{}: trafficRouterPlugins is empty", manifest.display()));
        }
    }
    bail!(
        "{} has no argo-rollouts-config ConfigMap",
        manifest.display()
    )
}

pub struct Controller {
    pub version: String,
    process: Process,
    pub kubectl_plugin: PathBuf,
    pub admin_kubeconfig: PathBuf,
    pub plugin_name: String,
    pub audit_log: PathBuf,
}

impl Controller {
    pub async fn start(
        cluster: &Cluster,
        built: &Built,
        version: &str,
        plugin: &PluginArtifact,
        release: Option<&ReleaseServer>,
    ) -> anyhow::Result<Controller> {
        let tools = built
            .controllers
            .get(version)
            .ok_or_else(|| anyhow!("argo-rollouts {version} was not built"))?;
        let objects = Objects::new(cluster.admin_client());
        let manifests = tools.module_dir.join("manifests");

        // CRDs, as `kubectl apply -k manifests/crds` installs them.
        for entry in std::fs::read_dir(manifests.join("crds"))? {
            let path = entry?.path();
            if path.file_name().is_some_and(|n| n != "kustomization.yaml") {
                objects.apply_file(&path, None, "e2e-installer").await?;
                objects.wait_crds_established(&path).await?;
            }
        }
        // The stock identity and role (manifests/cluster-install).
        for file in [
            "base/argo-rollouts-sa.yaml",
            "base/argo-rollouts-notification-secret.yaml",
            "role/argo-rollouts-clusterrole.yaml",
            "cluster-install/argo-rollouts-clusterrolebinding.yaml",
        ] {
            objects
                .apply_file(
                    &manifests.join(file),
                    Some(CONTROLLER_NAMESPACE),
                    "e2e-installer",
                )
                .await?;
        }
        let plugin_name = install_plugin_manifest(&objects, plugin, release, version).await?;

        let token = objects
            .service_account_token(CONTROLLER_NAMESPACE, CONTROLLER_SERVICE_ACCOUNT)
            .await?;
        let dir = cluster.work_dir().join(format!("controller-{version}"));
        std::fs::create_dir_all(&dir)?;
        let kubeconfig = dir.join("controller.kubeconfig");
        write_kubeconfig(
            &kubeconfig,
            &cluster.server,
            &cluster.ca_file,
            "argo-rollouts",
            &token,
        )?;

        let healthz = free_port()?;
        let metrics = free_port()?;
        // v1.7 spells the metrics port flag `--metricsport`; later releases
        // `--metricsPort`. Asked of the binary itself.
        let help = Command::new(&tools.controller)
            .arg("--help")
            .output()
            .with_context(|| format!("running {} --help", tools.controller.display()))?;
        let metrics_flag = if String::from_utf8_lossy(&help.stdout).contains("--metricsPort")
            || String::from_utf8_lossy(&help.stderr).contains("--metricsPort")
        {
            "--metricsPort"
        } else {
            "--metricsport"
        };
        let process = Process::spawn(
            &format!("rollouts-controller-{version}"),
            cluster.work_dir(),
            Command::new(&tools.controller)
                .current_dir(&dir)
                // The plugin inherits this environment: its kube client
                // finds the controller's identity through KUBECONFIG, as it
                // finds the in-cluster one in a pod.
                .env("KUBECONFIG", &kubeconfig)
                .env("POD_NAMESPACE", CONTROLLER_NAMESPACE)
                // Trusts the loopback release server's certificate (the
                // tier's CA) for the plugin download.
                .env("SSL_CERT_FILE", &cluster.ca_file)
                .args([
                    format!("--kubeconfig={}", kubeconfig.display()),
                    "--leader-elect=false".to_string(),
                    "--loglevel=info".to_string(),
                    "--logformat=json".to_string(),
                    format!("--healthzPort={healthz}"),
                    format!("{metrics_flag}={metrics}"),
                ]),
        )?;
        let mut controller = Controller {
            version: version.to_string(),
            process,
            kubectl_plugin: built.kubectl_plugin.clone(),
            admin_kubeconfig: cluster.admin_kubeconfig.clone(),
            plugin_name,
            audit_log: cluster.audit_log.clone(),
        };
        controller.wait_started(healthz).await?;
        Ok(controller)
    }

    async fn wait_started(&mut self, healthz: u16) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            self.check_alive()?;
            if std::net::TcpStream::connect(("127.0.0.1", healthz)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "argo-rollouts {} did not start within 60 s:\n{}",
                    self.version,
                    self.process.log_tail(20)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.process.child.try_wait()? {
            bail!(
                "argo-rollouts {} exited ({status}):\n{}",
                self.version,
                self.process.log_tail(20)
            );
        }
        Ok(())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.process.log).unwrap_or_default()
    }

    /// The plugin processes the controller has started and that still run.
    pub fn plugin_pids(&self) -> Vec<i32> {
        children_of(self.process.child.id() as i32)
    }

    /// SIGKILLs the running plugin process(es); returns how many.
    pub fn kill_plugin(&self) -> usize {
        let pids = self.plugin_pids();
        for pid in &pids {
            // SAFETY: kill(2) on a process of ours.
            unsafe {
                libc::kill(*pid, libc::SIGKILL);
            }
        }
        pids.len()
    }

    /// The plugin's own log lines, re-logged by the controller's go-plugin
    /// client with their level (`[INFO]  plugin.…: message`).
    /// `expect_failure`: a scenario that makes a call fail has run, so the
    /// plugin's `[WARN]` line for it must be there too.
    pub fn check_plugin_logs(&self, expect_failure: bool) -> Result<String, String> {
        let log = self.log_text();
        let plugin_lines: Vec<&str> = log
            .lines()
            .filter(|line| line.contains(" plugin.") && line.contains('['))
            .collect();
        let count = |level: &str| {
            plugin_lines
                .iter()
                .filter(|line| line.contains(&format!("[{level}]")))
                .count()
        };
        let (info, warn, error) = (count("INFO"), count("WARN"), count("ERROR"));
        if info == 0 {
            return Err(format!(
                "no plugin line at [INFO] in the controller's log ({} plugin lines)",
                plugin_lines.len()
            ));
        }
        let failed_call = plugin_lines
            .iter()
            .any(|line| line.contains("[WARN]") && line.contains("call failed"));
        if expect_failure && !failed_call {
            return Err(
                "the broken-configuration scenario's failed call did not reach the controller's log at [WARN]"
                    .to_string(),
            );
        }
        let stray_stdout = log.lines().filter(|l| l.contains("plugin.stdio")).count();
        Ok(format!(
            "plugin lines in the controller's log: {info} INFO, {warn} WARN, {error} ERROR; {stray_stdout} stdout lines"
        ))
    }

    /// Stops the controller and checks that the plugin it started exits too.
    pub fn stop(mut self) {
        let plugins = self.plugin_pids();
        self.process.stop();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && plugins.iter().any(|pid| alive(*pid)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        for pid in plugins.iter().filter(|pid| alive(**pid)) {
            eprintln!("e2e: plugin {pid} outlived the controller by 5 s");
        }
    }
}

/// Applies the manifest as an operator would: its RBAC as it is, its
/// ConfigMap with the plugin entry pointing at the artifact under test — in
/// release mode the entry's own `https://` location with its host replaced
/// by the loopback release server and its own sha256, downloaded as from a
/// private server (`headersFrom` a Secret with an `Authorization` header)
/// by the controllers that have `headersFrom` (v1.8 and later); otherwise
/// `file://` this build's binary. Returns the plugin's name.
/// The Secret whose keys the controller sends as headers of the download.
const RELEASE_SECRET: &str = "e2e-release-download";

async fn install_plugin_manifest(
    objects: &Objects,
    plugin: &PluginArtifact,
    release: Option<&ReleaseServer>,
    version: &str,
) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(&plugin.manifest)
        .with_context(|| format!("reading {}", plugin.manifest.display()))?;
    let mut entry = plugin_entry(&plugin.manifest)?;
    match release {
        Some(server) => {
            let location = entry["location"].as_str().unwrap_or_default();
            let path = location
                .strip_prefix("https://")
                .and_then(|rest| rest.split_once('/'))
                .map(|(_, path)| path)
                .ok_or_else(|| {
                    anyhow!(
                        "{}: the plugin location {location:?} is not https://",
                        plugin.manifest.display()
                    )
                })?;
            entry["location"] = json!(format!("https://127.0.0.1:{}/{path}", server.port));
            let has_headers_from = version.parse::<istio_router::controller::Version>()?
                >= istio_router::controller::Version(1, 8, 0);
            if has_headers_from {
                let token = format!(
                    "Bearer e2e-{}-{}",
                    std::process::id(),
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_nanos()
                );
                objects
                    .apply(
                        json!({
                            "apiVersion": "v1",
                            "kind": "Secret",
                            "metadata": {"name": RELEASE_SECRET},
                            "stringData": {"Authorization": token},
                        }),
                        Some(CONTROLLER_NAMESPACE),
                        "e2e-installer",
                    )
                    .await?;
                entry["headersFrom"] = json!([{"secretRef": {"name": RELEASE_SECRET}}]);
                server.require_authorization(Some(token));
            } else {
                eprintln!(
                    "e2e: argo-rollouts {version} has no headersFrom (v1.8 and later): a public download"
                );
                server.require_authorization(None);
            }
        }
        None => {
            entry["location"] = json!(format!("file://{}", plugin.binary.display()));
            entry["sha256"] = json!(plugin.sha256);
        }
    }
    let plugin_name = entry["name"].as_str().map(str::to_string).ok_or_else(|| {
        anyhow!(
            "{}: the plugin entry has no name",
            plugin.manifest.display()
        )
    })?;
    for mut document in yaml_documents(&text)? {
        let (kind, name) = kind_and_name(&document)?;
        if kind == "ConfigMap" && name == "argo-rollouts-config" {
            document["data"]["trafficRouterPlugins"] =
                json!(serde_yaml::to_string(&vec![entry.clone()])?);
        }
        objects
            .apply(document, Some(CONTROLLER_NAMESPACE), "e2e-installer")
            .await?;
    }
    Ok(plugin_name)
}

fn children_of(parent: i32) -> Vec<i32> {
    let mut children = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return children;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid ..."; comm may hold spaces and parentheses.
        let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
        let mut fields = after.split_whitespace();
        let state = fields.next();
        let ppid = fields.next().and_then(|p| p.parse::<i32>().ok());
        if ppid == Some(parent) && state != Some("Z") {
            children.push(pid);
        }
    }
    children
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
            after.split_whitespace().next() != Some("Z")
        })
        .unwrap_or(false)
}
