//! The release build (`cargo xtask dist`, in target/dist or $DIST_DIR) where
//! the controller runs it: each binary is taken out of the OCI image the
//! build wrote (index -> manifest -> layer, every digest checked) and run in
//! an otherwise empty root like distroless/static, as uid 999, with a
//! read-only root and only /tmp writable.
//!
//! The root, built by bubblewrap on an empty tmpfs remounted read-only, holds
//! exactly: /bin from the image (the binary), /tmp (a host directory, the
//! only writable path), /proc and /dev (as any container runtime mounts
//! them), /kubeconfig (read-only, pointing at the API stand-in on
//! 127.0.0.1, so the network namespace is the host's) and, for arm64 only,
//! /qemu-aarch64-static, which runs the binary. No libc, no shell, no /etc.
//! bwrap itself runs as uid 999 (setpriv), so the plugin is uid 999 on the
//! host too.
//!
//! Needs: target/dist from `cargo xtask dist`, bwrap (bubblewrap), setpriv
//! (util-linux), qemu-aarch64-static (qemu-user-static), and root to switch
//! to uid 999. `.ci/dist-check` runs it; with CI=true anything missing is a
//! failure.

use std::io::{BufRead as _, BufReader, Read as _};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use istio_router::transport::netrpc::plugin::RpcError;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use test_support::apiserver::ApiServer;
use test_support::fixtures::{remove_managed_routes_args, set_weight_args, virtual_service};
use test_support::host::{Host, PluginConn, ReplyBody};

const UID: u32 = 999;
const IMAGE_BIN: &str = "/bin/rollouts-plugin-trafficrouter-istio";
const ARCHES: &[&str] = &["amd64", "arm64"];

/// base64 of a self-signed CA certificate (PEM) the kubeconfig names, as
/// in-cluster configuration names the service account's ca.crt: with a CA
/// in its configuration the Kubernetes client needs no system roots, which
/// the root does not have (no /etc). The stand-in speaks plain HTTP, so the
/// certificate is never used to verify anything.
const CA_DATA: &str = concat!(
    "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUJrVENDQVRlZ0F3SUJBZ0lVUWVmMFlRL24rQ2RqaWU1eS93T2",
    "J5a0NwcTNFd0NnWUlLb1pJemowRUF3SXcKSFRFYk1Ca0dBMVVFQXd3U1pXMXdkSGt0Y205dmRDMTBaWE4wTFdOaE1D",
    "QVhEVEkyTVRFeU9USXhNVGt6TTFvWQpEekl4TWpZeE1UQTFNakV4T1RNeldqQWRNUnN3R1FZRFZRUUREQkpsYlhCMG",
    "VTMXliMjkwTFhSbGMzUXRZMkV3CldUQVRCZ2NxaGtqT1BRSUJCZ2dxaGtqT1BRTUJCd05DQUFTNU9kOEdVamJjSXB3",
    "V1NHOWVpOU5xVjlsanorSGQKNy9EZlE1NEtUcXlXS2ttd05tZTA3SytNbmgrNnFwYVVxOFNoOUkwakxIWVlENnFuWU",
    "Z2akY4RUpvMU13VVRBZApCZ05WSFE0RUZnUVVIdnNoOVlJa2d5WVlKeWozNXhIeGorb1dQdGN3SHdZRFZSMGpCQmd3",
    "Rm9BVUh2c2g5WUlrCmd5WVlKeWozNXhIeGorb1dQdGN3RHdZRFZSMFRBUUgvQkFVd0F3RUIvekFLQmdncWhrak9QUV",
    "FEQWdOSUFEQkYKQWlBTGdRS0N4Y2sxY1pFSFlHdTVhZ1RjTjBHSTJCdnZXREYyQzE1YjlSYnZoQUloQUljVGgxT3Jy",
    "d1o3ZHBxcAo1eDFHSGJVOGYrSTFrdDZvR0JqOE43L1hFVXMxCi0tLS0tRU5EIENFUlRJRklDQVRFLS0tLS0K",
);

