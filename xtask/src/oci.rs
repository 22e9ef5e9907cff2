//! An OCI image layout (image-layout spec v1.0): `oci-layout`, `index.json`
//! and `blobs/sha256/<digest>`, holding a multi-arch image whose one layer
//! carries the binary at `/bin/rollouts-plugin-trafficrouter-istio`, run as
//! user 999. Every timestamp is `SOURCE_DATE_EPOCH`, every owner root, so
//! the same binaries give the same blobs.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

pub const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// Where the binary sits in the image.
pub const IMAGE_BIN: &str = "/bin/rollouts-plugin-trafficrouter-istio";

pub struct ImageInput<'a> {
    pub arch: &'a str,
    pub binary: &'a Path,
}

pub struct Labels<'a> {
    pub version: &'a str,
    pub commit: &'a str,
    pub source: &'a str,
    pub epoch: u64,
}

/// A blob written to the layout: its descriptor fields.
struct Blob {
    digest: String,
    size: usize,
}

fn sha256_hex(bytes: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(bytes);
    h.finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
}

fn put_blob(dir: &Path, bytes: &[u8]) -> Result<Blob> {
    let hex = sha256_hex(bytes);
    let path = dir.join("blobs/sha256").join(&hex);
    std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    Ok(Blob {
        digest: format!("sha256:{hex}"),
        size: bytes.len(),
    })
}

fn json_bytes(v: &Value) -> Vec<u8> {
    // Compact, keys in a fixed order (serde_json's map is sorted or insertion
    // ordered; both are the same run to run).
    serde_json::to_vec(v).expect("JSON values serialize")
}

/// RFC 3339 UTC for a Unix time (civil-from-days, no leap seconds).
pub fn rfc3339(epoch: u64) -> String {
    let days = (epoch / 86_400) as i64;
    let secs = epoch % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// The layer: `bin/` and `tmp/` (mode 1777, as distroless has it) and the
/// binary, owned by root, mtime `epoch`.
fn layer_tar(binary: &[u8], epoch: u64) -> Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    let dir = |path: &str, mode: u32, tar: &mut tar::Builder<Vec<u8>>| -> Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_path(path)?;
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(epoch);
        h.set_size(0);
        h.set_cksum();
        tar.append(&h, std::io::empty())?;
        Ok(())
    };
    dir("bin/", 0o755, &mut tar)?;
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_path(IMAGE_BIN.trim_start_matches('/'))?;
    h.set_mode(0o755);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(epoch);
    h.set_size(binary.len() as u64);
    h.set_cksum();
    tar.append(&h, binary)?;
    dir("tmp/", 0o1777, &mut tar)?;
    Ok(tar.into_inner()?)
}

fn gzip(bytes: &[u8]) -> Result<Vec<u8>> {
    use std::io::Write as _;
    // No file name, mtime 0: the header carries nothing run-specific.
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    gz.write_all(bytes)?;
    Ok(gz.finish()?)
}

/// Writes the layout into `dir` (replacing it) and returns the digest of
/// the image index, which `index.json` points at.
pub fn write_layout(dir: &Path, images: &[ImageInput<'_>], labels: &Labels<'_>) -> Result<String> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    let blobs: PathBuf = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).with_context(|| format!("creating {}", blobs.display()))?;
    let created = rfc3339(labels.epoch);
    let annotations = json!({
        "org.opencontainers.image.created": created,
        "org.opencontainers.image.revision": labels.commit,
        "org.opencontainers.image.source": labels.source,
        "org.opencontainers.image.title": "rollouts-plugin-trafficrouter-istio",
        "org.opencontainers.image.version": labels.version,
    });
    let mut manifests = Vec::new();
    for image in images {
        let binary = std::fs::read(image.binary)
            .with_context(|| format!("reading {}", image.binary.display()))?;
        let tar = layer_tar(&binary, labels.epoch)?;
        let diff_id = format!("sha256:{}", sha256_hex(&tar));
        let layer = put_blob(dir, &gzip(&tar)?)?;
        let mut platform = json!({"architecture": image.arch, "os": "linux"});
        let mut config = json!({
            "created": created,
            "architecture": image.arch,
            "os": "linux",
            "config": {
                "User": "999:999",
                "Entrypoint": [IMAGE_BIN],
                "WorkingDir": "/",
                "Labels": annotations,
            },
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created": created, "created_by": "cargo xtask dist"}],
        });
        if image.arch == "arm64" {
            platform["variant"] = json!("v8");
            config["variant"] = json!("v8");
        }
        let config = put_blob(dir, &json_bytes(&config))?;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": {"mediaType": MEDIA_CONFIG, "digest": config.digest, "size": config.size},
            "layers": [{"mediaType": MEDIA_LAYER, "digest": layer.digest, "size": layer.size}],
            "annotations": annotations,
        });
        let manifest = put_blob(dir, &json_bytes(&manifest))?;
        manifests.push(json!({
            "mediaType": MEDIA_MANIFEST,
            "digest": manifest.digest,
            "size": manifest.size,
            "platform": platform,
        }));
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": manifests,
        "annotations": annotations,
    });
    let index = put_blob(dir, &json_bytes(&index))?;
    let top = json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [{
            "mediaType": MEDIA_INDEX,
            "digest": index.digest,
            "size": index.size,
            "annotations": {"org.opencontainers.image.ref.name": labels.version},
        }],
    });
    std::fs::write(dir.join("index.json"), json_bytes(&top))?;
    std::fs::write(
        dir.join("oci-layout"),
        json_bytes(&json!({"imageLayoutVersion": "1.0.0"})),
    )?;
    Ok(index.digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_798_761_599), "2026-12-31T23:59:59Z");
    }
}
