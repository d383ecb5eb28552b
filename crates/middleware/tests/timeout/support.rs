use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use metrics_util::debugging::{DebugValue, Snapshotter};

/// Polls `fut` once from the current task, so that timers it creates wake this task.
pub(crate) async fn poll_once<F: Future>(fut: Pin<&mut F>) -> Poll<F::Output> {
    let mut fut = Some(fut);
    std::future::poll_fn(|cx| Poll::Ready(fut.take().expect("polled once").poll(cx))).await
}

/// Takes one snapshot (which resets the recorder's counters to zero) and returns the value of counter
/// `name` for each of `label_sets` (each exact, in any order), 0 for a series never recorded.
pub(crate) fn take_counters(
    snapshotter: &Snapshotter,
    name: &str,
    label_sets: &[&[(&str, &str)]],
) -> Vec<u64> {
    let sorted = |labels: &mut Vec<(String, String)>| labels.sort();
    let series: Vec<(Vec<(String, String)>, u64)> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| {
            let key = key.key();
            let mut labels: Vec<_> =
                key.labels().map(|l| (l.key().to_owned(), l.value().to_owned())).collect();
            sorted(&mut labels);
            match value {
                DebugValue::Counter(n) if key.name() == name => Some((labels, n)),
                _ => None,
            }
        })
        .collect();
    label_sets
        .iter()
        .map(|set| {
            let mut want: Vec<_> = set.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
            sorted(&mut want);
            series.iter().find(|(labels, _)| *labels == want).map_or(0, |(_, n)| *n)
        })
        .collect()
}
