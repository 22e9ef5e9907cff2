//! Logs as hclog JSON lines on the real fd 2, which go-plugin's host parses
//! and re-logs: `@level`, `@message` and `@timestamp` are always strings (any
//! other JSON type there panics the controller), the timestamp has exactly
//! six fractional digits. Writing never panics, even when stderr is gone.

use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, prelude::*};

/// The `@module` of every line.
pub const MODULE: &str = "istio-router";

/// Installs the global subscriber at `level` (trace, debug, info, warn,
/// error; a `tracing` filter directive also works).
pub fn init(level: &str) -> Result<(), LoggingError> {
    let filter = EnvFilter::try_new(level).map_err(|e| LoggingError(e.to_string()))?;
    tracing_subscriber::registry()
        .with(HclogLayer)
        .with(filter)
        .try_init()
        .map_err(|e| LoggingError(e.to_string()))
}

#[derive(Debug, thiserror::Error)]
#[error("invalid log level: {0}")]
pub struct LoggingError(String);

/// Formats events as hclog JSON on fd 2.
pub struct HclogLayer;

/// A span's fields, kept for the events inside it.
struct SpanFields(Map<String, Value>);

impl<S> Layer<S> for HclogLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(fields.map));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let line = format_line(
            event,
            ctx.event_scope(event).map(|scope| {
                scope
                    .from_root()
                    .filter_map(|span| span.extensions().get::<SpanFields>().map(|f| f.0.clone()))
                    .collect::<Vec<_>>()
            }),
        );
        // Errors (EPIPE when the host is gone) are dropped: nobody reads them.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

fn format_line(event: &Event<'_>, spans: Option<Vec<Map<String, Value>>>) -> String {
    let mut fields = Fields::default();
    event.record(&mut fields);
    let mut out = Map::new();
    out.insert(
        "@level".into(),
        Value::String(level_name(event.metadata().level()).into()),
    );
    out.insert(
        "@message".into(),
        Value::String(fields.message.take().unwrap_or_default()),
    );
    out.insert(
        "@timestamp".into(),
        Value::String(timestamp(SystemTime::now())),
    );
    out.insert("@module".into(), Value::String(MODULE.into()));
    for span in spans.into_iter().flatten() {
        for (k, v) in span {
            out.insert(k, v);
        }
    }
    for (k, v) in fields.map {
        // Reserved keys stay strings whatever a caller names its fields.
        let k = if k.starts_with('@') {
            format!("field{k}")
        } else {
            k
        };
        out.insert(k, v);
    }
    let mut line = Value::Object(out).to_string();
    line.push('\n');
    line
}

fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => "trace",
        Level::DEBUG => "debug",
        Level::INFO => "info",
        Level::WARN => "warn",
        Level::ERROR => "error",
    }
}

/// `2006-01-02T15:04:05.000000Z` in UTC.
pub fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_micros()
    )
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[derive(Default)]
struct Fields {
    message: Option<String>,
    map: Map<String, Value>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(value.to_string()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::Bool(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::String(value.to_string()));
    }
}

impl Fields {
    fn put(&mut self, field: &Field, value: Value) {
        if field.name() == "message" {
            self.message = Some(match value {
                Value::String(s) => s,
                v => v.to_string(),
            });
        } else {
            self.map.insert(field.name().to_string(), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_have_six_fractional_digits_and_z() {
        let t = UNIX_EPOCH + Duration::new(1_704_164_645, 123_456_789);
        assert_eq!(timestamp(t), "2024-01-02T03:04:05.123456Z");
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(timestamp(leap), "2000-02-29T00:00:00.000000Z");
    }
}
