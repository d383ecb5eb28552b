//! Logging, the process's Prometheus recorder, and span export over OTLP ([`otlp`]).
//!
//! [`init`] installs a `tracing-subscriber`: filter from `RUST_LOG` (default `info`), output pretty
//! or JSON (`LOG_FORMAT=json`); pretty output is coloured only on a terminal. Every line logged inside
//! a request carries its `trace_id`, read from the request's current trace context when the line is
//! formatted (`palisade::trace::fmt`: no span per request to pay for). Neither the kit nor palisade
//! records request headers, so `Authorization` and cookies never reach the logs.
//!
//! [`init_exporting`] does the same and, when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, exports spans
//! over OTLP/HTTP ([`otlp`]: the variables it reads, what is exported); without the variable
//! nothing is exported, nothing is started, and nothing errors.
//!
//! [`prometheus`] installs the `metrics` recorder once per process (`shop all` runs every service in
//! one process and they share it), with [`palisade::metrics::DURATION_BUCKETS`] for the duration
//! histograms and [`pool_metrics::WAIT_BUCKETS`] for the database pool's waits.
//!
//! The filter sits behind a reload handle: [`set_log_filter`] replaces it with the `log_level`
//! setting at start when `RUST_LOG` is not set, and whenever a reload changes it ([`crate::reload`]).

use std::io::IsTerminal;
use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use palisade::metrics::DURATION_BUCKETS;
use palisade::trace::fmt::{JsonLines, TraceIdFields};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::db::pool_metrics;

pub mod otlp;

/// Installs the global subscriber (a second call does nothing).
pub fn init() {
    install(None);
}

/// [`init`], plus span export when the environment names an OTLP endpoint ([`otlp`]), as
/// `default_service_name` unless `OTEL_SERVICE_NAME` says otherwise. Keep the exporter and
/// [`shutdown`](otlp::Otlp::shutdown) it when the process stops, so the last spans are sent. An
/// exporter that cannot start is logged and the process runs without it. Needs no runtime.
pub fn init_exporting(default_service_name: &str) -> Option<otlp::Otlp> {
    let config = otlp::OtlpConfig::from_env(default_service_name);
    let (exporter, failure) = match config.as_ref().map(otlp::Otlp::start) {
        Some(Ok(exporter)) => (Some(exporter), None),
        Some(Err(err)) => (None, Some(err)),
        None => (None, None),
    };
    install(exporter.as_ref());
    // Logged once the subscriber exists.
    if let Some(err) = failure {
        tracing::warn!(error = %err, "cannot start the OTLP exporter: spans are not exported");
    } else if let Some(config) = &config {
        if let Some(protocol) = otlp::unsupported_protocol(|name| std::env::var(name).ok()) {
            tracing::warn!(%protocol, "OTLP export supports http/protobuf only: exporting with it");
        }
        tracing::info!(
            endpoint = %config.traces_endpoint,
            service_name = %config.service_name,
            "exporting spans over OTLP/HTTP"
        );
    }
    exporter
}

fn install(otlp: Option<&otlp::Otlp>) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    // Colours only for a person at a terminal (and not with `NO_COLOR`): escape codes in a log file
    // or pipe are noise, and styling every span field costs CPU on each request.
    let ansi = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi);
    if json {
        let builder = builder.event_format(JsonLines).with_filter_reloading();
        let handle = builder.reload_handle();
        if try_init(builder.finish(), otlp) {
            keep_reload_handle(handle);
        }
    } else {
        let builder = builder.fmt_fields(TraceIdFields::new()).with_filter_reloading();
        let handle = builder.reload_handle();
        if try_init(builder.finish(), otlp) {
            keep_reload_handle(handle);
        }
    }
}

