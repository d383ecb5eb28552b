//! What `/ops/state` reads from the process's Prometheus recorder: its text rendering, parsed and
//! summed per route and per downstream. Totals are cumulative; the page turns two snapshots into
//! rates and percentiles (so the server keeps no state per viewer).

use std::collections::{BTreeMap, BTreeSet};

use palisade::metric_names as names;
use serde::Serialize;

/// One sample line of the text format: `name{label="value",…} value`.
#[derive(Debug, PartialEq)]
pub(crate) struct Sample<'a> {
    pub(crate) name: &'a str,
    pub(crate) labels: Vec<(&'a str, String)>,
    pub(crate) value: f64,
}

impl Sample<'_> {
    fn label(&self, key: &str) -> Option<&str> {
        self.labels.iter().find(|(k, _)| *k == key).map(|(_, v)| v.as_str())
    }
}

/// The samples of a text-format rendering; lines that do not parse are skipped.
pub(crate) fn parse(text: &str) -> Vec<Sample<'_>> {
    text.lines().filter_map(|line| parse_line(line.trim())).collect()
}

fn parse_line(line: &str) -> Option<Sample<'_>> {
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        rest = inner;
        loop {
            rest = rest.trim_start_matches([',', ' ']);
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let (key, after) = rest.split_once("=\"")?;
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                let (i, c) = chars.next()?;
                match c {
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    '"' => break i,
                    c => value.push(c),
                }
            };
            labels.push((key.trim(), value));
            rest = &after[end + 1..];
        }
    }
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Sample { name, labels, value })
}

/// Request count, errors and the duration histogram of one route or downstream, since start.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Traffic {
    /// Requests answered (or failed) so far.
    pub requests: u64,
    /// Of those, errors: a 5xx, no response at all, and (downstreams) 429.
    pub errors: u64,
    /// Sum of their durations, in seconds.
    pub duration_sum_seconds: f64,
    /// Cumulative histogram buckets: `[upper bound in seconds, requests at most that long]`,
    /// ascending; the `+Inf` bucket is `requests`.
    pub buckets: Vec<(f64, u64)>,
}

impl Traffic {
    fn add(&mut self, sample: &Sample<'_>, suffix: &str, error: bool) {
        let count = as_count(sample.value);
        match suffix {
            "_count" => {
                self.requests = self.requests.saturating_add(count);
                if error {
                    self.errors = self.errors.saturating_add(count);
                }
            }
            "_sum" => self.duration_sum_seconds += sample.value,
            _ => {
                let Some(le) = sample.label("le").and_then(|le| le.parse::<f64>().ok()) else { return };
                if !le.is_finite() {
                    return;
                }
                if let Some((_, n)) =
                    self.buckets.iter_mut().find(|(bound, _)| (*bound - le).abs() < f64::EPSILON)
                {
                    *n = n.saturating_add(count);
                } else {
                    self.buckets.push((le, count));
                    self.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
                }
            }
        }
    }
}

/// A route's traffic on this service's server.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RouteTraffic {
    /// HTTP method.
    pub method: String,
    /// Route template (`/v1/items/{id}`).
    pub route: String,
    /// Its counts.
    #[serde(flatten)]
    pub traffic: Traffic,
}

/// A downstream's traffic and the resilience layers' counts for it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DownstreamTraffic {
    /// The downstream's name (its breaker's, retry's and timeout's).
    pub name: String,
    /// Its counts (every attempt, over every method).
    #[serde(flatten)]
    pub traffic: Traffic,
    /// Attempts after the first.
    pub retries: u64,
    /// Retries the retry budget refused.
    pub retry_budget_exhausted: u64,
    /// Attempts that timed out or ran out of deadline.
    pub timeouts: u64,
    /// Calls its breaker failed fast.
    pub rejected_calls: u64,
}

/// This service's server side, beyond its routes.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ServerCounts {
    /// Requests being served now (over its routes).
    pub in_flight: u64,
    /// Requests the load shedder refused so far.
    pub load_shed_rejected: u64,
    /// Requests that hit their timeout or deadline so far.
    pub timeouts: u64,
}

/// The part of the recorder that concerns one service.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Recorded {
    /// Server side counts.
    pub server: ServerCounts,
    /// Per route, sorted by route then method.
    pub routes: Vec<RouteTraffic>,
    /// Per downstream, sorted by name.
    pub downstreams: Vec<DownstreamTraffic>,
    /// Rejected calls per breaker name (every breaker, client and server side).
    #[serde(skip)]
    pub rejected: BTreeMap<String, u64>,
}

fn as_count(value: f64) -> u64 {
    if value.is_finite() && value > 0.0 {
        // Counters are whole numbers; the cast saturates.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let count = value.round() as u64;
        count
    } else {
        0
    }
}

/// Whether `status` (a label value) is an error for the server (`5xx`, no response).
fn server_error(status: Option<&str>) -> bool {
    matches!(status, Some(s) if s.starts_with('5') || s == names::ERROR_STATUS)
}

/// Whether `status` is an error of a downstream (also `429`: it refused us).
fn client_error(status: Option<&str>) -> bool {
    server_error(status) || status == Some("429")
}

