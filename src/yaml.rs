//! YAML the user hands the plugin (`simulate` manifests, conformance
//! cases), read strictly: a key given twice in one mapping is an error
//! rather than a silent "last one wins", and nesting is bounded.

use serde_json::Value;

/// Why a YAML text cannot be used: the message, and the line (1-based)
/// where the parser found the problem when it knows it.
#[derive(Debug, thiserror::Error)]
pub struct YamlError {
    message: String,
    line: Option<usize>,
}

impl std::fmt::Display for YamlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl YamlError {
    fn new(message: impl Into<String>) -> Self {
        YamlError {
            message: message.into(),
            line: None,
        }
    }

    /// The line (1-based) the problem is on, when known.
    pub fn line(&self) -> Option<usize> {
        self.line
    }

    /// The problem without its line.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// In words a YAML author knows (no Rust option names), with the line
    /// counted from `first_line` of the whole file.
    fn from_parser(error: &serde_saphyr::Error, first_line: usize) -> Self {
        let line = error
            .location()
            .map(|l| l.line())
            .filter(|l| *l > 0)
            .and_then(|l| usize::try_from(l).ok())
            .map(|l| l + first_line - 1);
        let message = match error {
            serde_saphyr::Error::DuplicateMappingKey { key: Some(key), .. } => {
                format!("duplicate key {key:?}: a key is given twice in one mapping")
            }
            serde_saphyr::Error::DuplicateMappingKey { key: None, .. } => {
                "duplicate key: a key is given twice in one mapping".to_string()
            }
            serde_saphyr::Error::Budget { breach, .. } => budget_words(breach),
            other => strip_location(&other.to_string()),
        };
        YamlError {
            message: yaml_words(&message),
            line,
        }
    }
}

/// A parser budget refusal in words: which limit, and how far the input
/// went (not the parser's `Nodes { nodes: 250001 }`).
fn budget_words(breach: &serde_saphyr::budget::BudgetBreach) -> String {
    use serde_saphyr::budget::BudgetBreach as B;
    // The reader stops at the first count past its limit.
    let (what, seen) = match breach {
        B::Events { events } => ("parser events", *events),
        B::Aliases { aliases } => ("aliases (*name)", *aliases),
        B::Anchors { anchors } => ("anchors (&name)", *anchors),
        B::Depth { depth } => ("levels of nesting", *depth),
        B::Documents { documents } => ("documents", *documents),
        B::Nodes { nodes } => ("nodes (mappings, lists and values)", *nodes),
        B::ScalarBytes { total_scalar_bytes } => ("bytes of values", *total_scalar_bytes),
        B::CommentBytes {
            total_comment_bytes,
        } => ("bytes of comments", *total_comment_bytes),
        B::MergeKeys { merge_keys } => ("merge keys (<<)", *merge_keys),
        B::InputBytes { input_bytes } => ("bytes", *input_bytes),
        B::InclusionDepth { depth } => ("levels of includes", *depth as usize),
        B::AliasAnchorRatio { aliases, anchors } => {
            return format!(
                "too many aliases for its anchors ({aliases} aliases of {anchors} anchors): \
                 the input expands far beyond its size, so it is not read"
            );
        }
        B::SequenceUnbalanced => {
            return "the YAML structure is unbalanced (a list or mapping closes that was never \
                    opened): the input is malformed or truncated"
                .to_string();
        }
        _ => return "the input exceeds a limit of the YAML reader".to_string(),
    };
    format!(
        "the input has more than {} {what}, the most the reader takes in one document: \
         split it into smaller files",
        seen.saturating_sub(1)
    )
}

/// The parser's message without its trailing ` at line L column C`, which
/// [`YamlError`] reports itself (counted from the start of the file).
fn strip_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].trim_end_matches(',').to_string(),
        None => message.to_string(),
    }
}

