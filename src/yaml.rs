//! YAML the user hands the plugin (`simulate` manifests, conformance
//! cases), read strictly: a key given twice in one mapping is an error
//! rather than a silent "last one wins", and nesting is bounded.

use serde_json::Value;

/// Why a YAML text cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct YamlError(String);

/// Limits for user input: manifests and cases are shallow, and a hostile
/// file must not exhaust the stack. Duplicate keys are an error (the
/// parser's default policy, spelled out here).
fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_depth: 128,
        },
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::Error,
        // One line per error: no source snippet under it.
        with_snippet: false,
    }
}

/// Every document of `text` as JSON, empty documents left out.
pub fn documents(text: &str) -> Result<Vec<Value>, YamlError> {
    let documents: Vec<Value> = serde_saphyr::from_multiple_with_options(text, options())
        .map_err(|e| YamlError(e.to_string()))?;
    Ok(documents.into_iter().filter(|d| !d.is_null()).collect())
}

/// The one document of `text` as JSON.
pub fn document(text: &str) -> Result<Value, YamlError> {
    let mut all = documents(text)?;
    match all.len() {
        1 => Ok(all.remove(0)),
        n => Err(YamlError(format!("expected one YAML document, found {n}"))),
    }
}

/// `value` as a YAML document.
pub fn to_string(value: &Value) -> Result<String, YamlError> {
    serde_saphyr::to_string(value).map_err(|e| YamlError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_given_twice_is_an_error() {
        let error = documents("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert!(error.to_string().contains("uplicate"), "{error}");
    }

    #[test]
    fn documents_are_read_in_order_and_empty_ones_skipped() {
        let docs = documents("a: 1\n---\n---\nb: [x]\n").unwrap();
        assert_eq!(
            docs,
            vec![serde_json::json!({"a": 1}), serde_json::json!({"b": ["x"]})]
        );
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let text = "[".repeat(10_000);
        assert!(documents(&text).is_err());
    }
}
