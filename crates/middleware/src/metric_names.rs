//! The fixed names of every metric palisade records, and of their labels.
//!
//! Names follow the OpenTelemetry HTTP semantic conventions translated to Prometheus (dots become
//! underscores, units become suffixes). Metrics are recorded through the [`metrics`] facade: install any
//! recorder (for example `metrics-exporter-prometheus`) to export them; without one, recording is a no-op.
//!
//! | name | type | labels | recorded by |
//! |---|---|---|---|
//! | `http_server_request_duration_seconds` | histogram | `http_request_method`, `http_route`, `http_response_status_code` | [`metrics`](crate::metrics) server side |
//! | `http_server_active_requests` | gauge | `http_request_method`, `http_route` | [`metrics`](crate::metrics) server side |
//! | `http_client_request_duration_seconds` | histogram | `http_request_method`, `server_address`, `http_response_status_code` | [`metrics`](crate::metrics) client side |
//! | `http_client_active_requests` | gauge | `http_request_method`, `server_address` | [`metrics`](crate::metrics) client side |
//! | `palisade_circuit_breaker_state` | gauge | `name`, `state` | circuit breaker: 1 for the current state, 0 for the others |
//! | `palisade_circuit_breaker_rejected_calls_total` | counter | `name` | circuit breaker: calls failed fast while open |
//! | `palisade_circuit_breaker_transitions_total` | counter | `name`, `state` (the state entered) | circuit breaker |
//! | `palisade_retry_retries_total` | counter | `name` | retry: attempts after the first |
//! | `palisade_retry_budget_exhausted_total` | counter | `name` | retry: retries refused by the budget |
//! | `palisade_timeout_total` | counter | `name`, `kind` (`timeout` or `deadline`) | timeout |
//! | `palisade_load_shed_rejected_total` | counter | `name` | load shedding: requests refused over the limit |
//!
//! `http_response_status_code` is the numeric status, or `error` when there was no response. An
//! unmatched route is labelled [`UNMATCHED_ROUTE`], never with the raw path, so series stay bounded by
//! the number of route templates. Extension methods are labelled [`OTHER`].

/// Server request duration histogram, in seconds.
pub const HTTP_SERVER_REQUEST_DURATION: &str = "http_server_request_duration_seconds";
/// Server in-flight requests gauge.
pub const HTTP_SERVER_ACTIVE_REQUESTS: &str = "http_server_active_requests";
/// Client request duration histogram, in seconds.
pub const HTTP_CLIENT_REQUEST_DURATION: &str = "http_client_request_duration_seconds";
/// Client in-flight requests gauge.
pub const HTTP_CLIENT_ACTIVE_REQUESTS: &str = "http_client_active_requests";
/// Circuit breaker state gauge.
pub const CIRCUIT_BREAKER_STATE: &str = "palisade_circuit_breaker_state";
/// Calls rejected by an open circuit.
pub const CIRCUIT_BREAKER_REJECTED_CALLS: &str = "palisade_circuit_breaker_rejected_calls_total";
/// Circuit breaker state transitions.
pub const CIRCUIT_BREAKER_TRANSITIONS: &str = "palisade_circuit_breaker_transitions_total";
/// Retries (attempts after the first).
pub const RETRY_RETRIES: &str = "palisade_retry_retries_total";
/// Retries refused because the retry budget was exhausted.
pub const RETRY_BUDGET_EXHAUSTED: &str = "palisade_retry_budget_exhausted_total";
/// Calls that timed out or hit their deadline.
pub const TIMEOUTS: &str = "palisade_timeout_total";

/// Requests refused by the load shedder.
pub const LOAD_SHED_REJECTED: &str = "palisade_load_shed_rejected_total";

/// Label: HTTP method.
pub const LABEL_METHOD: &str = "http_request_method";
/// Label: route template.
pub const LABEL_ROUTE: &str = "http_route";
/// Label: response status code.
pub const LABEL_STATUS: &str = "http_response_status_code";
/// Label: downstream peer (host or host:port).
pub const LABEL_SERVER_ADDRESS: &str = "server_address";
/// Label: the name given to a layer instance.
pub const LABEL_NAME: &str = "name";
/// Label: breaker state.
pub const LABEL_STATE: &str = "state";
/// Label: timeout kind.
pub const LABEL_KIND: &str = "kind";

/// Route label of requests that matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";
/// Status label of calls that ended in an error instead of a response.
pub const ERROR_STATUS: &str = "error";
/// Bounded catch-all label value (OpenTelemetry's `_OTHER`): extension HTTP methods, and route or
/// peer labels past the metrics layer's cardinality cap.
pub const OTHER: &str = "_OTHER";