/// A deserialiser's message in YAML's words: `expected an integer` rather
/// than `expected i32`, `a mapping` rather than `a map` or `struct X`.
pub fn yaml_words(message: &str) -> String {
    let mut out = message.to_string();
    for (rust, yaml) in [
        ("expected i8", "expected an integer"),
        ("expected i16", "expected an integer"),
        ("expected i32", "expected an integer"),
        ("expected i64", "expected an integer"),
        ("expected u8", "expected a non-negative integer"),
        ("expected u16", "expected a non-negative integer"),
        ("expected u32", "expected a non-negative integer"),
        ("expected u64", "expected a non-negative integer"),
        ("expected usize", "expected a non-negative integer"),
        ("expected f32", "expected a number"),
        ("expected f64", "expected a number"),
        ("expected a boolean", "expected true or false"),
        ("expected a sequence", "expected a list"),
        ("invalid type: sequence", "invalid type: a list"),
        ("expected a map", "expected a mapping"),
        ("invalid type: map", "invalid type: a mapping"),
        ("expected a borrowed string", "expected a string"),
        ("invalid type: floating point", "invalid type: the number"),
        ("invalid type: integer", "invalid type: the integer"),
        ("invalid type: string", "invalid type: the string"),
        ("invalid type: boolean", "invalid type: the boolean"),
        ("invalid type: null", "invalid type: null (an empty value)"),
    ] {
        out = out.replace(rust, yaml);
    }
    // `expected struct SetHeaderRoute` / `expected struct X with N elements`
    while let Some(at) = out.find("expected struct ") {
        let rest = &out[at + "expected struct ".len()..];
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        out = format!("{}expected a mapping{}", &out[..at], &rest[end..]);
    }
    out
}

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
        return Err(YamlError::new(format!(
            "YAML input of {} bytes exceeds the limit of {MAX_INPUT_BYTES} bytes",
            text.len()
        )));
    }
    prescan_depth(text, 1)?;
    let documents: Vec<Value> = serde_saphyr::from_multiple_with_options(text, options())
        .map_err(|e| YamlError::from_parser(&e, 1))?;
    Ok(documents.into_iter().filter(|d| !d.is_null()).collect())
}

/// One document of a multi-document file, as [`split_documents`] finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentSpan {
    /// Byte range of the document in the file (its `---` line included).
    pub range: std::ops::Range<usize>,
    /// The line (1-based) the range starts on.
    pub first_line: usize,
    /// The line (1-based) of its first content (not blank, not a comment,
    /// not `---`): where the object starts.
    pub content_line: usize,
}

/// The documents of a multi-document YAML file, found by their `---` lines
/// without parsing, so that each can be parsed (and dropped) on its own:
/// reading a large file costs one document's memory at a time. Documents
/// holding only comments or blank lines are left out.
pub fn split_documents(text: &str) -> Vec<DocumentSpan> {
    let mut spans = Vec::new();
    let mut start = 0;
    let mut first_line = 1;
    let mut content_line = None;
    let mut offset = 0;
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let number = index + 1;
        let body = line.trim_end_matches(['\n', '\r']);
        let marker = body == "---" || body.starts_with("--- ") || body.starts_with("---\t");
        if marker && offset > start {
            if let Some(content_line) = content_line {
                spans.push(DocumentSpan {
                    range: start..offset,
                    first_line,
                    content_line,
                });
            }
            start = offset;
            first_line = number;
            content_line = None;
        }
        let rest = if marker {
            body[3..].trim()
        } else {
            body.trim()
        };
        if content_line.is_none() && !rest.is_empty() && !rest.starts_with('#') {
            content_line = Some(number);
        }
        offset += line.len();
    }
    if let Some(content_line) = content_line {
        spans.push(DocumentSpan {
            range: start..text.len(),
            first_line,
            content_line,
        });
    }
    spans
}

/// The document in `span` of `text` (`None` when it is empty), with the
/// same limits as [`documents`]; an error's line counts from the start of
/// `text`.
pub fn document_in(text: &str, span: &DocumentSpan) -> Result<Option<Value>, YamlError> {
    let part = &text[span.range.clone()];
    if part.len() > MAX_INPUT_BYTES {
        return Err(YamlError {
            message: format!(
                "a YAML document of {} bytes exceeds the limit of {MAX_INPUT_BYTES} bytes",
                part.len()
            ),
            line: Some(span.content_line),
        });
    }
    prescan_depth(part, span.first_line)?;
    let documents: Vec<Value> = serde_saphyr::from_multiple_with_options(part, options())
        .map_err(|e| YamlError::from_parser(&e, span.first_line))?;
    let mut documents = documents.into_iter().filter(|d| !d.is_null());
    let first = documents.next();
    if documents.next().is_some() {
        return Err(YamlError {
            message: "more than one document where one was expected".into(),
            line: Some(span.content_line),
        });
    }
    Ok(first)
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
fn prescan_depth(text: &str, first_line: usize) -> Result<(), YamlError> {
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
            return Err(YamlError {
                message: format!("nesting deeper than {PRESCAN_DEPTH} levels"),
                line: Some(number + first_line),
            });
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
        n => Err(YamlError::new(format!(
            "expected one YAML document, found {n}"
        ))),
    }
}
/// One step of a field path: a mapping key or a list index (`None`:
/// `[]`, an index not known).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(Option<usize>),
}