/// A kubeconfig for the API stand-in at `server`, with [`CA_DATA`].
fn kubeconfig(server: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: standin\n  cluster:\n    server: {server}\n    \
         certificate-authority-data: {CA_DATA}\nusers:\n- name: standin\n  user:\n    token: standin-token\n\
         contexts:\n- name: standin\n  context:\n    cluster: standin\n    user: standin\n    \
         namespace: default\ncurrent-context: standin\n"
    )
}

fn dist_dir() -> PathBuf {
    std::env::var_os("DIST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/dist"))
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
    })
}

/// The tools and files every test here needs, or why they are missing.
struct Setup {
    dist: PathBuf,
    bwrap: PathBuf,
    setpriv: PathBuf,
    qemu: PathBuf,
}

fn setup() -> Option<Setup> {
    let dist = dist_dir();
    let mut missing = Vec::new();
    for arch in ARCHES {
        let file = dist.join(format!("rollouts-plugin-trafficrouter-istio-linux-{arch}"));
        if !file.is_file() {
            missing.push(format!("{} (run `cargo xtask dist`)", file.display()));
        }
    }
    if !dist.join("oci/index.json").is_file() {
        missing.push(format!(
            "{} (run `cargo xtask dist`)",
            dist.join("oci/index.json").display()
        ));
    }
    let tool = |name: &str, package: &str, missing: &mut Vec<String>| {
        which(name).or_else(|| {
            missing.push(format!("{name} (apt-get install {package})"));
            None
        })
    };
    let bwrap = tool("bwrap", "bubblewrap", &mut missing);
    let setpriv = tool("setpriv", "util-linux", &mut missing);
    let qemu = which("qemu-aarch64")
        .or_else(|| tool("qemu-aarch64-static", "qemu-user-static", &mut missing));
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        missing.push("root, to run the plugin as uid 999".into());
    }
    if missing.is_empty() {
        return Some(Setup {
            dist,
            bwrap: bwrap?,
            setpriv: setpriv?,
            qemu: qemu?,
        });
    }
    let message = format!("the empty-root tests need: {}", missing.join(", "));
    if in_ci() {
        panic!("{message}");
    }
    eprintln!("SKIPPED: {message}; .ci/dist-check installs and runs everything");
    None
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A temp directory uid 999 can use (tempfile makes them 0700 root).
fn shared_tempdir(owner: Option<u32>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    if let Some(uid) = owner {
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(uid)).unwrap();
    }
    dir
}

// ---------------------------------------------------------------------------
// The OCI image layout.

/// Reads a blob by descriptor, checking its digest and size.
fn blob(layout: &Path, descriptor: &Value) -> Vec<u8> {
    let digest = descriptor["digest"].as_str().expect("descriptor digest");
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    let bytes = std::fs::read(layout.join("blobs/sha256").join(hex))
        .unwrap_or_else(|e| panic!("blob {digest}: {e}"));
    assert_eq!(sha256_hex(&bytes), hex, "blob {digest} content");
    assert_eq!(
        Some(bytes.len() as u64),
        descriptor["size"].as_u64(),
        "blob {digest} size"
    );
    bytes
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("JSON blob")
}

/// One platform's image: its config and its unpacked root file system.
struct Image {
    config: Value,
    rootfs: tempfile::TempDir,
}

