//! Exact metric assertions with a local `DebuggingRecorder`.

use std::{collections::BTreeMap, future::Future};

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

/// A local recorder and its snapshotter. Snapshots *drain*: counters and gauges are swapped to zero and
/// histogram values cleared, so each snapshot holds what happened since the previous one.
pub(crate) struct Recorder {
    recorder: DebuggingRecorder,
    snapshotter: Snapshotter,
}

impl Recorder {
    pub(crate) fn new() -> Self {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        Self { recorder, snapshotter }
    }

    /// Runs `f` with this recorder as the thread's current recorder.
    pub(crate) fn with<T>(&self, f: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(&self.recorder, f)
    }

    /// Drives `fut` to completion on a paused current-thread runtime, with this recorder current.
    pub(crate) fn run<T>(&self, fut: impl Future<Output = T>) -> T {
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        self.with(|| runtime.block_on(fut))
    }

    /// Every series since the last snapshot, keyed `name{label="value",...}` in label order.
    pub(crate) fn snapshot(&self) -> BTreeMap<String, Value> {
        self.snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| {
                let key = key.key();
                let labels: Vec<String> =
                    key.labels().map(|l| format!("{}=\"{}\"", l.key(), l.value())).collect();
                let value = match value {
                    DebugValue::Counter(c) => Value::Counter(c),
                    DebugValue::Gauge(g) => Value::Gauge(g.into_inner()),
                    DebugValue::Histogram(h) => Value::Histogram(h.into_iter().map(|v| v.0).collect()),
                };
                (format!("{}{{{}}}", key.name(), labels.join(",")), value)
            })
            .collect()
    }
}

/// A recorded value, comparable with `assert_eq!`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    #[allow(dead_code)]
    Counter(u64),
    Gauge(f64),
    Histogram(Vec<f64>),
}

/// Builds the expected map from `(series, value)` pairs.
pub(crate) fn series<const N: usize>(entries: [(&str, Value); N]) -> BTreeMap<String, Value> {
    entries.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}
