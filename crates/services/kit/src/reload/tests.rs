//! Reloads of a real service (`Service::app`, served on a loopback port, calling a downstream on
//! another): what applies to the next requests, what in-flight requests keep, what is refused, and
//! what waits for a restart. The trigger is [`Reloader::reload_now`] or the file watch; SIGHUP is
//! tested on the `shop` binary (a signal reaches the whole test process).

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use axum::routing::get;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use sqlx::migrate::Migrator;

use super::{Outcome, Reloader, Triggers};
use crate::client::Downstream;
use crate::config::Settings;
use crate::db::{Migrations, temp_sqlite_url};
use crate::server::{Shutdown, ShutdownTrigger};
use crate::service::{Context, RoutesFuture, Service, check_keys};

static KIT_ONLY: Migrations = Migrations { sqlite: Migrator::DEFAULT, postgres: Migrator::DEFAULT };

/// A service with a handler that sleeps and one that calls the downstream `backend`.
static PROBE: Service = Service {
    name: "probe",
    default_port: 0,
    migrations: &KIT_ONLY,
    openapi: empty_document,
    routes,
    config_keys: Vec::new,
    calls: &[],
};

fn empty_document() -> utoipa::openapi::OpenApi {
    utoipa::openapi::OpenApiBuilder::new().build()
}

/// The ids of the sleep requests whose handler has started (so a test knows one is in flight).
static ENTERED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

#[derive(serde::Deserialize)]
struct Id {
    id: Option<String>,
}

fn routes(context: Context) -> RoutesFuture {
    Box::pin(async move {
        let backend = Downstream::new("backend", &context.config.downstreams["backend"])?;
        Ok(Router::new()
            .route("/v1/ok", get(|| async { "ok" }))
            .route(
                "/v1/sleep/{ms}",
                get(|Path(ms): Path<u64>, Query(Id { id }): Query<Id>| async move {
                    if let Some(id) = id {
                        ENTERED.lock().unwrap_or_else(PoisonError::into_inner).insert(id);
                    }
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    "slept"
                }),
            )
            .route(
                "/v1/backend/{path}",
                get(|State(backend): State<Downstream>, Path(path): Path<String>| async move {
                    match backend.get_json::<Value>(&format!("/{path}")).await {
                        Ok(value) => axum::Json(value).into_response(),
                        Err(err) => backend.api_error(&err).into_response(),
                    }
                }),
            )
            .with_state(backend))
    })
}