/// index.json -> image index -> the manifest for `arch` -> config and
/// layer; the layer unpacked into a fresh directory.
fn unpack_image(layout: &Path, arch: &str) -> Image {
    let layout_version = json(&std::fs::read(layout.join("oci-layout")).unwrap());
    assert_eq!(layout_version["imageLayoutVersion"], "1.0.0");
    let top = json(&std::fs::read(layout.join("index.json")).unwrap());
    let entries = top["manifests"].as_array().expect("index.json manifests");
    assert_eq!(entries.len(), 1, "one tagged image index");
    assert_eq!(
        entries[0]["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert!(
        entries[0]["annotations"]["org.opencontainers.image.ref.name"].is_string(),
        "the image index is tagged"
    );
    let index = json(&blob(layout, &entries[0]));
    let platforms: Vec<String> = index["manifests"]
        .as_array()
        .expect("image index manifests")
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(platforms, ["amd64", "arm64"], "a multi-arch index");
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["platform"]["architecture"] == arch)
        .unwrap();
    assert_eq!(entry["platform"]["os"], "linux");
    let manifest = json(&blob(layout, entry));
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    let config = json(&blob(layout, &manifest["config"]));
    assert_eq!(config["architecture"], arch);
    assert_eq!(config["os"], "linux");
    assert_eq!(config["config"]["User"], "999:999");
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!([IMAGE_BIN])
    );
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 1);
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let gz = blob(layout, &layers[0]);
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut tar)
        .expect("gzip layer");
    assert_eq!(
        config["rootfs"]["diff_ids"][0],
        format!("sha256:{}", sha256_hex(&tar)),
        "diff_id is the uncompressed layer's digest"
    );
    let rootfs = shared_tempdir(None);
    let mut archive = tar::Archive::new(&tar[..]);
    archive.set_preserve_permissions(true);
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let header = entry.header();
        assert_eq!(
            (header.uid().unwrap(), header.gid().unwrap()),
            (0, 0),
            "owned by root"
        );
        entry.unpack_in(rootfs.path()).unwrap();
    }
    Image { config, rootfs }
}

// ---------------------------------------------------------------------------
// The empty root.

struct Root<'a> {
    setup: &'a Setup,
    arch: &'a str,
    image: &'a Image,
    /// Bound at /tmp: the only writable path.
    tmp: tempfile::TempDir,
    kubeconfig: Option<PathBuf>,
}

impl<'a> Root<'a> {
    fn new(setup: &'a Setup, arch: &'a str, image: &'a Image) -> Root<'a> {
        Root {
            setup,
            arch,
            image,
            tmp: shared_tempdir(Some(UID)),
            kubeconfig: None,
        }
    }

    /// The plugin binary run with `args` in the root, with the environment
    /// the controller gives it.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.setup.setpriv);
        cmd.env_clear()
            .arg(format!("--reuid={UID}"))
            .arg(format!("--regid={UID}"))
            .arg("--clear-groups")
            .arg("--")
            .arg(&self.setup.bwrap)
            .args(["--unshare-user", "--unshare-ipc", "--unshare-pid"])
            .args(["--unshare-uts", "--unshare-cgroup-try", "--die-with-parent"])
            .args(["--uid", &UID.to_string(), "--gid", &UID.to_string()])
            .arg("--ro-bind")
            .arg(self.image.rootfs.path().join("bin"))
            .arg("/bin")
            .arg("--bind")
            .arg(self.tmp.path())
            .arg("/tmp")
            .args(["--proc", "/proc", "--dev", "/dev"]);
        if let Some(kubeconfig) = &self.kubeconfig {
            cmd.arg("--ro-bind").arg(kubeconfig).arg("/kubeconfig");
        }
        let mut argv = vec![IMAGE_BIN.to_string()];
        if self.arch == "arm64" {
            cmd.arg("--ro-bind")
                .arg(&self.setup.qemu)
                .arg("/qemu-aarch64-static");
            argv.insert(0, "/qemu-aarch64-static".into());
        }
        cmd.args(["--remount-ro", "/", "--chdir", "/", "--clearenv"])
            .args(["--setenv", "ARGO_ROLLOUTS_RPC_PLUGIN", "trafficrouter"])
            .args(["--setenv", "PLUGIN_PROTOCOL_VERSIONS", "1"])
            .args(["--setenv", "PLUGIN_MIN_PORT", "10000"])
            .args(["--setenv", "PLUGIN_MAX_PORT", "25000"]);
        if self.kubeconfig.is_some() {
            cmd.args(["--setenv", "KUBECONFIG", "/kubeconfig"]);
        }
        cmd.arg("--").args(argv).args(args);
        cmd
    }

