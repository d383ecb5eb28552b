//! The end-to-end harness: every service as its own `shop <service>` process (the real binary) on
//! its own loopback port and SQLite file, wired the way a deployment is — one config file naming each
//! downstream's URL, each service's own signing key, and each callee's trusted keys (decision 007).
//! Services can be killed (SIGKILL) and started again; each one's log is kept for assertions.

#![allow(dead_code, unreachable_pub)]

pub mod fault;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use kit::service_auth::KeyPair;
use serde_json::{Value, json};

/// The services, in start order (callees first).
pub const SERVICES: [&str; 6] = ["users", "catalog", "inventory", "payments", "notifications", "orders"];
/// Who calls whom, with which scopes (as `Service.calls` declares them).
const CALLS: [(&str, &str, &[&str]); 3] = [
    ("orders", "users", &["users:read"]),
    ("orders", "inventory", &["inventory:reserve"]),
    ("orders", "payments", &["payments:charge", "payments:refund", "payments:read"]),
];
/// The services whose events go to notifications.
const PRODUCERS: [&str; 4] = ["users", "catalog", "payments", "orders"];
/// The development admin password (profile development, loopback).
pub const ADMIN_PASSWORD: &str = "palisade-admin-password";

/// A running shop.
pub struct Shop {
    pub dir: PathBuf,
    pub ports: BTreeMap<&'static str, u16>,
    children: BTreeMap<&'static str, Child>,
    config: PathBuf,
    env: Vec<(String, String)>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A free loopback port for each service.
pub fn free_ports() -> BTreeMap<&'static str, u16> {
    SERVICES.iter().map(|s| (*s, free_port())).collect()
}

impl Shop {
    /// Starts all six services; `env` holds overrides (`SHOP__ORDERS__…`) given to every process.
    pub fn start(label: &str, env: &[(&str, &str)]) -> Self {
        Self::start_on(label, env, free_ports())
    }