/// `spec.http[0].route`, `plugins["a/b"].name`, `virtualServices[].routes`
/// as steps.
fn path_steps(path: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            rest = after;
        } else if let Some(after) = rest.strip_prefix("[\"") {
            let end = after.find("\"]").unwrap_or(after.len());
            steps.push(Step::Key(after[..end].to_string()));
            rest = after.get(end + 2..).unwrap_or("");
        } else if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']').unwrap_or(after.len());
            steps.push(Step::Index(after[..end].parse().ok()));
            rest = after.get(end + 1..).unwrap_or("");
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            steps.push(Step::Key(rest[..end].to_string()));
            rest = &rest[end..];
        }
    }
    steps
}

/// One line of block YAML as the field locator sees it: list items opened
/// on it (`- `), then a key or another value, each with its column.
#[derive(Debug)]
struct Token {
    line: usize,
    column: usize,
    /// `None`: a list item marker; `Some(None)`: a value that is not a key.
    key: Option<Option<String>>,
}

fn tokens(text: &str, first_line: usize) -> Vec<Token> {
    let mut tokens = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = first_line + index;
        let body = raw.trim_start_matches(' ');
        if body.is_empty() || body.starts_with('#') || body.starts_with("---") {
            continue;
        }
        let mut column = raw.len() - body.len();
        let mut rest = body;
        while let Some(after) = rest
            .strip_prefix("- ")
            .or_else(|| (rest == "-").then_some(""))
        {
            tokens.push(Token {
                line,
                column,
                key: None,
            });
            let trimmed = after.trim_start_matches(' ');
            column += 1 + after.len() - trimmed.len() + usize::from(!after.is_empty());
            rest = trimmed;
        }
        if rest.is_empty() {
            continue;
        }
        tokens.push(Token {
            line,
            column,
            key: Some(mapping_key(rest)),
        });
    }
    tokens
}

/// The key a `key: value` line opens, unquoted.
fn mapping_key(body: &str) -> Option<String> {
    for quote in ['"', '\''] {
        if let Some(after) = body.strip_prefix(quote) {
            let end = after.find(quote)?;
            return after[end + 1..]
                .trim_start()
                .starts_with(':')
                .then(|| after[..end].to_string());
        }
    }
    if body.starts_with(['{', '[']) {
        return None;
    }
    let end = body
        .find(": ")
        .or_else(|| body.strip_suffix(':').map(str::len))?;
    Some(body[..end].trim_end().to_string())
}

/// The line (counted in the whole file) of the field `path` in the
/// document of `span`, or of the deepest part of it written in block style
/// (a field inside a flow mapping `{...}` gives the line of the mapping);
/// `None` when not even its first key is there.
pub fn field_line(text: &str, span: &DocumentSpan, path: &str) -> Option<usize> {
    let tokens = tokens(&text[span.range.clone()], span.first_line);
    let (mut lo, mut hi) = (0, tokens.len());
    let mut found = None;
    for step in path_steps(path) {
        let Some(level) = tokens.get(lo).filter(|_| lo < hi).map(|t| t.column) else {
            break;
        };
        let at = match &step {
            Step::Key(key) => (lo..hi).find(|&i| {
                tokens[i].column == level
                    && tokens[i].key.as_ref().and_then(Option::as_deref) == Some(key.as_str())
            }),
            Step::Index(Some(n)) => (lo..hi)
                .filter(|&i| tokens[i].column == level && tokens[i].key.is_none())
                .nth(*n),
            Step::Index(None) => None,
        };
        let Some(at) = at else { break };
        found = Some(tokens[at].line);
        // The value: what follows, deeper than the key or item; for a key,
        // also a list written at the key's own column (`key:\n- a`).
        let is_key = matches!(step, Step::Key(_));
        let mut end = at + 1;
        while end < hi
            && (tokens[end].column > level
                || (is_key && tokens[end].column == level && tokens[end].key.is_none()))
        {
            end += 1;
        }
        (lo, hi) = (at + 1, end);
    }
    found
}

