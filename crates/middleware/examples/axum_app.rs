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
//!                                                             # 502s, then 503: the breaker opened
//! curl localhost:3000/metrics                                 # Prometheus text
//! ```

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
use palisade::Deadline;
use palisade::metrics::DURATION_BUCKETS;
use palisade::problem::{Problem, problem_for_error};
use palisade::retry::RetryBody;
use palisade::stack::{ClientStack, ClientStackService, ServerStack};
use palisade::timeout::error::DeadlineExceeded;
use palisade::trace::TraceContext;
use tower::{Layer, ServiceExt};

type Prices = ClientStackService<Client<HttpConnector, RetryBody<Full<Bytes>>>>;

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
async fn product(State(prices): State<Prices>, trace: TraceContext, req: Request) -> Response {
    let trace_id = trace.trace_id();
    let query = req.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
    let id = req.uri().path().rsplit('/').next().unwrap_or("0").to_owned();
    let mut out = http::Request::get(format!("http://127.0.0.1:3001/v1/prices/{id}{query}"))
        .body(Full::default())
        .expect("valid request");
    if let Some(deadline) = Deadline::of(&req) {
        deadline.apply(&mut out); // the downstream gets what is left of our caller's budget
    }
    let problem = match prices.oneshot(out).await {
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

#[tokio::main]
async fn main() -> Result<(), palisade::BoxError> {
    tracing_subscriber::fmt().with_max_level(tracing::Level::INFO).init();
    let prometheus = PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Suffix("_request_duration_seconds".into()),
            DURATION_BUCKETS,
        )?
        .install_recorder()?;

    let prices_app = Router::new()
        .route("/v1/prices/{id}", get(price))
        .layer(ServerStack::builder().name("prices").build()?);

    let client = Client::builder(TokioExecutor::new()).build_http();
    let prices: Prices =
        ClientStack::builder("prices").attempt_timeout(Duration::from_secs(1)).build()?.layer(client);
    let storefront = Router::new()
        .route("/v1/products/{id}", get(product))
        .with_state(prices)
        .layer(ServerStack::builder().name("storefront").timeout(Duration::from_secs(3)).build()?)
        .route("/metrics", get(move || std::future::ready(prometheus.render())));

    let prices_listener = tokio::net::TcpListener::bind("127.0.0.1:3001").await?;
    let storefront_listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("storefront: http://127.0.0.1:3000/v1/products/7  metrics: http://127.0.0.1:3000/metrics");
    tokio::try_join!(axum::serve(prices_listener, prices_app), axum::serve(storefront_listener, storefront))?;
    Ok(())
}
