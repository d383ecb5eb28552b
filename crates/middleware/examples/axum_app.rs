//! What a user copies: an axum app with palisade in front of its routes and of its call to another
//! service.
//!
//! Two services run in this one process: `prices` (port 3001), a downstream that is slow or failing on
//! demand, and `storefront` (port 3000), whose `GET /v1/products/{id}` calls `prices` through the client
//! preset. Run it with `cargo run -p palisade --example axum_app --features axum`, then:
//!
//! ```text
//! curl -i localhost:3000/v1/products/7                        # 200, traceparent echoed
//! curl -i -H 'x-request-timeout-ms: 50' localhost:3000/v1/products/7?slow=1   # 504 problem+json
//! for i in $(seq 30); do curl -s -o /dev/null -w '%{http_code} ' localhost:3000/v1/products/7?fail=1; done
//!                                                             # 502s, then 503: the client breaker opened
//! curl -i localhost:3001/v1/prices/7                          # prices itself is healthy all along
//! curl -i localhost:3000/v1/products/7                        # 503 fast until the open interval ends, then 200
//! curl localhost:3000/metrics                                 # Prometheus text
//! ```
//!
//! Only the storefront's *client* side has an error-rate breaker, one for the `prices` downstream: the
//! server presets shed load instead, so a run of failures never makes a server refuse healthy
//! requests, and once `prices` answers again the storefront recovers after one open interval.

use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use metrics_exporter_prometheus::PrometheusBuilder;
use palisade::circuit_breaker::CircuitBreakerLayer;
use palisade::metrics::DURATION_BUCKETS;
use palisade::problem::{Problem, problem_for_error};
use palisade::retry::RetryBody;
use palisade::stack::{ClientStack, ClientStackService, ServerStack};
use palisade::timeout::error::DeadlineExceeded;
use palisade::trace::TraceContext;
use tower::{Layer, ServiceExt};

type Prices = ClientStackService<Client<HttpConnector, RetryBody<Full<Bytes>>>>;

/// The storefront's state: its client for `prices`, and where `prices` listens.
#[derive(Clone)]
struct Storefront {
    prices: Prices,
    prices_base: String,
}