    /// What is left in /tmp, as the host sees it.
    fn tmp_entries(&self) -> Vec<String> {
        std::fs::read_dir(self.tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }
}

/// A plugin started in the root, up to its handshake.
struct Started {
    child: Child,
    stdout: Option<BufReader<std::process::ChildStdout>>,
    /// The socket as the host reaches it.
    socket: PathBuf,
    socket_dir: PathBuf,
    stderr: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Started {
    fn launch(root: &Root<'_>) -> (Started, Duration) {
        let started = Instant::now();
        let mut child = root
            .command(&["--log-level", "debug"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start setpriv/bwrap");
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let lines = stderr.clone();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { return };
                lines.lock().unwrap().push(line);
            }
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(out);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = tx.send((line, reader));
        });
        let Ok((handshake, reader)) = rx.recv_timeout(Duration::from_secs(30)) else {
            let _ = child.kill();
            panic!(
                "no handshake within 30 s; stderr: {:?}",
                stderr.lock().unwrap()
            );
        };
        let elapsed = started.elapsed();
        let fields: Vec<&str> = handshake.trim_end().split('|').collect();
        assert_eq!(
            fields.len(),
            6,
            "handshake {handshake:?}; stderr: {:?}",
            stderr.lock().unwrap()
        );
        assert_eq!(
            (fields[0], fields[1], fields[2], fields[4]),
            ("1", "1", "unix", "netrpc")
        );
        let inside = Path::new(fields[3]);
        let rel = inside
            .strip_prefix("/tmp")
            .unwrap_or_else(|_| panic!("the socket {} is under /tmp", inside.display()));
        let socket = root.tmp.path().join(rel);
        let socket_dir = socket.parent().unwrap().to_path_buf();
        (
            Started {
                child,
                stdout: Some(reader),
                socket,
                socket_dir,
                stderr,
            },
            elapsed,
        )
    }

    fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "still running after {limit:?}; stderr: {:?}",
                self.stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The plugin's own pid on the host: the deepest process under
    /// setpriv/bwrap (bwrap forks a monitor and a pid-1 init).
    fn plugin_pid(&self) -> u32 {
        let mut pid = self.child.id();
        loop {
            let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .unwrap_or_default();
            match children.split_whitespace().next() {
                Some(child) => pid = child.parse().unwrap(),
                None => return pid,
            }
        }
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// ELF: static and stripped.

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], at: usize) -> usize {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap()) as usize
}

/// (machine, has a PT_INTERP program header, has a .symtab section) of a
/// little-endian ELF64 file.
fn elf_facts(b: &[u8]) -> (u16, bool, bool) {
    assert_eq!(&b[..4], b"\x7fELF", "an ELF file");
    assert_eq!((b[4], b[5]), (2, 1), "ELF64 little-endian");
    let machine = u16_at(b, 0x12);
    let (phoff, phentsize, phnum) = (u64_at(b, 0x20), u16_at(b, 0x36), u16_at(b, 0x38));
    let interp = (0..phnum as usize).any(|i| u32_at(b, phoff + i * phentsize as usize) == 3);
    let (shoff, shentsize, shnum) = (u64_at(b, 0x28), u16_at(b, 0x3a), u16_at(b, 0x3c));
    let symtab = (0..shnum as usize).any(|i| u32_at(b, shoff + i * shentsize as usize + 4) == 2);
    (machine, interp, symtab)
}

fn in_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

