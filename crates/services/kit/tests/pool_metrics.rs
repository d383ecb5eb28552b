//! A service's `/metrics` shows its database pool: connections by state, the limit, probe waits.

use axum::Router;
use bytes::Bytes;
use figment::Figment;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use kit::config::Settings;
use kit::db::{Migrations, temp_sqlite_url};
use kit::server::Shutdown;
use kit::service::{Context, RoutesFuture, Service};
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;

static NO_MIGRATIONS: Migrations = Migrations { sqlite: Migrator::DEFAULT, postgres: Migrator::DEFAULT };

static POOLED: Service = Service {
    name: "pooled",
    default_port: 0,
    migrations: &NO_MIGRATIONS,
    openapi: || utoipa::openapi::OpenApiBuilder::new().build(),
    routes,
    config_keys: Vec::new,
    calls: &[],
};

fn routes(_: Context) -> RoutesFuture {
    Box::pin(async { Ok(Router::new()) })
}

/// The value of the series whose line starts with `series` (name and labels as rendered).
fn value(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test]
async fn metrics_show_the_services_pool() {
    let settings = Settings::from_figment(
        Figment::new()
            .merge(("pooled.database_url", temp_sqlite_url("pool-metrics-scrape")))
            .merge(("pooled.db_max_connections", 3)),
    );
    let app = POOLED.app(&settings).await.unwrap();
    let db = app.health.db().clone();
    let server = app.serve_on(TcpListener::bind("127.0.0.1:0").await.unwrap());
    let base = format!("http://{}", server.local_addr());
    let (trigger, shutdown) = Shutdown::manual();
    let running = tokio::spawn(server.run(shutdown));
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let get = |path: &'static str| {
        let (client, uri) = (client.clone(), format!("{base}{path}"));
        async move {
            let res = client.get(uri.parse().unwrap()).await.unwrap();
            assert!(res.status().is_success(), "{path}: {}", res.status());
            String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
        }
    };
    // Readiness uses the pool; then one probe, as the sampler makes every few seconds.
    for _ in 0..3 {
        get("/readyz").await;
    }
    kit::db::pool_metrics::probe("pooled", &db).await;

    let metrics = get("/metrics").await;
    for pool in ["read", "write"] {
        let series =
            |name: &str, extra: &str| format!(r#"{name}{{service="pooled",pool_name="{pool}"{extra}}}"#);
        let idle = value(&metrics, &series("db_client_connection_count", r#",state="idle""#));
        let used = value(&metrics, &series("db_client_connection_count", r#",state="used""#));
        assert!(idle.is_some() && used.is_some(), "{pool}: {metrics}");
        assert!(idle.unwrap() + used.unwrap() >= 1.0, "the {pool} pool has a connection open: {metrics}");
        // A histogram with buckets, not a summary.
        assert_eq!(
            value(&metrics, &series("db_client_connection_wait_time_seconds_count", "")),
            Some(1.0),
            "{metrics}"
        );
        assert!(
            metrics.contains(&series("db_client_connection_wait_time_seconds_bucket", r#",le="0.001""#)),
            "{metrics}"
        );
    }
    // Readers: `db_max_connections`; writers queue for one.
    assert_eq!(
        value(&metrics, r#"db_client_connection_max{service="pooled",pool_name="read"}"#),
        Some(3.0),
        "{metrics}"
    );
    assert_eq!(
        value(&metrics, r#"db_client_connection_max{service="pooled",pool_name="write"}"#),
        Some(1.0),
        "{metrics}"
    );

    trigger.trigger();
    running.await.unwrap().unwrap();
}
