//! YAML the user hands the plugin (`simulate` manifests, conformance
//! cases), read strictly: a key given twice in one mapping is an error
//! rather than a silent "last one wins", and nesting is bounded by the
//! parser's recursion limit.

use serde::Deserialize;
use serde_json::Value;

/// Why a YAML text cannot be used; `document` counts from 1.
#[derive(Debug, thiserror::Error)]
#[error("document {document}: {message}")]
pub struct YamlError {
    pub document: usize,
    pub message: String,
}

/// Every document of `text` as JSON, empty documents left out.
pub fn documents(text: &str) -> Result<Vec<Value>, YamlError> {
    let mut documents = Vec::new();
    for (index, document) in serde_norway::Deserializer::from_str(text).enumerate() {
        let error = |message: String| YamlError {
            document: index + 1,
            message,
        };
        // Through the YAML value, whose mappings refuse duplicate keys.
        let yaml = serde_norway::Value::deserialize(document).map_err(|e| error(e.to_string()))?;
        let value = serde_json::to_value(yaml).map_err(|e| error(e.to_string()))?;
        if !value.is_null() {
            documents.push(value);
        }
    }
    Ok(documents)
}

/// The one document of `text` as JSON.
pub fn document(text: &str) -> Result<Value, YamlError> {
    let mut all = documents(text)?;
    match all.len() {
        1 => Ok(all.remove(0)),
        n => Err(YamlError {
            document: n.min(2),
            message: format!("expected one YAML document, found {n}"),
        }),
    }
}

/// `value` as a YAML document.
pub fn to_string(value: &Value) -> Result<String, YamlError> {
    serde_norway::to_string(value).map_err(|e| YamlError {
        document: 1,
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_given_twice_is_an_error() {
        let error = documents("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(error.document, 1);
        assert!(error.message.contains("duplicate"), "{error}");
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
