//! `shop catalog` (the real binary) reloads its settings while it runs: a change of the file at
//! `CONFIG_PATH` applies `log_level` and a server layer setting to new requests; an invalid file is
//! refused with one ERROR line and the running settings stay; a changed port is named in a WARN and
//! the old one keeps serving; SIGHUP reloads (and no longer ends the process); SIGTERM still exits 0.

mod support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Reply, eventually, http};

const ORIGIN: &str = "https://shop.example";

struct Catalog {
    dir: PathBuf,
    file: PathBuf,
    doc: Value,
    port: u16,
    child: Child,
}

impl Catalog {
    fn start(doc: Value) -> Self {
        let dir = std::env::temp_dir().join(format!("shop-reload-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut doc = doc;
        doc["catalog"]["port"] = json!(port);
        doc["catalog"]["database_url"] = json!(format!("sqlite://{}/catalog.db?mode=rwc", dir.display()));
        let file = dir.join("shop.yaml");
        write_atomically(&file, &doc);
        let log = std::fs::File::create(dir.join("catalog.log")).unwrap();
        let child = support::shop_command("catalog", &file, log).env_remove("RUST_LOG").spawn().unwrap();
        let mut catalog = Self { dir, file, doc, port, child };
        eventually(Duration::from_secs(60), "catalog is ready", || {
            assert!(catalog.child.try_wait().unwrap().is_none(), "catalog exited:\n{}", catalog.log());
            (catalog.get("/readyz", &[]).ok()?.status == 200).then_some(())
        });
        catalog
    }

    /// Sets the dotted `key` and writes the file.
    fn set(&mut self, key: &str, value: Value) {
        let target = key.split('.').fold(&mut self.doc, |node, segment| &mut node[segment]);
        *target = value;
        write_atomically(&self.file, &self.doc);
    }

    fn get(&self, path: &str, headers: &[(&str, &str)]) -> Result<Reply, String> {
        http(self.port, "GET", path, None, headers, None)
    }

    /// The `Access-Control-Allow-Origin` a CORS preflight from [`ORIGIN`] gets.
    fn cors(&self) -> Option<String> {
        let headers = [("origin", ORIGIN), ("access-control-request-method", "GET")];
        let reply = http(self.port, "OPTIONS", "/v1/products", None, &headers, None).unwrap();
        reply.header("access-control-allow-origin").map(str::to_owned)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("catalog.log")).unwrap_or_default()
    }

    /// The JSON log lines at `level` whose message contains `text`.
    fn logged(&self, level: &str, text: &str) -> Vec<Value> {
        self.log()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|line| line["level"] == level)
            .filter(|line| line["fields"]["message"].as_str().is_some_and(|m| m.contains(text)))
            .collect()
    }

    fn signal(&self, name: &str) {
        let sent = Command::new("kill").args([&format!("-{name}"), &self.child.id().to_string()]).status();
        assert!(sent.unwrap().success(), "kill -{name}");
    }
}

impl Drop for Catalog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("log kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// JSON is YAML: the document through a temporary file renamed over `path`, as editors write.
fn write_atomically(path: &Path, doc: &Value) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(doc).unwrap()).unwrap();
    std::fs::rename(tmp, path).unwrap();
}

/// A `traceparent` for trace `id` (32 hex digits).
fn traceparent(id: &str) -> String {
    format!("00-{id}-00f067aa0ba902b7-01")
}

#[test]
fn the_shop_binary_applies_a_changed_file_and_reloads_on_sighup() {
    let mut catalog = Catalog::start(json!({
        "profile": "development",
        "jwt_secret": "reload-jwt-secret-0123456789abcdef0123456789abcdef",
        "log_level": "warn",
        "catalog": { "drain_delay_ms": 0 },
    }));
    let quiet = "4bf92f3577b34da6a3ce929d0e0e4736";
    let loud = "5bf92f3577b34da6a3ce929d0e0e4737";
    let listed = catalog.get("/v1/products", &[("traceparent", &traceparent(quiet))]).unwrap();
    assert_eq!(listed.status, 200, "{:?}", listed.body);

    // log_level: warn → info, from the file: the access log of each request shows from then on.
    catalog.set("log_level", json!("info"));
    eventually(Duration::from_secs(30), "the reload is logged", || {
        catalog.logged("INFO", "settings reloaded and applied").first().cloned()
    });
    eventually(Duration::from_secs(30), "a request is logged at info", || {
        let reply = catalog.get("/v1/products", &[("traceparent", &traceparent(loud))]).ok()?;
        assert_eq!(reply.status, 200);
        catalog.log().contains(loud).then_some(())
    });
    assert!(
        !catalog.log().contains(quiet),
        "a request served at warn was logged at info:\n{}",
        catalog.log()
    );

    // A server layer setting, from the file.
    assert_eq!(catalog.cors(), None);
    catalog.set("catalog.cors_allowed_origins", json!([ORIGIN]));
    eventually(Duration::from_secs(30), "CORS applies", || catalog.cors());

    // An invalid file: one ERROR line, the running settings stay.
    catalog.set("catalog.request_timeout_ms", json!(0));
    let refused = eventually(Duration::from_secs(30), "the file is refused", || {
        catalog.logged("ERROR", "settings reload refused").first().cloned()
    });
    let message = refused["fields"]["message"].as_str().unwrap();
    assert!(message.contains("catalog.request_timeout_ms must be at least 1"), "{refused}");
    assert_eq!(catalog.cors().as_deref(), Some(ORIGIN));
    assert_eq!(catalog.get("/v1/products", &[]).unwrap().status, 200);

    // A port: named in a WARN; the catalog keeps serving where it was.
    let elsewhere = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    catalog.doc["catalog"].as_object_mut().unwrap().remove("request_timeout_ms");
    catalog.set("catalog.port", json!(elsewhere));
    eventually(Duration::from_secs(30), "the port change is named", || {
        catalog.logged("WARN", "catalog.port changed; restart to apply").first().cloned()
    });
    assert_eq!(catalog.get("/v1/products", &[]).unwrap().status, 200);

    // SIGHUP reloads the unchanged file, and the process lives on.
    catalog.signal("HUP");
    let reloaded = eventually(Duration::from_secs(30), "SIGHUP reloads", || {
        let lines = catalog.logged("INFO", "settings reloaded");
        lines.into_iter().find(|line| line["fields"]["trigger"] == "SIGHUP")
    });
    assert_eq!(reloaded["fields"]["message"], "settings reloaded: nothing to apply", "{reloaded}");
    assert!(catalog.child.try_wait().unwrap().is_none(), "SIGHUP ended the process:\n{}", catalog.log());
    assert_eq!(catalog.get("/v1/products", &[]).unwrap().status, 200);
    let errors = catalog.logged("ERROR", "");
    assert_eq!(errors.len(), 1, "one ERROR line in all: {errors:#?}");

    catalog.signal("TERM");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = catalog.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "no exit within 30 s of SIGTERM");
        sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM:\n{}", catalog.log());
}
