//! Logging and the process's Prometheus recorder.
//!
//! [`init`] installs a `tracing-subscriber`: filter from `RUST_LOG` (default `info`), output pretty
//! or JSON (`LOG_FORMAT=json`); pretty output is coloured only on a terminal. Every line logged inside
//! a request carries its `trace_id`, read from the request's current trace context when the line is
//! formatted (`palisade::trace::fmt`: no span per request to pay for). Neither the kit nor palisade
//! records request headers, so `Authorization` and cookies never reach the logs.
//!
//! [`prometheus`] installs the `metrics` recorder once per process (`shop all` runs every service in
//! one process and they share it), with [`palisade::metrics::DURATION_BUCKETS`] for the duration
//! histograms and [`pool_metrics::WAIT_BUCKETS`] for the database pool's waits.

use std::io::IsTerminal;
use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use palisade::metrics::DURATION_BUCKETS;
use palisade::trace::fmt::{JsonLines, TraceIdFields};
use tracing_subscriber::EnvFilter;

use crate::db::pool_metrics;

/// Installs the global subscriber (a second call does nothing).
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    // Colours only for a person at a terminal (and not with `NO_COLOR`): escape codes in a log file
    // or pipe are noise, and styling every span field costs CPU on each request.
    let ansi = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi);
    let _already_set = if json {
        builder.event_format(JsonLines).try_init()
    } else {
        builder.fmt_fields(TraceIdFields::new()).try_init()
    };
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