/// Sets `subscriber` (with the exporter's layer, if any) as the global default, unless one is set;
/// whether it did.
fn try_init<S>(subscriber: S, otlp: Option<&otlp::Otlp>) -> bool
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span> + Send + Sync + 'static,
{
    // Without an exporter the subscriber is exactly what it was: no extra layer to call per event.
    match otlp {
        Some(otlp) => subscriber.with(otlp.layer()).try_init().is_ok(),
        None => subscriber.try_init().is_ok(),
    }
}

/// Replaces the log filter of the subscriber [`init`] or [`init_exporting`] installed (a reload of
/// `log_level`). Fails when `directives` do not parse ([`log_filter`]) or no such subscriber is
/// installed.
pub fn set_log_filter(directives: &str) -> Result<(), String> {
    let filter = log_filter(directives)?;
    let reload = FILTER_RELOAD.get().ok_or("no reloadable log subscriber is installed")?;
    reload(filter)
}

/// The filter for `directives`: comma-separated levels (`info`) or `target=level` pairs
/// (`warn,kit=debug`). A bare word that is not a level is refused: `EnvFilter` would read a typo
/// such as `debgu` as a target and silence everything else.
pub fn log_filter(directives: &str) -> Result<EnvFilter, String> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let directives: Vec<&str> = directives.split(',').map(str::trim).filter(|d| !d.is_empty()).collect();
    if directives.is_empty() {
        return Err("no level given (info, warn, …)".to_owned());
    }
    for directive in &directives {
        if !directive.contains('=') && !LEVELS.iter().any(|level| level.eq_ignore_ascii_case(directive)) {
            return Err(format!("{directive:?} is neither a level ({}) nor target=level", LEVELS.join(", ")));
        }
    }
    let directives = directives.join(",");
    EnvFilter::builder().parse(&directives).map_err(|e| format!("{directives:?}: {e}"))
}

type FilterReload = Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;

/// How to swap the installed subscriber's filter (one subscriber type per output format).
static FILTER_RELOAD: OnceLock<FilterReload> = OnceLock::new();

fn keep_reload_handle<S: 'static>(handle: tracing_subscriber::reload::Handle<EnvFilter, S>) {
    let reload: FilterReload = Box::new(move |filter| handle.reload(filter).map_err(|e| e.to_string()));
    let _installed_once = FILTER_RELOAD.set(reload);
}

/// How often the recorder folds recorded histogram samples into its buckets.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Folds histogram samples into buckets every [`UPKEEP_INTERVAL`]. The recorder keeps each sample
/// until then (or until a scrape renders them): without upkeep, a service nobody scrapes would hold 8
/// bytes per request forever. A plain thread, so that it runs whether or not a tokio runtime does.
fn spawn_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || {
        loop {
            std::thread::sleep(UPKEEP_INTERVAL);
            handle.run_upkeep();
        }
    });
    if let Err(err) = spawned {
        tracing::warn!("cannot start the metrics upkeep thread ({err}); histograms grow until scraped");
    }
}

/// The process's Prometheus handle; the first call installs the recorder (and its upkeep thread).
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_duration_seconds".into()), DURATION_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(pool_metrics::DB_CLIENT_CONNECTION_WAIT_TIME.into()),
                        pool_metrics::WAIT_BUCKETS,
                    )
                })
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
            }
            spawn_upkeep(handle.clone());
            handle
        })
        .clone()
}

#[cfg(test)]
mod tests {
    /// The recorder must not keep every histogram sample until a scrape: its upkeep thread runs.
    #[cfg(target_os = "linux")]
    #[test]
    fn installing_the_recorder_starts_its_upkeep_thread() {
        let _handle = super::prometheus();
        // The new thread names itself once it runs: give it a moment.
        let thread_names = || -> Vec<String> {
            std::fs::read_dir("/proc/self/task")
                .unwrap()
                .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
                .map(|name| name.trim().to_owned())
                .collect()
        };
        let mut names = thread_names();
        for _ in 0..200 {
            if names.iter().any(|n| n == "metrics-upkeep") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
            names = thread_names();
        }
        assert!(names.iter().any(|n| n == "metrics-upkeep"), "threads: {names:?}");
    }
}
