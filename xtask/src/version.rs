//! The version a build calls itself, shared by `build.rs` (which embeds it
//! for `--version`) and `cargo xtask` (which writes it into the manifest).
//! Plain std: `build.rs` includes this file.
//!
//! A version names exactly one binary: `X.Y.Z` only for the release build
//! of `vX.Y.Z` (`cargo xtask release vX.Y.Z` sets `ROLLOUTS_PLUGIN_RELEASE`),
//! every other build `X.Y.Z-dev+<first 12 digits of the commit>`, with
//! `.modified` when the checkout has uncommitted changes.

/// Set for a release build: `vX.Y.Z`, which must be the crate's version.
pub const RELEASE_ENV: &str = "ROLLOUTS_PLUGIN_RELEASE";

/// The version of a build of `commit` (a full hash, `<hash>-modified`, or
/// anything else for a build outside a checkout) with the crate version
/// `crate_version`; `release` is `RELEASE_ENV`'s value.
pub fn version(crate_version: &str, commit: &str, release: Option<&str>) -> Result<String, String> {
    if let Some(release) = release.filter(|r| !r.is_empty()) {
        if release != format!("v{crate_version}") {
            return Err(format!(
                "{RELEASE_ENV}={release} but Cargo.toml says version {crate_version}"
            ));
        }
        return Ok(crate_version.to_string());
    }
    let (hash, modified) = match commit.strip_suffix("-modified") {
        Some(hash) => (hash, ".modified"),
        None => (commit, ""),
    };
    let short: String = if !hash.is_empty() && hash.chars().all(|c| c.is_ascii_hexdigit()) {
        hash.chars().take(12).collect()
    } else {
        "unknown".to_string()
    };
    Ok(format!("{crate_version}-dev+{short}{modified}"))
}

/// `vX.Y.Z` (three numbers, no pre-release) as `X.Y.Z`.
pub fn parse_tag(tag: &str) -> Result<String, String> {
    let numbers = tag
        .strip_prefix('v')
        .ok_or_else(|| format!("{tag:?} is not vX.Y.Z"))?;
    let parts: Vec<&str> = numbers.split('.').collect();
    let numeric = |p: &&str| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit());
    if parts.len() != 3 || !parts.iter().all(numeric) {
        return Err(format!("{tag:?} is not vX.Y.Z (three numbers)"));
    }
    Ok(numbers.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMIT: &str = "593e9413eb6d4e572128fc51ab635f5b79396a04";

    #[test]
    fn only_a_release_build_has_the_bare_version() {
        assert_eq!(version("0.2.0", COMMIT, Some("v0.2.0")).unwrap(), "0.2.0");
        assert_eq!(
            version("0.2.0", COMMIT, None).unwrap(),
            "0.2.0-dev+593e9413eb6d"
        );
        assert_eq!(
            version("0.2.0", &format!("{COMMIT}-modified"), None).unwrap(),
            "0.2.0-dev+593e9413eb6d.modified"
        );
        assert_eq!(
            version("0.2.0", "unknown, not built from a git checkout", None).unwrap(),
            "0.2.0-dev+unknown"
        );
        // The next commit: another version.
        assert_ne!(
            version("0.2.0", COMMIT, None).unwrap(),
            version("0.2.0", "0d71cbe2a1b2c3d4e5f60718293a4b5c6d7e8f90", None).unwrap()
        );
        let error = version("0.2.0", COMMIT, Some("v0.3.0")).unwrap_err();
        assert!(error.contains("Cargo.toml says version 0.2.0"), "{error}");
    }

    #[test]
    fn tags_are_three_numbers() {
        assert_eq!(parse_tag("v1.20.3").unwrap(), "1.20.3");
        for bad in ["1.2.3", "v1.2", "v1.2.3-rc1", "v1..3", "vx.y.z"] {
            assert!(parse_tag(bad).is_err(), "{bad}");
        }
    }
}