fn head_commit() -> Option<String> {
    let out = Command::new("git")
        .args(["-C", env!("CARGO_MANIFEST_DIR"), "rev-parse", "HEAD"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

// ---------------------------------------------------------------------------

#[test]
fn the_release_files_are_static_stripped_and_checksummed() {
    let Some(setup) = setup() else { return };
    for (arch, machine) in [("amd64", 62u16), ("arm64", 183)] {
        let file = format!("rollouts-plugin-trafficrouter-istio-linux-{arch}");
        let bytes = std::fs::read(setup.dist.join(&file)).unwrap();
        let (m, interp, symtab) = elf_facts(&bytes);
        assert_eq!(m, machine, "{file}: ELF machine");
        assert!(!interp, "{file} asks for a dynamic loader (PT_INTERP)");
        assert!(!symtab, "{file} is not stripped (.symtab)");
        let sums = std::fs::read_to_string(setup.dist.join(format!("{file}.sha256"))).unwrap();
        assert_eq!(
            sums,
            format!("{}  {file}\n", sha256_hex(&bytes)),
            "{file}.sha256"
        );
        eprintln!("{file}: {} bytes", bytes.len());
    }
}

#[test]
fn each_image_serves_from_an_empty_root_as_uid_999_and_leaves_nothing_behind() {
    let Some(setup) = setup() else { return };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // The version the release build recorded: X.Y.Z for `cargo xtask
    // release`, X.Y.Z-dev+<commit> for `cargo xtask dist`.
    let manifest_text = std::fs::read_to_string(setup.dist.join("plugin-manifest.yaml")).unwrap();
    let version = manifest_text
        .lines()
        .find_map(|l| l.strip_prefix("# version: v"))
        .expect("target/dist/plugin-manifest.yaml records the version");
    for arch in ARCHES {
        let image = unpack_image(&setup.dist.join("oci"), arch);
        let in_image = std::fs::read(
            image
                .rootfs
                .path()
                .join("bin/rollouts-plugin-trafficrouter-istio"),
        )
        .unwrap();
        let released = std::fs::read(
            setup
                .dist
                .join(format!("rollouts-plugin-trafficrouter-istio-linux-{arch}")),
        )
        .unwrap();
        assert!(
            in_image == released,
            "{arch}: the image carries the release binary"
        );
        assert_eq!(
            image.config["config"]["Labels"]["org.opencontainers.image.version"],
            version
        );

        // --version in the root: the version and the commit.
        let root = Root::new(&setup, arch, &image);
        let out = root.command(&["--version"]).output().unwrap();
        let printed = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{arch} --version: {out:?}");
        let expected = format!("rollouts-plugin-trafficrouter-istio {version} (commit ");
        assert!(printed.starts_with(&expected), "{arch}: {printed}");
        eprintln!("{arch}: {}", printed.trim());
        // The commit the release build recorded for these files.
        let recorded = std::fs::read_to_string(setup.dist.join("plugin-manifest.yaml"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("# commit: ").map(str::to_string))
            .expect("target/dist/plugin-manifest.yaml records the commit");
        assert_eq!(
            printed.trim_end(),
            format!("{expected}{recorded})"),
            "{arch}: --version names the commit"
        );
        match head_commit() {
            Some(head) if head == recorded => {}
            // .ci/dist-check builds target/dist from HEAD just before.
            Some(head) if in_ci() => panic!("target/dist is from {recorded}, HEAD is {head}"),
            head => eprintln!("note: target/dist is from {recorded}, HEAD is {head:?}"),
        }

        // The init-container install: copy itself into a writable directory.
        let out = root.command(&["install", "/tmp"]).output().unwrap();
        assert!(out.status.success(), "{arch} install: {out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "/tmp/rollouts-plugin-trafficrouter-istio\n"
        );
        let copied = root.tmp.path().join("rollouts-plugin-trafficrouter-istio");
        assert!(
            std::fs::read(&copied).unwrap() == released,
            "{arch}: install copies the binary"
        );
        assert_eq!(
            std::fs::metadata(&copied).unwrap().permissions().mode() & 0o777,
            0o755
        );
        assert_eq!(
            std::fs::metadata(&copied).unwrap().uid(),
            UID,
            "written as uid 999"
        );
        std::fs::remove_file(&copied).unwrap();

        // Serve: handshake, calls against the API stand-in, host goes away.
        let mut root = Root::new(&setup, arch, &image);
        let server = runtime.block_on(ApiServer::start());
        server.apply(vec![virtual_service("team", "app")], "team");
        let config_dir = shared_tempdir(None);
        let kubeconfig = config_dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, self::kubeconfig(&server.base_url())).unwrap();
        std::fs::set_permissions(&kubeconfig, std::fs::Permissions::from_mode(0o644)).unwrap();
        root.kubeconfig = Some(kubeconfig);
        let (mut plugin, to_handshake) = Started::launch(&root);
        eprintln!("{arch}: handshake after {to_handshake:?} in the empty root");
        let dir = std::fs::metadata(&plugin.socket_dir).unwrap();
        assert_eq!(
            dir.uid(),
            UID,
            "{arch}: the socket directory belongs to uid 999"
        );
        assert_eq!(dir.permissions().mode() & 0o777, 0o700);
        runtime.block_on(async {
            let host = Host::connect(&plugin.socket).await;
            host.ping().await.unwrap();
            let mut conn = PluginConn::new(host.plugin_stream().await);
            conn.call("Plugin.InitPlugin", 0, None).await;
            assert_eq!(
                conn.reply().await.body,
                ReplyBody::Error(RpcError::default())
            );
            conn.call("Plugin.Type", 1, None).await;
            assert_eq!(conn.reply().await.body, ReplyBody::Str("Istio".into()));
            conn.call("Plugin.SetWeight", 2, set_weight_args("team", "app", 30))
                .await;
            let reply = conn.reply().await;
            assert_eq!(
                reply.body,
                ReplyBody::Error(RpcError::default()),
                "{arch}: SetWeight; stderr {:?}",
                plugin.stderr.lock().unwrap()
            );
            let vs = server.get("VirtualService", "team", "app-vsvc").unwrap();
            let weights: Vec<i64> = vs["spec"]["http"][0]["route"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["weight"].as_i64().unwrap())
                .collect();
            assert_eq!(weights, [70, 30], "{arch}: the call landed");
            conn.call(
                "Plugin.RemoveManagedRoutes",
                3,
                remove_managed_routes_args("team", "app"),
            )
            .await;
            assert_eq!(
                conn.reply().await.body,
                ReplyBody::Error(RpcError::default())
            );
            // The host goes away: its connection and its end of our stdout.
            drop(conn);
            host.session.close();
            drop(host);
        });
        plugin.stdout = None;
        let status = plugin.wait_exit(Duration::from_secs(10));
        assert!(status.success(), "{arch}: exit status {status}");
        assert!(!plugin.socket.exists(), "{arch}: socket left behind");
        assert!(
            !plugin.socket_dir.exists(),
            "{arch}: socket directory left behind"
        );
        assert_eq!(
            root.tmp_entries(),
            Vec::<String>::new(),
            "{arch}: /tmp is empty again"
        );
        let stderr = plugin.stderr.lock().unwrap().clone();
        for line in &stderr {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{arch}: stderr line is not hclog JSON ({e}): {line}"));
            assert!(v["@message"].is_string(), "{line}");
        }
    }
}

#[test]
fn sigterm_in_the_empty_root_removes_the_socket_and_its_directory() {
    let Some(setup) = setup() else { return };
    for arch in ARCHES {
        let image = unpack_image(&setup.dist.join("oci"), arch);
        let root = Root::new(&setup, arch, &image);
        let (mut plugin, _) = Started::launch(&root);
        assert!(plugin.socket.exists());
        let pid = plugin.plugin_pid();
        assert_ne!(pid, plugin.child.id(), "found the plugin under bwrap");
        // SAFETY: signalling a process this test started.
        assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) }, 0);
        let status = plugin.wait_exit(Duration::from_secs(10));
        assert!(
            status.success(),
            "{arch}: exit status {status} after SIGTERM"
        );
        assert_eq!(
            root.tmp_entries(),
            Vec::<String>::new(),
            "{arch}: /tmp is empty again"
        );
        let stderr = plugin.stderr.lock().unwrap().join("\n");
        assert!(stderr.contains("SIGTERM"), "{arch}: {stderr}");
    }
}