/// Picks this service's series out of `text`: routes among `routes` (every route when empty), the
/// downstreams named in `downstreams`, and the shedder and timeout named `service`.
pub(crate) fn collect(
    text: &str,
    service: &str,
    routes: &BTreeSet<String>,
    downstreams: &BTreeSet<String>,
) -> Recorded {
    let mut out = Recorded::default();
    let mut by_route: BTreeMap<(String, String), Traffic> = BTreeMap::new();
    let mut by_peer: BTreeMap<String, DownstreamTraffic> =
        downstreams.iter().map(|name| (name.clone(), DownstreamTraffic::default())).collect();
    let ours = |route: &str| routes.is_empty() || routes.contains(route);
    for sample in parse(text) {
        let name = sample.name;
        if let Some(suffix) = histogram_suffix(name, names::HTTP_SERVER_REQUEST_DURATION) {
            let (Some(method), Some(route)) =
                (sample.label(names::LABEL_METHOD), sample.label(names::LABEL_ROUTE))
            else {
                continue;
            };
            if ours(route) {
                let error = server_error(sample.label(names::LABEL_STATUS));
                by_route
                    .entry((route.to_owned(), method.to_owned()))
                    .or_default()
                    .add(&sample, suffix, error);
            }
        } else if let Some(suffix) = histogram_suffix(name, names::HTTP_CLIENT_REQUEST_DURATION) {
            if let Some(peer) = sample.label(names::LABEL_SERVER_ADDRESS).and_then(|p| by_peer.get_mut(p)) {
                let error = client_error(sample.label(names::LABEL_STATUS));
                peer.traffic.add(&sample, suffix, error);
            }
        } else if name == names::HTTP_SERVER_ACTIVE_REQUESTS {
            if sample.label(names::LABEL_ROUTE).is_some_and(ours) {
                out.server.in_flight = out.server.in_flight.saturating_add(as_count(sample.value));
            }
        } else if let Some(layer) = sample.label(names::LABEL_NAME) {
            let count = as_count(sample.value);
            if name == names::CIRCUIT_BREAKER_REJECTED_CALLS {
                *out.rejected.entry(layer.to_owned()).or_default() += count;
            } else if name == names::LOAD_SHED_REJECTED && layer == service {
                out.server.load_shed_rejected = out.server.load_shed_rejected.saturating_add(count);
            } else if name == names::TIMEOUTS && layer == service {
                out.server.timeouts = out.server.timeouts.saturating_add(count);
            } else if let Some(peer) = by_peer.get_mut(layer) {
                let field = match name {
                    names::RETRY_RETRIES => &mut peer.retries,
                    names::RETRY_BUDGET_EXHAUSTED => &mut peer.retry_budget_exhausted,
                    names::TIMEOUTS => &mut peer.timeouts,
                    _ => continue,
                };
                *field = field.saturating_add(count);
            }
        }
    }
    out.routes = by_route
        .into_iter()
        .map(|((route, method), traffic)| RouteTraffic { method, route, traffic })
        .collect();
    out.downstreams = by_peer
        .into_iter()
        .map(|(name, mut peer)| {
            peer.rejected_calls = out.rejected.get(&name).copied().unwrap_or(0);
            peer.name = name;
            peer
        })
        .collect();
    out
}

/// `_bucket`, `_sum` or `_count` when `name` is one of histogram `base`'s series.
fn histogram_suffix<'a>(name: &'a str, base: &str) -> Option<&'a str> {
    let suffix = name.strip_prefix(base)?;
    matches!(suffix, "_bucket" | "_sum" | "_count").then_some(suffix)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::{collect, parse};

    const TEXT: &str = r#"# TYPE http_server_request_duration_seconds histogram
http_server_request_duration_seconds_bucket{http_request_method="GET",http_route="/v1/items",http_response_status_code="200",le="0.01"} 3
http_server_request_duration_seconds_bucket{http_request_method="GET",http_route="/v1/items",http_response_status_code="200",le="+Inf"} 4
http_server_request_duration_seconds_sum{http_request_method="GET",http_route="/v1/items",http_response_status_code="200"} 0.5
http_server_request_duration_seconds_count{http_request_method="GET",http_route="/v1/items",http_response_status_code="200"} 4
http_server_request_duration_seconds_bucket{http_request_method="GET",http_route="/v1/items",http_response_status_code="503",le="0.01"} 1
http_server_request_duration_seconds_count{http_request_method="GET",http_route="/v1/items",http_response_status_code="503"} 1
http_server_request_duration_seconds_count{http_request_method="GET",http_route="/v1/other",http_response_status_code="200"} 7
http_client_request_duration_seconds_count{http_request_method="POST",server_address="events-notifications",http_response_status_code="error"} 2
palisade_retry_retries_total{name="events-notifications"} 5
palisade_circuit_breaker_rejected_calls_total{name="events-notifications"} 9
palisade_load_shed_rejected_total{name="catalog"} 11
palisade_load_shed_rejected_total{name="users"} 13
odd{label="a \"quoted\" \\ value"} 1
"#;

    #[test]
    fn labels_with_escapes_parse() {
        let samples = parse(TEXT);
        let odd = samples.iter().find(|s| s.name == "odd").unwrap();
        assert_eq!(odd.labels, vec![("label", r#"a "quoted" \ value"#.to_owned())]);
    }

    #[test]
    fn series_are_summed_per_route_and_downstream_and_filtered_to_the_service() {
        let routes = BTreeSet::from(["/v1/items".to_owned()]);
        let peers = BTreeSet::from(["events-notifications".to_owned(), "idle".to_owned()]);
        let recorded = collect(TEXT, "catalog", &routes, &peers);
        assert_eq!(recorded.routes.len(), 1);
        let items = &recorded.routes[0].traffic;
        assert_eq!((items.requests, items.errors, items.buckets.clone()), (5, 1, vec![(0.01, 4)]));
        assert_eq!(recorded.server.load_shed_rejected, 11);
        let events = &recorded.downstreams[0];
        assert_eq!((events.traffic.requests, events.traffic.errors), (2, 2));
        assert_eq!((events.retries, events.rejected_calls), (5, 9));
        assert_eq!(recorded.downstreams[1].name, "idle");
    }
}