/// The downstream: answers a price, or fails (`?fail=1`) or stalls (`?slow=1`) when asked to.
async fn price(Path(id): Path<u32>, req: Request) -> Response {
    let query = req.uri().query().unwrap_or_default();
    if query.contains("fail") {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    if query.contains("slow") {
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let body = format!(r#"{{"id":{id},"amount":1999,"currency":"EUR"}}"#);
    ([(http::header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The storefront handler: calls `prices` with the caller's deadline; the client stack adds trace
/// context, retries, breaker, metrics and the per-attempt timeout.
async fn product(State(state): State<Storefront>, trace: TraceContext, req: Request) -> Response {
    let trace_id = trace.trace_id();
    let query = req.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
    let id = req.uri().path().rsplit('/').next().unwrap_or("0").to_owned();
    // No deadline copying: the client stack gives the call what is left of our caller's budget.
    let out = http::Request::get(format!("{}/v1/prices/{id}{query}", state.prices_base))
        .body(Full::default())
        .expect("valid request");
    let problem = match state.prices.oneshot(out).await {
        Ok(res) if res.status().is_success() => {
            let body =
                res.into_body().collect().await.map(http_body_util::Collected::to_bytes).unwrap_or_default();
            return ([(http::header::CONTENT_TYPE, "application/json")], body).into_response();
        }
        // The downstream gave up on our deadline: so do we. Any other failure is a bad gateway.
        Ok(res) if res.status() == StatusCode::GATEWAY_TIMEOUT => problem_for_error(&DeadlineExceeded::new()),
        Ok(res) => {
            Problem::new(StatusCode::BAD_GATEWAY).with_detail(format!("prices answered {}", res.status()))
        }
        // An open circuit, a deadline, a transport error: the same mapping the server stack uses.
        Err(err) => problem_for_error(&*err),
    };
    problem.with_trace_id(trace_id).into_response()
}

/// The downstream service.
fn prices_app() -> Result<Router, palisade::BoxError> {
    Ok(Router::new()
        .route("/v1/prices/{id}", get(price))
        .layer(ServerStack::builder().name("prices").build()?))
}

/// The storefront, calling `prices` at `prices_base` with a breaker that stays open for `open_interval`.
fn storefront_app(prices_base: String, open_interval: Duration) -> Result<Router, palisade::BoxError> {
    let client = Client::builder(TokioExecutor::new()).build_http();
    let breaker = CircuitBreakerLayer::builder().name("prices").open_interval(open_interval).build()?;
    let prices: Prices = ClientStack::builder("prices")
        .attempt_timeout(Duration::from_secs(1))
        .breaker(breaker)
        .build()?
        .layer(client);
    Ok(Router::new()
        .route("/v1/products/{id}", get(product))
        .with_state(Storefront { prices, prices_base })
        .layer(ServerStack::builder().name("storefront").timeout(Duration::from_secs(3)).build()?))
}

#[tokio::main]
async fn main() -> Result<(), palisade::BoxError> {
    tracing_subscriber::fmt().with_max_level(tracing::Level::INFO).init();
    let prometheus = PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Suffix("_request_duration_seconds".into()),
            DURATION_BUCKETS,
        )?
        .install_recorder()?;

    let storefront = storefront_app("http://127.0.0.1:3001".to_owned(), Duration::from_secs(30))?
        // After the stack: metrics are never shed.
        .route("/metrics", get(move || std::future::ready(prometheus.render())));
    let prices_listener = tokio::net::TcpListener::bind("127.0.0.1:3001").await?;
    let storefront_listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("storefront: http://127.0.0.1:3000/v1/products/7  metrics: http://127.0.0.1:3000/metrics");
    tokio::try_join!(
        axum::serve(prices_listener, prices_app()?),
        axum::serve(storefront_listener, storefront)
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn serve(app: Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        base
    }

    async fn status(http: &Client<HttpConnector, Full<Bytes>>, url: String) -> StatusCode {
        http.request(http::Request::get(url).body(Full::default()).unwrap()).await.unwrap().status()
    }

    /// The cascade this example used to show: three breakers in series (both server presets had one)
    /// opened on `?fail=1`, and a healthy request kept failing after `prices` had recovered.
    #[tokio::test]
    async fn after_a_run_of_failures_the_downstream_and_then_the_storefront_recover() {
        let prices = serve(prices_app().unwrap()).await;
        let open_interval = Duration::from_secs(1);
        let storefront = serve(storefront_app(prices.clone(), open_interval).unwrap()).await;
        let http: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();

        let mut answers = Vec::new();
        while answers.last() != Some(&StatusCode::SERVICE_UNAVAILABLE) {
            assert!(answers.len() < 40, "the client breaker never opened: {answers:?}");
            answers.push(status(&http, format!("{storefront}/v1/products/7?fail=1")).await);
        }
        assert!(answers[..answers.len() - 1].iter().all(|s| *s == StatusCode::BAD_GATEWAY), "{answers:?}");
        // The downstream itself never stopped serving healthy requests.
        assert_eq!(status(&http, format!("{prices}/v1/prices/7")).await, StatusCode::OK);
        // While the client breaker is open the storefront fails fast; one interval later it recovers.
        assert_eq!(
            status(&http, format!("{storefront}/v1/products/7")).await,
            StatusCode::SERVICE_UNAVAILABLE
        );
        tokio::time::sleep(open_interval + Duration::from_millis(200)).await;
        for _ in 0..5 {
            assert_eq!(status(&http, format!("{storefront}/v1/products/7")).await, StatusCode::OK);
        }
    }
}
