//! Metric handles resolved when they are first used with a recorder installed, not when a layer is
//! built.
//!
//! A `metrics` handle is bound to the recorder that was current when it was registered. Layers are
//! usually built before `main` installs its Prometheus recorder (a `static`, a `OnceLock`, a preset
//! built in a library), so handles registered at build time went to the no-op recorder and their series
//! were silently lost. A [`Lazy`] handle instead:
//!
//! - registers at once if a recorder is current when it is made (global, or the thread's local one
//!   as in tests), so a layer built inside `metrics::with_local_recorder` keeps that recorder;
//! - otherwise registers on the first use that finds a recorder, and until then records nothing (as
//!   the no-op recorder would) while checking again on every use.
//!
//! Once registered, a use is one atomic load (`OnceLock::get`) and the handle's own work. Before, it
//! is a thread-local read, an atomic load of the global recorder and a size check: the cost of
//! metrics being off.
//!
//! `metrics` 0.24 has no call that says whether a recorder is installed: `with_recorder` hands out its
//! zero-sized `NoopRecorder` when none is. So a zero-sized recorder is taken for "none". A real
//! recorder of size zero (one that forwards to statics) still receives every value, but its handles
//! are registered anew on every use.
//!
//! Use ([`LazyCounter`], [`LazyGauge`], [`LazyHistogram`]):
//!
//! ```text
//! let rejected = LazyCounter::new(CIRCUIT_BREAKER_REJECTED_CALLS, vec![Label::new(LABEL_NAME, name.clone())]);
//! rejected.get().increment(1);
//! ```
//!
//! A gauge moved up then down by the same call must move both ways on the same handle: use
//! [`Lazy::try_get`] for the first move and skip the second when it returned `None`.

use std::sync::OnceLock;

use metrics::{
    Counter, Gauge, Histogram, IntoLabels, Key, KeyName, Level, Metadata, Recorder, SharedString, Unit,
};

static METADATA: Metadata<'static> = Metadata::new("palisade", Level::INFO, Some("palisade"));

/// A kind of `metrics` handle.
pub(crate) trait Handle: Sized + Send + Sync + 'static {
    /// A handle that records nothing.
    fn noop() -> &'static Self;
    fn register(recorder: &dyn Recorder, key: &Key, description: Option<&Description>) -> Self;
}

/// A unit and help text, sent to the recorder when the handle is registered.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Description {
    pub(crate) unit: Unit,
    pub(crate) help: &'static str,
}

impl Description {
    fn parts(&self, key: &Key) -> (KeyName, Option<Unit>, SharedString) {
        (KeyName::from(key.name().to_owned()), Some(self.unit), SharedString::const_str(self.help))
    }
}

macro_rules! handle {
    ($ty:ty, $register:ident, $describe:ident) => {
        impl Handle for $ty {
            fn noop() -> &'static Self {
                static NOOP: $ty = <$ty>::noop();
                &NOOP
            }

            fn register(recorder: &dyn Recorder, key: &Key, description: Option<&Description>) -> Self {
                if let Some(description) = description {
                    let (name, unit, help) = description.parts(key);
                    recorder.$describe(name, unit, help);
                }
                recorder.$register(key, &METADATA)
            }
        }
    };
}

handle!(Counter, register_counter, describe_counter);
handle!(Gauge, register_gauge, describe_gauge);
handle!(Histogram, register_histogram, describe_histogram);

/// Whether `recorder` (what `metrics::with_recorder` hands out) is a real one, not the no-op.
fn is_installed(recorder: &dyn Recorder) -> bool {
    size_of_val(recorder) != 0
}

/// The handle in `slot`, registering it under `key()` if it is empty and a recorder is current;
/// `None` when none is. For handles kept in caches that build their keys on demand; [`Lazy`] keeps
/// its key.
#[inline]
pub(crate) fn resolve<'a, M: Handle>(
    slot: &'a OnceLock<M>,
    key: impl FnOnce() -> Key,
    description: Option<&Description>,
) -> Option<&'a M> {
    match slot.get() {
        Some(handle) => Some(handle),
        None => resolve_slow(slot, key, description),
    }
}

#[cold]
fn resolve_slow<'a, M: Handle>(
    slot: &'a OnceLock<M>,
    key: impl FnOnce() -> Key,
    description: Option<&Description>,
) -> Option<&'a M> {
    metrics::with_recorder(|recorder| {
        is_installed(recorder).then(|| slot.get_or_init(|| M::register(recorder, &key(), description)))
    })
}

/// A metric handle registered on first use with a recorder installed (see the [module docs](self)).
#[derive(Debug)]
pub(crate) struct Lazy<M> {
    key: Key,
    description: Option<Description>,
    handle: OnceLock<M>,
}

/// A counter registered on first use with a recorder installed.
pub(crate) type LazyCounter = Lazy<Counter>;
/// A gauge registered on first use with a recorder installed.
pub(crate) type LazyGauge = Lazy<Gauge>;
/// A histogram registered on first use with a recorder installed.
#[allow(dead_code)] // kept beside its siblings for the layers that need one
pub(crate) type LazyHistogram = Lazy<Histogram>;

impl<M: Handle> Lazy<M> {
    /// The handle of metric `name` with `labels`; registered at once if a recorder is current.
    pub(crate) fn new(name: &'static str, labels: impl IntoLabels) -> Self {
        Self::with_key(Key::from_parts(name, labels), None)
    }

    /// The same, with a unit and help text sent to the recorder when registered.
    pub(crate) fn described(name: &'static str, labels: impl IntoLabels, description: Description) -> Self {
        Self::with_key(Key::from_parts(name, labels), Some(description))
    }

    fn with_key(key: Key, description: Option<Description>) -> Self {
        let lazy = Self { key, description, handle: OnceLock::new() };
        let _ = lazy.try_get();
        lazy
    }

    /// The handle, or one that records nothing while no recorder is installed.
    #[inline]
    pub(crate) fn get(&self) -> &M {
        self.try_get().unwrap_or_else(|| M::noop())
    }

    /// The handle, or `None` while no recorder is installed.
    #[inline]
    pub(crate) fn try_get(&self) -> Option<&M> {
        resolve(&self.handle, || self.key.clone(), self.description.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    use super::*;

    #[test]
    fn registers_once_a_recorder_is_current_and_keeps_it() {
        let counter = LazyCounter::new("lazy_test_total", &[("name", "a")]);
        counter.get().increment(5); // no recorder: lost, as with the no-op recorder
        assert!(counter.try_get().is_none());

        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || counter.get().increment(1));
        counter.get().increment(1); // outside: still the handle of that recorder
        let values: Vec<_> =
            snapshotter.snapshot().into_vec().into_iter().map(|(k, _, _, v)| (k, v)).collect();
        assert_eq!(values.len(), 1);
        assert_eq!(values[0].0.key().name(), "lazy_test_total");
        assert_eq!(values[0].1, DebugValue::Counter(2));
    }

    #[test]
    fn made_while_a_recorder_is_current_registers_at_once() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let gauge = metrics::with_local_recorder(&recorder, || {
            LazyGauge::described(
                "lazy_test_gauge",
                &[("name", "b")],
                Description { unit: Unit::Count, help: "help" },
            )
        });
        gauge.get().set(3.0);
        let snapshot = snapshotter.snapshot().into_vec();
        assert_eq!(snapshot.len(), 1);
        assert_eq!(snapshot[0].1, Some(Unit::Count));
        assert_eq!(snapshot[0].3, DebugValue::Gauge(3.0.into()));
    }
}
