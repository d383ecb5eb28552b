//! `trace_id` on every log line, read from the [current](super::TraceContext::current) context when
//! the line is formatted (feature `fmt`, for `tracing-subscriber`'s fmt layer).
//!
//! The server trace layer makes the request's context current while its handler is polled, so a
//! formatter can write the trace id of each event logged there without any span: a span per request
//! costs the subscriber about 4,400 instructions (creating it, formatting its fields into a `String`,
//! entering it on every poll, closing it), more than all of palisade's server layers together
//! (`crates/middleware/BENCHMARKS.md`).
//!
//! - Text output: [`TraceIdFields`] wraps a field formatter and appends `trace_id=…` to the fields
//!   of each event (`fmt().fmt_fields(TraceIdFields::new())`).
//! - JSON output: [`JsonLines`] writes one JSON object per event, with `trace_id` at the top level
//!   (`fmt().event_format(JsonLines)`).
//!
//! ```
//! use palisade::trace::fmt::TraceIdFields;
//!
//! let subscriber = tracing_subscriber::fmt().fmt_fields(TraceIdFields::new()).finish();
//! # let _ = subscriber;
//! ```

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{DefaultFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use super::TraceContext;

/// A field formatter that appends ` trace_id=<32 hex>` of the current context to what `F` writes
/// (default: `tracing-subscriber`'s [`DefaultFields`]). Outside a request nothing is appended.
///
/// Spans' fields go through the same formatter: a span opened inside a handler gets the id too.
#[derive(Clone, Debug, Default)]
pub struct TraceIdFields<F = DefaultFields> {
    inner: F,
}

impl TraceIdFields {
    /// Appends the trace id to what [`DefaultFields`] writes.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<F> TraceIdFields<F> {
    /// Appends the trace id to what `inner` writes.
    pub const fn wrap(inner: F) -> Self {
        Self { inner }
    }
}

impl<'w, F: for<'a> FormatFields<'a>> FormatFields<'w> for TraceIdFields<F> {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        self.inner.format_fields(writer.by_ref(), fields)?;
        match TraceContext::current_trace_id() {
            Some(id) => write!(writer, " trace_id={id}"),
            None => Ok(()),
        }
    }
}

/// An event formatter writing one JSON object per line:
/// `{"timestamp":…,"level":…,"target":…,"fields":{"message":…,…},"trace_id":…}` — the fields of
/// `tracing-subscriber`'s JSON format that a log pipeline reads, plus the current trace id (absent
/// outside a request). Spans are not written.
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        writer.write_str("{\"timestamp\":\"")?;
        SystemTime.format_time(&mut writer)?;
        write!(writer, "\",\"level\":\"{}\",\"target\":", meta.level())?;
        write_json_str(&mut writer, meta.target())?;
        writer.write_str(",\"fields\":{")?;
        let mut visitor = JsonFields { writer: writer.by_ref(), first: true, result: Ok(()) };
        event.record(&mut visitor);
        visitor.result?;
        writer.write_char('}')?;
        if let Some(id) = TraceContext::current_trace_id() {
            write!(writer, ",\"trace_id\":\"{id}\"")?;
        }
        writer.write_str("}\n")
    }
}

struct JsonFields<'w> {
    writer: Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl JsonFields<'_> {
    fn key(&mut self, field: &Field) -> fmt::Result {
        if !std::mem::take(&mut self.first) {
            self.writer.write_char(',')?;
        }
        write_json_str(&mut self.writer, field.name())?;
        self.writer.write_char(':')
    }

    fn raw(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        if self.result.is_ok() {
            self.result = self.key(field).and_then(|()| self.writer.write_fmt(value));
        }
    }
}

impl Visit for JsonFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.result.is_ok() {
            self.result = self.key(field).and_then(|()| write_json_str(&mut self.writer, value));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.raw(field, format_args!("{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.raw(field, format_args!("{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.raw(field, format_args!("{value}"));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if value.is_finite() {
            self.raw(field, format_args!("{value}"));
        } else {
            self.record_str(field, &value.to_string());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_ok() {
            self.result = self.key(field).and_then(|()| {
                self.writer.write_char('"')?;
                write!(JsonEscaped(&mut self.writer), "{value:?}")?;
                self.writer.write_char('"')
            });
        }
    }
}

fn write_json_str(writer: &mut Writer<'_>, s: &str) -> fmt::Result {
    writer.write_char('"')?;
    JsonEscaped(writer).write_str(s)?;
    writer.write_char('"')
}

/// Escapes what is written through it as the inside of a JSON string.
struct JsonEscaped<'a, 'w>(&'a mut Writer<'w>);

impl fmt::Write for JsonEscaped<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s;
        while let Some(i) = rest.find(|c: char| c == '"' || c == '\\' || c < ' ') {
            self.0.write_str(&rest[..i])?;
            let c = rest[i..].chars().next().unwrap_or(' ');
            match c {
                '"' => self.0.write_str("\\\"")?,
                '\\' => self.0.write_str("\\\\")?,
                '\n' => self.0.write_str("\\n")?,
                '\r' => self.0.write_str("\\r")?,
                '\t' => self.0.write_str("\\t")?,
                c => write!(self.0, "\\u{:04x}", c as u32)?,
            }
            rest = &rest[i + c.len_utf8()..];
        }
        self.0.write_str(rest)
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use tower::{ServiceExt, service_fn};

    use super::*;
    use crate::trace::ServerTraceLayer;

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Lines {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    /// Logs one line inside a request (with a quote and a newline to escape) and one outside.
    async fn log_a_request() {
        let layer = tower::Layer::layer(
            &ServerTraceLayer::new(),
            service_fn(|_req: http::Request<()>| async {
                tracing::info!(user = "a\"b", count = 3, "handling\nit");
                Ok::<_, std::convert::Infallible>(http::Response::new(()))
            }),
        );
        let req = http::Request::builder().header("traceparent", TRACEPARENT).body(()).unwrap();
        layer.oneshot(req).await.unwrap();
        tracing::info!("outside");
    }

    #[tokio::test]
    async fn text_lines_logged_in_a_request_carry_its_trace_id() {
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .fmt_fields(TraceIdFields::new())
            .with_writer(move || writer.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        log_a_request().await;
        let text = lines.text();
        assert!(text.contains("count=3 trace_id=4bf92f3577b34da6a3ce929d0e0e4736\n"), "{text}");
        let outside = text.lines().find(|l| l.contains("outside")).unwrap();
        assert!(!outside.contains("trace_id"), "{outside}");
    }

    #[tokio::test]
    async fn json_lines_are_json_with_the_trace_id() {
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber =
            tracing_subscriber::fmt().event_format(JsonLines).with_writer(move || writer.clone()).finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        log_a_request().await;
        let text = lines.text();
        let mut lines = text.lines();
        let inside: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
        assert_eq!(inside["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(inside["level"], "INFO");
        assert_eq!(inside["fields"]["message"], "handling\nit");
        assert_eq!(inside["fields"]["user"], "a\"b");
        assert_eq!(inside["fields"]["count"], 3);
        assert!(inside["timestamp"].is_string());
        let outside: serde_json::Value =
            serde_json::from_str(lines.find(|l| l.contains("outside")).unwrap()).unwrap();
        assert!(outside.get("trace_id").is_none(), "{outside}");
    }
}