/// `value` as a YAML document.
pub fn to_string(value: &Value) -> Result<String, YamlError> {
    serde_saphyr::to_string(value).map_err(|e| YamlError::new(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_found_on_their_own_line() {
        let text = "a: 1\n---\n# c\nkind: Rollout\nspec:\n  strategy:\n    canary:\n      steps:\n      - setWeight: 10\n      - pause: {}\n        # x\n      - setWeight: 20\n      trafficRouting:\n        plugins:\n          \"argoproj-labs/istio\":\n            virtualService: {name: vs}\n";
        let span = &split_documents(text)[1];
        let line = |path| field_line(text, span, path);
        assert_eq!(line("kind"), Some(4));
        assert_eq!(line("spec.strategy.canary.steps"), Some(8));
        assert_eq!(line("spec.strategy.canary.steps[0].setWeight"), Some(9));
        assert_eq!(line("spec.strategy.canary.steps[2].setWeight"), Some(12));
        assert_eq!(line("spec.strategy.canary.steps[2]"), Some(12));
        assert_eq!(
            line(
                "spec.strategy.canary.trafficRouting.plugins[\"argoproj-labs/istio\"].virtualService.name"
            ),
            Some(16)
        );
        // Not there: the deepest part that is.
        assert_eq!(line("spec.strategy.canary.steps[7]"), Some(8));
        assert_eq!(line("spec.strategy.canary.nothing"), Some(7));
        assert_eq!(line("status"), None);
        let list = "kind: VirtualService\nspec:\n  http:\n    - name: a\n      route:\n        - destination: {host: x}\n          weight: 90\n        - destination: {host: y}\n";
        let span = &split_documents(list)[0];
        assert_eq!(field_line(list, span, "spec.http[0].route[1]"), Some(8));
        assert_eq!(
            field_line(list, span, "spec.http[0].route[0].weight"),
            Some(7)
        );
    }

    #[test]
    fn a_budget_refusal_is_in_words() {
        let breach = serde_saphyr::budget::BudgetBreach::Nodes { nodes: 250_001 };
        let words = budget_words(&breach);
        assert!(
            words.starts_with("the input has more than 250000 nodes (mappings, lists and values)"),
            "{words}"
        );
        assert!(!words.contains('{'), "{words}");
    }

    #[test]
    fn a_key_given_twice_is_an_error() {
        let error = documents("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert!(error.to_string().contains("uplicate"), "{error}");
    }

    #[test]
    fn a_duplicate_key_names_its_line_in_the_whole_file() {
        let text = "a: 1\n---\n# comment\nkind: X\nspec:\n  b: 1\n  b: 2\n";
        let spans = split_documents(text);
        assert_eq!(spans.len(), 2);
        assert_eq!((spans[1].first_line, spans[1].content_line), (2, 4));
        let error = document_in(text, &spans[1]).unwrap_err();
        assert_eq!(error.line(), Some(7), "{error}");
        assert!(
            error.to_string().starts_with("line 7: duplicate key \"b\""),
            "{error}"
        );
        assert!(!error.to_string().contains("DuplicateKeyPolicy"), "{error}");
        assert_eq!(
            document_in(text, &spans[0]).unwrap(),
            Some(serde_json::json!({"a": 1}))
        );
    }

    #[test]
    fn documents_split_on_marker_lines_only() {
        let text = "---\n---\n# only a comment\n---\nkey: |\n  --- not a marker\n--- {a: 1}\n";
        let spans = split_documents(text);
        let lines: Vec<usize> = spans.iter().map(|s| s.content_line).collect();
        assert_eq!(lines, [5, 7]);
        assert_eq!(
            document_in(text, &spans[1]).unwrap(),
            Some(serde_json::json!({"a": 1}))
        );
    }

    #[test]
    fn type_errors_speak_yaml() {
        assert_eq!(
            yaml_words("invalid type: string \"x\", expected i32"),
            "invalid type: the string \"x\", expected an integer"
        );
        assert_eq!(
            yaml_words("invalid type: sequence, expected struct SetHeaderRoute"),
            "invalid type: a list, expected a mapping"
        );
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