    /// [`Shop::start`] on ports chosen beforehand (so that proxies can be put in front of them).
    pub fn start_on(label: &str, env: &[(&str, &str)], ports: BTreeMap<&'static str, u16>) -> Self {
        let dir = std::env::temp_dir().join(format!("shop-e2e-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let keys: BTreeMap<_, _> = SERVICES.iter().map(|s| (*s, KeyPair::generate().unwrap())).collect();
        let url = |s: &str| format!("http://127.0.0.1:{}", ports[s]);
        let mut yaml = String::from(
            "profile: development\njwt_secret: e2e-jwt-secret-0123456789abcdef0123456789abcdef\n",
        );
        for service in SERVICES {
            let mut trusted: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            for (caller, callee, scopes) in CALLS {
                if callee == service {
                    trusted.entry(caller).or_default().extend(scopes.iter().copied());
                }
            }
            if service == "notifications" {
                for producer in PRODUCERS {
                    trusted.entry(producer).or_default().push("events:deliver");
                }
            }
            writeln!(yaml, "{service}:").unwrap();
            writeln!(yaml, "  port: {}", ports[service]).unwrap();
            writeln!(yaml, "  database_url: sqlite://{}/{service}.db?mode=rwc", dir.display()).unwrap();
            writeln!(yaml, "  signing_key: {}", keys[service].seed().expose()).unwrap();
            writeln!(yaml, "  drain_delay_ms: 0").unwrap();
            if !trusted.is_empty() {
                writeln!(yaml, "  trusted_keys:").unwrap();
                for (caller, scopes) in trusted {
                    writeln!(yaml, "    {caller}-1:").unwrap();
                    writeln!(yaml, "      issuer: {caller}").unwrap();
                    writeln!(yaml, "      public_key: {}", keys[caller].public_key()).unwrap();
                    writeln!(yaml, "      scopes: [{}]", scopes.join(", ")).unwrap();
                }
            }
            let mut downstreams: Vec<&str> = CALLS
                .iter()
                .filter(|(caller, _, _)| *caller == service)
                .map(|(_, callee, _)| *callee)
                .collect();
            if service == "orders" {
                downstreams.push("catalog");
            }
            if service != "users" && !downstreams.contains(&"users") {
                downstreams.push("users");
            }
            if !downstreams.is_empty() {
                writeln!(yaml, "  downstreams:").unwrap();
            }
            for callee in downstreams {
                writeln!(yaml, "    {callee}:\n      url: {}", url(callee)).unwrap();
            }
            if PRODUCERS.contains(&service) {
                writeln!(
                    yaml,
                    "  events:\n    relay_interval_ms: 50\n    backoff_base_ms: 100\n    backoff_max_ms: 1000\n    \
                     subscribers:\n      notifications:\n        url: {}",
                    url("notifications")
                )
                .unwrap();
            }
        }
        let config = dir.join("shop.yaml");
        std::fs::write(&config, yaml).unwrap();
        let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let mut shop = Self { dir, ports, children: BTreeMap::new(), config, env };
        for service in SERVICES {
            shop.start_service(service);
        }
        shop
    }

    /// Starts (again) one service and waits until it is ready.
    pub fn start_service(&mut self, service: &'static str) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{service}.log")))
            .unwrap();
        let child = shop_command(service, &self.config, log)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RUST_LOG", "info")
            .spawn()
            .unwrap();
        self.children.insert(service, child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.children.get_mut(service).unwrap().try_wait().unwrap() {
                panic!("{service} exited with {status} at start:\n{}", self.log(service));
            }
            if matches!(self.get(service, "/readyz", None), Ok((200, _))) {
                return;
            }
            assert!(Instant::now() < deadline, "{service} not ready in 60 s:\n{}", self.log(service));
            sleep(Duration::from_millis(50));
        }
    }

    /// Kills one service (SIGKILL: no drain, no goodbye) and waits for it to be gone.
    pub fn kill(&mut self, service: &str) {
        if let Some(mut child) = self.children.remove(service) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The service's log so far.
    pub fn log(&self, service: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{service}.log"))).unwrap_or_default()
    }

    /// `GET` with an optional bearer token.
    pub fn get(&self, service: &str, path: &str, token: Option<&str>) -> Result<(u16, Value), String> {
        self.call(service, "GET", path, token, &[], None).map(|r| (r.status, r.body))
    }

    /// Any request; `None` body sends none.
    pub fn call(
        &self,
        service: &str,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Reply, String> {
        http(self.ports[service], method, path, token, headers, body)
    }

    /// The admin's token.
    pub fn admin(&self) -> String {
        self.login("admin@palisade.local", ADMIN_PASSWORD)
    }

    /// Registers a customer and returns `(id, token)`.
    pub fn customer(&self, email: &str) -> (String, String) {
        let body = json!({"email": email, "password": "correct horse battery staple", "display_name": "E2E"});
        let reply = self.call("users", "POST", "/v1/users", None, &[], Some(&body)).unwrap();
        assert_eq!(reply.status, 201, "{:?}", reply.body);
        let id = reply.body["id"].as_str().unwrap().to_owned();
        (id, self.login(email, "correct horse battery staple"))
    }

    fn login(&self, email: &str, password: &str) -> String {
        let body = json!({"email": email, "password": password});
        let reply = self.call("users", "POST", "/v1/sessions", None, &[], Some(&body)).unwrap();
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        reply.body["access_token"].as_str().unwrap().to_owned()
    }

    /// Creates a product with `on_hand` units in stock; returns its id.
    pub fn product(&self, admin: &str, sku: &str, price: i64, on_hand: i64) -> String {
        let body = json!({"sku": sku, "name": sku, "category": "e2e", "price": {"amount": price, "currency": "EUR"}});
        let reply = self.call("catalog", "POST", "/v1/products", Some(admin), &[], Some(&body)).unwrap();
        assert_eq!(reply.status, 201, "{:?}", reply.body);
        let stock = json!({"on_hand": on_hand});
        let path = format!("/v1/stock/{sku}");
        let put = self
            .call("inventory", "PUT", &path, Some(admin), &[("if-none-match", "*")], Some(&stock))
            .unwrap();
        assert!(put.status == 200 || put.status == 201, "{:?}", put.body);
        reply.body["id"].as_str().unwrap().to_owned()
    }

    /// `POST /v1/orders` with `lines` as `token`'s customer, under `Idempotency-Key: key`.
    pub fn order(&self, token: &str, key: &str, lines: &Value) -> Reply {
        let body = json!({ "lines": lines });
        self.call("orders", "POST", "/v1/orders", Some(token), &[("idempotency-key", key)], Some(&body))
            .unwrap()
    }

    /// Stock of `sku`: `(on_hand, reserved)`.
    pub fn stock(&self, sku: &str) -> (i64, i64) {
        let (status, body) = self.get("inventory", &format!("/v1/stock/{sku}"), None).unwrap();
        assert_eq!(status, 200, "{body:?}");
        (body["on_hand"].as_i64().unwrap(), body["reserved"].as_i64().unwrap())
    }
}

/// `shop <service>` with the settings at `config` only (no `SHOP__*` of the test's own environment),
/// JSON logs to `log`.
pub fn shop_command(service: &str, config: &std::path::Path, log: std::fs::File) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shop"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("SHOP__") {
            command.env_remove(key);
        }
    }
    command
        .arg(service)
        .env("CONFIG_PATH", config)
        .env("LOG_FORMAT", "json")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    command
}

/// Polls `check` until it returns `Some`, for at most `within`.
pub fn eventually<T>(within: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        sleep(Duration::from_millis(100));
    }
}

impl Drop for Shop {
    fn drop(&mut self) {
        let names: Vec<_> = self.children.keys().copied().collect();
        for service in names {
            self.kill(service);
        }
        if std::thread::panicking() {
            eprintln!("logs kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// One answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl Reply {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A minimal HTTP/1.1 client (one request per connection), so the tests need no client crate.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> Result<Reply, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(30))).map_err(|e| e.to_string())?;
    let payload = body.map(Value::to_string).unwrap_or_default();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    if let Some(token) = token {
        write!(request, "Authorization: Bearer {token}\r\n").unwrap();
    }
    for (name, value) in headers {
        write!(request, "{name}: {value}\r\n").unwrap();
    }
    if body.is_some() {
        write!(request, "Content-Type: application/json\r\nContent-Length: {}\r\n", payload.len()).unwrap();
    }
    request.push_str("\r\n");
    request.push_str(&payload);
    stream.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| format!("no response head: {text}"))?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line: {head}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let chunked =
        headers.iter().any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked { dechunk(body) } else { body.to_owned() };
    let body = serde_json::from_str(&body).unwrap_or(Value::String(body));
    Ok(Reply { status, headers, body })
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else { break };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}