/// The downstream: `/slow` answers after a second, `/unavailable` answers 503 (counted).
async fn backend(hits: Arc<AtomicU32>) -> String {
    let app = Router::new()
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(1_000)).await;
                axum::Json(json!("slow"))
            }),
        )
        .route(
            "/unavailable",
            get(move || {
                hits.fetch_add(1, Ordering::SeqCst);
                async { StatusCode::SERVICE_UNAVAILABLE }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// `probe` served from a settings file, the downstream it calls, and the reloader.
struct Fixture {
    file: PathBuf,
    doc: Value,
    base: String,
    reloader: Reloader,
    hits: Arc<AtomicU32>,
    client: HttpClient,
    _stop: ShutdownTrigger,
    shutdown: Shutdown,
}

impl Fixture {
    /// `probe` with `extra` settings merged into its section.
    async fn start(label: &str, extra: Value) -> Self {
        let dir = std::env::temp_dir().join(format!("kit-reload-{label}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let hits = Arc::new(AtomicU32::new(0));
        let mut doc = json!({
            "jwt_secret": "test-secret-test-secret-test-secret",
            "probe": {
                "port": 0,
                "database_url": temp_sqlite_url(&format!("kit-reload-{label}")),
                "downstreams": { "backend": {
                    "url": backend(hits.clone()).await,
                    "retry_base_delay_ms": 1,
                    "retry_max_delay_ms": 2,
                } },
            },
        });
        merge(&mut doc["probe"], extra);
        let file = dir.join("shop.yaml");
        let fixture_file = file.clone();
        write_atomically(&file, &doc);
        let load = move || {
            let settings = Settings::load_from(Some(&fixture_file))?;
            check_keys(&[&PROBE], &settings)?;
            Ok(settings)
        };
        let settings = load().unwrap();
        let reloader = Reloader::new(&settings, load).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (server, running) = PROBE.app(&settings).await.unwrap().serve_reloadable(&PROBE, listener);
        reloader.add(running);
        let base = format!("http://{}", server.local_addr());
        let (stop, shutdown) = Shutdown::manual();
        tokio::spawn(server.run(shutdown.clone()));
        let client = Client::builder(TokioExecutor::new()).build_http();
        Self { file, doc, base, reloader, hits, client, _stop: stop, shutdown }
    }

    /// Merges `changes` into the `probe` section and writes the file (as an editor would: a new file
    /// renamed over the old one).
    fn change(&mut self, changes: Value) {
        merge(&mut self.doc["probe"], changes);
        write_atomically(&self.file, &self.doc);
    }

    /// Writes `text` as the file, whatever it holds.
    fn write_raw(&self, text: &str) {
        let tmp = self.file.with_extension("tmp");
        std::fs::File::create(&tmp).unwrap().write_all(text.as_bytes()).unwrap();
        std::fs::rename(tmp, &self.file).unwrap();
    }

    /// Writes the last valid document again.
    fn restore(&self) {
        write_atomically(&self.file, &self.doc);
    }

    async fn request(&self, req: Request<Full<Bytes>>) -> (StatusCode, HeaderMap, String) {
        let res = self.client.request(req).await.unwrap();
        let (parts, body) = res.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        (parts.status, parts.headers, String::from_utf8_lossy(&body).into_owned())
    }

    async fn get(&self, path: &str) -> (StatusCode, String) {
        let req = Request::get(format!("{}{path}", self.base)).body(Full::default()).unwrap();
        let (status, _, body) = self.request(req).await;
        (status, body)
    }

    /// The `Access-Control-Allow-Origin` a CORS preflight from `https://shop.example` gets.
    async fn cors(&self) -> Option<String> {
        let req = Request::builder()
            .method(Method::OPTIONS)
            .uri(format!("{}/v1/ok", self.base))
            .header(header::ORIGIN, "https://shop.example")
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
            .body(Full::default())
            .unwrap();
        let (_, headers, _) = self.request(req).await;
        headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).map(|v| v.to_str().unwrap().to_owned())
    }

    /// The state `/ops` shows for the `backend` breaker.
    async fn breaker_state(&self) -> String {
        let (status, body) = self.get("/ops/state").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let state: Value = serde_json::from_str(&body).unwrap();
        let backend = state["breakers"].as_array().unwrap().iter().find(|b| b["name"] == "backend").unwrap();
        backend["state"].as_str().unwrap().to_owned()
    }
}

/// Sets the dotted `key` of `doc`.
fn set(doc: &mut Value, key: &str, value: Value) {
    let target = key.split('.').fold(doc, |node, segment| &mut node[segment]);
    *target = value;
}

fn merge(target: &mut Value, changes: Value) {
    match (target, changes) {
        (Value::Object(target), Value::Object(changes)) => {
            for (key, value) in changes {
                merge(target.entry(key).or_insert(Value::Null), value);
            }
        }
        (target, value) => *target = value,
    }
}

/// JSON is YAML: the document, through a temporary file renamed over `path`.
fn write_atomically(path: &std::path::Path, doc: &Value) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(doc).unwrap()).unwrap();
    std::fs::rename(tmp, path).unwrap();
}

fn problem_type(body: &str) -> String {
    let problem: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    problem["type"].as_str().unwrap_or_default().rsplit('/').next().unwrap_or_default().to_owned()
}

/// Logs of the current thread (the test's runtime is single-threaded, so its tasks' too), as text.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn capture(&self) -> tracing::subscriber::DefaultGuard {
        let logs = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || logs.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn lines(&self, level: &str) -> Vec<String> {
        let text =
            String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned();
        text.lines().filter(|line| line.contains(level)).map(str::to_owned).collect()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Waits (bounded) until `check` holds.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..400 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not within 20 s: {what}");
}

/// Requests `/v1/ok` from `workers` tasks over keep-alive connections until stopped; counts answers.
struct Load {
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(fixture: &Fixture, workers: usize) -> Self {
        let (ok, failed): (Arc<AtomicU64>, Arc<AtomicU64>) = (Arc::default(), Arc::default());
        let stop = Arc::<AtomicBool>::default();
        let workers = (0..workers)
            .map(|_| {
                let (ok, failed, stop) = (Arc::clone(&ok), Arc::clone(&failed), Arc::clone(&stop));
                let (client, uri) = (fixture.client.clone(), format!("{}/v1/ok", fixture.base));
                tokio::spawn(async move {
                    // Bounded: at most 2000 requests per worker.
                    for _ in 0..2_000 {
                        if stop.load(Ordering::SeqCst) {
                            return;
                        }
                        let req = Request::get(&uri).body(Full::default()).unwrap();
                        let answered = match client.request(req).await {
                            Ok(res) => {
                                res.status() == StatusCode::OK && res.into_body().collect().await.is_ok()
                            }
                            Err(_) => false,
                        };
                        let counter: &AtomicU64 = if answered { &ok } else { &failed };
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        Self { ok, failed, stop, workers }
    }

    fn done(&self) -> u64 {
        self.ok.load(Ordering::SeqCst) + self.failed.load(Ordering::SeqCst)
    }

    async fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::SeqCst);
        for worker in self.workers {
            worker.await.unwrap();
        }
        (self.ok.load(Ordering::SeqCst), self.failed.load(Ordering::SeqCst))
    }
}

#[tokio::test]
async fn new_timeouts_apply_to_the_next_requests_and_nothing_in_flight_is_dropped() {
    let mut fixture = Fixture::start(
        "timeouts",
        json!({
            "request_timeout_ms": 10_000,
            "downstreams": { "backend": { "attempt_timeout_ms": 5_000, "retry_max_attempts": 1 } },
        }),
    )
    .await;
    assert_eq!(fixture.get("/v1/backend/slow").await.0, StatusCode::OK);
    let load = Load::start(&fixture, 4);
    eventually("load runs", async || load.done() >= 20).await;

    // A downstream's attempt timeout, under load.
    fixture.change(json!({ "downstreams": { "backend": { "attempt_timeout_ms": 200 } } }));
    let outcome = fixture.reloader.reload_now("test").unwrap();
    assert_eq!(
        outcome,
        Outcome { applied: vec!["probe.downstreams.backend.attempt_timeout_ms".to_owned()], restart: vec![] }
    );
    let (status, body) = fixture.get("/v1/backend/slow").await;
    assert_eq!((status, problem_type(&body).as_str()), (StatusCode::GATEWAY_TIMEOUT, "downstream-timeout"));

    // The server's own timeout, while a request that started before the reload is in flight.
    let id = uuid::Uuid::new_v4().to_string();
    let in_flight = {
        let (client, uri) = (fixture.client.clone(), format!("{}/v1/sleep/1500?id={id}", fixture.base));
        tokio::spawn(async move { client.request(Request::get(uri).body(Full::default()).unwrap()).await })
    };
    eventually("the sleep handler runs", async || {
        ENTERED.lock().unwrap_or_else(PoisonError::into_inner).contains(&id)
    })
    .await;
    let before = load.done();
    fixture.change(json!({ "request_timeout_ms": 500 }));
    fixture.reloader.reload_now("test").unwrap();
    eventually("load goes on after the reload", async || load.done() >= before + 20).await;
    let (ok, failed) = load.stop().await;
    assert_eq!(failed, 0, "{failed} of {} requests failed across the reloads", ok + failed);

    let finished = in_flight.await.unwrap().unwrap();
    assert_eq!(finished.status(), StatusCode::OK, "the request in flight kept the timeout it started with");
    assert_eq!(fixture.get("/v1/sleep/1500").await.0, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(fixture.get("/v1/ok").await.0, StatusCode::OK);
}

#[tokio::test]
async fn new_retry_and_breaker_settings_apply_and_an_untouched_breaker_keeps_its_state() {
    let mut fixture = Fixture::start(
        "breaker",
        json!({ "downstreams": { "backend": { "retry_max_attempts": 3, "breaker_minimum_calls": 100 } } }),
    )
    .await;
    let call = async |fixture: &Fixture| {
        let before = fixture.hits.load(Ordering::SeqCst);
        let (status, body) = fixture.get("/v1/backend/unavailable").await;
        (status, problem_type(&body), fixture.hits.load(Ordering::SeqCst) - before)
    };
    assert_eq!(call(&fixture).await, (StatusCode::BAD_GATEWAY, "downstream-error".to_owned(), 3));

    fixture.change(json!({ "downstreams": { "backend": {
        "retry_max_attempts": 1, "breaker_minimum_calls": 2, "breaker_window_calls": 2,
    } } }));
    fixture.reloader.reload_now("test").unwrap();
    assert_eq!(call(&fixture).await, (StatusCode::BAD_GATEWAY, "downstream-error".to_owned(), 1));
    assert_eq!(call(&fixture).await, (StatusCode::BAD_GATEWAY, "downstream-error".to_owned(), 1));
    // Two failures of two calls: the new breaker opened.
    assert_eq!(
        call(&fixture).await,
        (StatusCode::SERVICE_UNAVAILABLE, "downstream-unavailable".to_owned(), 0)
    );
    assert_eq!(fixture.breaker_state().await, "open");

    // A reload that changes the client's timeouts but not its breaker: still open.
    fixture.change(json!({ "downstreams": { "backend": { "attempt_timeout_ms": 1_500 } } }));
    fixture.reloader.reload_now("test").unwrap();
    assert_eq!(
        call(&fixture).await,
        (StatusCode::SERVICE_UNAVAILABLE, "downstream-unavailable".to_owned(), 0)
    );

    // A new breaker setting: a new breaker, closed, on the `/ops` page too.
    fixture.change(json!({ "downstreams": { "backend": { "breaker_open_ms": 60_000 } } }));
    fixture.reloader.reload_now("test").unwrap();
    assert_eq!(fixture.breaker_state().await, "closed");
    assert_eq!(call(&fixture).await, (StatusCode::BAD_GATEWAY, "downstream-error".to_owned(), 1));
}

#[tokio::test]
async fn an_invalid_file_is_refused_with_one_error_line_and_the_running_settings_stay() {
    let logs = Logs::default();
    let _capture = logs.capture();
    let mut fixture = Fixture::start("invalid", json!({})).await;
    assert_eq!(fixture.cors().await, None);
    let errors_before = logs.lines("ERROR").len();
    let warnings_before = logs.lines("WARN").len();

    let cors = json!(["https://shop.example"]);
    let invalid = [
        ("did you mean `probe.request_timeout_ms`", "probe.request_timout_ms", json!(100)),
        ("probe.request_timeout_ms must be at least 1", "probe.request_timeout_ms", json!(0)),
        ("probe.downstreams.backend", "probe.downstreams.backend.breaker_failure_rate", json!(2.0)),
        ("log_level", "log_level", json!("debgu")),
    ];
    for (n, (problem, key, value)) in invalid.into_iter().enumerate() {
        let mut doc = fixture.doc.clone();
        doc["probe"]["cors_allowed_origins"] = cors.clone();
        set(&mut doc, key, value);
        write_atomically(&fixture.file, &doc);
        let err = fixture.reloader.reload_now("test").unwrap_err().to_string();
        assert!(err.contains(problem), "{err}");
        let errors = logs.lines("ERROR");
        assert_eq!(errors.len(), errors_before + n + 1, "one line per refused reload: {errors:#?}");
        assert!(errors.last().unwrap().contains(problem), "{errors:#?}");
        assert_eq!(fixture.cors().await, None, "nothing of a refused file applies ({problem})");
    }
    fixture.write_raw("probe: [this is not: yaml\n");
    let err = fixture.reloader.reload_now("test").unwrap_err().to_string();
    assert!(err.contains("shop.yaml"), "the file is named: {err}");
    assert_eq!(logs.lines("ERROR").len(), errors_before + 5);
    assert_eq!(fixture.get("/v1/ok").await.0, StatusCode::OK);
    assert_eq!(logs.lines("WARN").len(), warnings_before, "a refused reload logs nothing else");

    // The same change, valid, applies.
    fixture.restore();
    fixture.change(json!({ "cors_allowed_origins": cors }));
    fixture.reloader.reload_now("test").unwrap();
    assert_eq!(fixture.cors().await.as_deref(), Some("https://shop.example"));
    assert_eq!(logs.lines("ERROR").len(), errors_before + 5);
}

#[tokio::test]
async fn a_file_change_to_a_port_is_named_in_a_warning_and_the_service_keeps_its_port() {
    let logs = Logs::default();
    let _capture = logs.capture();
    let mut fixture = Fixture::start("port", json!({})).await;
    let _watching =
        fixture.reloader.clone().spawn(Triggers::file(fixture.file.clone()), fixture.shutdown.clone());

    // Half a file is refused once, however many times the watch reads it.
    let errors_before = logs.lines("ERROR").len();
    fixture.write_raw("probe: [this is not: yaml\n");
    eventually("the watch refuses the file", async || logs.lines("ERROR").len() > errors_before).await;

    fixture.change(json!({
        "port": 1,
        "database_url": "sqlite://elsewhere.db?mode=rwc",
        "cors_allowed_origins": ["https://shop.example"],
    }));
    eventually("the watch applies the file", async || fixture.cors().await.is_some()).await;
    let warnings = logs.lines("WARN");
    for key in ["probe.port", "probe.database_url"] {
        let named = format!("{key} changed; restart to apply");
        assert_eq!(warnings.iter().filter(|w| w.contains(&named)).count(), 1, "{warnings:#?}");
    }
    assert!(!warnings.iter().any(|w| w.contains("cors_allowed_origins")), "{warnings:#?}");
    assert!(!warnings.iter().any(|w| w.contains("elsewhere")), "values are not logged: {warnings:#?}");
    assert_eq!(fixture.get("/v1/ok").await.0, StatusCode::OK, "still served where it was");
    assert_eq!(logs.lines("ERROR").len(), errors_before + 1, "{:#?}", logs.lines("ERROR"));
}
