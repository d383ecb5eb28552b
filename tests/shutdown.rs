//! SIGTERM while load runs: `shop catalog` (the real binary) turns `/readyz` 503 for the drain delay,
//! serves every request it is sent meanwhile, then exits 0; wrk (loopback, bounded) sees no failed
//! request. Needs `wrk` (Debian `wrk`; `.ci/run` installs it): without it the test says so and passes
//! only outside CI (`CI` unset).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

fn get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

#[test]
fn sigterm_under_load_drains_without_a_failed_request_and_exits_0() {
    if Command::new("wrk").arg("--version").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "CI must install wrk (apt-get install -y wrk)");
        eprintln!("note: wrk is not installed; SIGTERM-under-load test skipped");
        return;
    }
    let dir = std::env::temp_dir().join(format!("shop-sigterm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_shop"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("SHOP__") {
            command.env_remove(key);
        }
    }
    let mut shop = command
        .arg("catalog")
        .env_remove("CONFIG_PATH")
        .env("RUST_LOG", "warn")
        .env("SHOP__CATALOG__PORT", "0")
        .env("SHOP__CATALOG__DATABASE_URL", format!("sqlite://{}/catalog.db?mode=rwc", dir.display()))
        .env("SHOP__CATALOG__DRAIN_DELAY_MS", "4000")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // "catalog    API http://127.0.0.1:PORT/v1  Swagger UI …"
    let mut printed = String::new();
    let mut stdout = shop.stdout.take().unwrap();
    let port: u16 = loop {
        let mut byte = [0_u8; 1];
        assert_eq!(stdout.read(&mut byte).unwrap(), 1, "shop exited before printing its URL");
        printed.push(byte[0] as char);
        if let Some(rest) = printed.split("http://127.0.0.1:").nth(1)
            && let Some((port, _)) = rest.split_once('/')
        {
            break port.parse().unwrap();
        }
    };
    let started = Instant::now();
    while !get(port, "/readyz").is_some_and(|r| r.starts_with("HTTP/1.1 200")) {
        assert!(started.elapsed() < Duration::from_secs(30), "catalog never became ready");
        sleep(Duration::from_millis(50));
    }

    // 3 s of load; SIGTERM one second in; the 4 s drain delay outlasts the load.
    let wrk = Command::new("wrk")
        .args(["-t1", "-c16", "-d3s", &format!("http://127.0.0.1:{port}/v1/products")])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    sleep(Duration::from_secs(1));
    let term = Command::new("kill").args(["-TERM", &shop.id().to_string()]).status().unwrap();
    assert!(term.success());
    let mut saw_draining = false;
    for _ in 0..20 {
        if get(port, "/readyz").is_some_and(|r| r.starts_with("HTTP/1.1 503")) {
            saw_draining = true;
            break;
        }
        sleep(Duration::from_millis(50));
    }
    let report = String::from_utf8(wrk.wait_with_output().unwrap().stdout).unwrap();
    assert!(saw_draining, "/readyz never answered 503 after SIGTERM");
    assert!(!report.contains("Socket errors"), "wrk saw failed requests:\n{report}");
    assert!(!report.contains("Non-2xx"), "wrk saw error answers:\n{report}");
    let requests: u64 = report
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    assert!(requests > 100, "wrk made only {requests} requests:\n{report}");

    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = shop.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            shop.kill().unwrap();
            panic!("shop did not exit within 30 s of SIGTERM");
        }
        sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM");
    std::fs::remove_dir_all(dir).ok();
}
