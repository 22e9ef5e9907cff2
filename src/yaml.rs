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
            max_depth: MAX_DEPTH,
        },
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::Error,
        // One line per error: no source snippet under it.
        with_snippet: false,
    }
}

/// Every document of `text` as JSON, empty documents left out.
pub fn documents(text: &str) -> Result<Vec<Value>, YamlError> {
    if text.len() > MAX_INPUT_BYTES {
        return Err(YamlError(format!(
            "YAML input of {} bytes exceeds the limit of {MAX_INPUT_BYTES} bytes",
            text.len()
        )));
    }
    prescan_depth(text)?;
    let documents: Vec<Value> = serde_saphyr::from_multiple_with_options(text, options())
        .map_err(|e| YamlError(e.to_string()))?;
    Ok(documents.into_iter().filter(|d| !d.is_null()).collect())
}

/// Deepest nesting read. A Rollout or VirtualService is about a dozen
/// levels deep; the parser's recursion costs up to ~17 KB of stack per level
/// in a debug build, so 64 levels stay far inside a 2 MiB thread stack
/// (about 120 levels would not).
const MAX_DEPTH: usize = 64;

/// Nesting the pre-scan allows; it over-estimates, so it is the parser's
/// budget with room to spare.
const PRESCAN_DEPTH: usize = MAX_DEPTH;

/// A linear pass over the text bounding its nesting before the parser
/// (which recurses on block collections) sees it: block levels are counted
/// as an indentation stack plus the `- ` / `? ` indicators opening a line,
/// flow levels as unclosed `[` / `{` outside quotes. It over-estimates
/// rather than under-estimates; a real manifest is a dozen levels deep.
fn prescan_depth(text: &str) -> Result<(), YamlError> {
    let mut indents: Vec<usize> = Vec::new();
    let mut flow = 0usize;
    for (number, line) in text.lines().enumerate() {
        let body = line.trim_start_matches(' ');
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        let indent = line.len() - body.len();
        if flow == 0 {
            while indents.last().is_some_and(|&top| top >= indent) {
                indents.pop();
            }
            indents.push(indent);
        }
        let mut rest = body;
        let mut inline = 0;
        while let Some(after) = rest
            .strip_prefix("- ")
            .or_else(|| rest.strip_prefix("? "))
            .or_else(|| (rest == "-").then_some(""))
        {
            inline += 1;
            rest = after.trim_start_matches(' ');
        }
        let mut quote = None;
        let mut deepest = flow;
        for c in rest.chars() {
            match (quote, c) {
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (None, '[' | '{') => {
                    flow += 1;
                    deepest = deepest.max(flow);
                }
                (None, ']' | '}') => flow = flow.saturating_sub(1),
                (None, '#') => break,
                _ => {}
            }
        }
        if indents.len() + inline + deepest > PRESCAN_DEPTH {
            return Err(YamlError(format!(
                "line {}: nesting deeper than {PRESCAN_DEPTH} levels",
                number + 1
            )));
        }
    }
    Ok(())
}

/// The largest YAML text read, far above any manifest or case (the same
/// ceiling as one request on the wire).
pub const MAX_INPUT_BYTES: usize = crate::transport::MAX_REQUEST_BYTES;

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

    #[test]
    fn a_hostile_100k_level_block_file_is_refused_by_the_pre_scan() {
        // 200 KB: 100 000 nested block sequences ("- - - ...") and as many
        // flow brackets; both stop at the budget instead of recursing.
        let block = "- ".repeat(100_000);
        let error = documents(&block).unwrap_err().to_string();
        assert!(error.contains("nesting deeper than"), "{error}");
        // At the limit the file is read.
        let block = "- ".repeat(PRESCAN_DEPTH - 1) + "x";
        assert!(documents(&block).is_ok());
        // As an indentation staircase (about 1.3 KB per 50 levels).
        let stairs: String = (0..100_000)
            .map(|i| format!("{}- a\n", " ".repeat(i % 2000)))
            .collect();
        assert!(documents(&stairs).is_err());
    }

    #[test]
    fn a_hostile_100k_level_flow_file_is_refused_by_the_pre_scan() {
        let flow = "[".repeat(100_000) + &"]".repeat(100_000);
        let error = documents(&flow).unwrap_err().to_string();
        assert!(error.contains("nesting deeper than"), "{error}");
        let flow = "{a: ".repeat(100_000);
        let error = documents(&flow).unwrap_err().to_string();
        assert!(error.contains("nesting deeper than"), "{error}");
    }

    #[test]
    fn a_hostile_100k_level_mapping_file_is_an_error() {
        let mapping: String = (0..50_000).map(|_| "a: ").collect::<String>() + "1";
        let error = documents(&mapping).unwrap_err().to_string();
        assert!(!error.is_empty());
    }

    #[test]
    fn input_past_the_size_limit_is_refused_before_parsing() {
        let text = "#".repeat(MAX_INPUT_BYTES + 1);
        let error = documents(&text).unwrap_err().to_string();
        assert!(error.contains("exceeds the limit"), "{error}");
    }

    #[test]
    fn non_finite_numbers_never_read_as_null() {
        // JSON has no NaN or infinity; were they read as floats, a JSON value
        // would hold `null` (a weight silently 0). They stay the text they
        // are, which the model and the core refuse naming the field
        // (tests/hostile_input.rs).
        for text in ["w: .nan\n", "w: .inf\n", "w: -.inf\n", "w: 1e999\n"] {
            let w = &document(text).unwrap()["w"];
            assert!(w.is_string(), "{text}: {w}");
        }
        assert_eq!(document("w: 1.5\n").unwrap(), serde_json::json!({"w": 1.5}));
    }
}
