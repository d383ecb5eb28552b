//! The README's walkthrough, run exactly as written.
//!
//! The test reads the `## Walkthrough` section of `README.md`: its ```` ```sh ```` blocks are the
//! commands, and a ```` ```text ```` block after a command block is that block's expected output
//! (`…` stands for any text within a line; a command block without one must print nothing). The
//! first block is `make run`: the test starts the `shop all` binary that cargo built instead, on the
//! default ports the README shows, with fresh SQLite databases in a temporary folder, and checks that
//! it prints the README's lines. Every other block then runs, in order, in one `bash` (so variables
//! such as `$TOKEN` carry over), from the temporary folder. Editing the README's commands or outputs
//! without the shop agreeing fails this test; so does a README that drops a step of the walkthrough.
//!
//! Needs `bash`, `curl` and `python3` (the README's own prerequisites) and the default ports free.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

const README: &str = include_str!("../README.md");
const SECTION: &str = "## Walkthrough";
const MARKER: &str = "@@walkthrough-step-done@@";
/// Upper bound on start-up (migrations, the admin's password hash in a debug build), not a timing check.
const START_BOUND: Duration = Duration::from_mins(2);

/// One ```` ```sh ```` block and the output the README shows for it.
#[derive(Debug)]
struct Step {
    /// Line of the opening fence in README.md (1-based).
    line: usize,
    script: String,
    expected: String,
}

/// The walkthrough's blocks, in order.
fn walkthrough(readme: &str) -> Vec<Step> {
    let lines: Vec<&str> = readme.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim_end() == SECTION)
        .unwrap_or_else(|| panic!("README.md has no `{SECTION}` section"));
    let mut steps: Vec<Step> = Vec::new();
    let mut i = start + 1;
    while i < lines.len() && !lines[i].starts_with("## ") {
        let fence = lines[i].trim_end();
        let kind = match fence {
            "```sh" => Some(true),
            "```text" => Some(false),
            _ => None,
        };
        if let Some(is_command) = kind {
            let open = i;
            let mut body = String::new();
            i += 1;
            while i < lines.len() && lines[i].trim_end() != "```" {
                body.push_str(lines[i]);
                body.push('\n');
                i += 1;
            }
            assert!(i < lines.len(), "README.md:{}: unclosed code block", open + 1);
            if is_command {
                steps.push(Step { line: open + 1, script: body, expected: String::new() });
            } else {
                let step = steps.last_mut().filter(|s| s.expected.is_empty()).unwrap_or_else(|| {
                    panic!("README.md:{}: an output block must follow a command block", open + 1)
                });
                step.expected = body;
            }
        } else {
            assert!(
                !fence.starts_with("```"),
                "README.md:{}: the walkthrough uses only sh and text blocks",
                i + 1
            );
        }
        i += 1;
    }
    steps
}

/// Whether `actual` is `pattern`, where each `…` stands for any run of characters.
fn line_matches(pattern: &str, actual: &str) -> bool {
    let mut parts = pattern.split('…');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = actual.strip_prefix(first) else { return false };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else { return rest.is_empty() };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// Compares a block's output with the README's, line by line; `Err` explains the first difference.
fn output_matches(expected: &str, actual: &str) -> Result<(), String> {
    let expected: Vec<&str> = expected.trim_end().lines().collect();
    let actual: Vec<&str> = actual.trim_end().lines().collect();
    for (n, (want, got)) in expected.iter().zip(&actual).enumerate() {
        if !line_matches(want, got) {
            return Err(format!("output line {}:\n  README: {want}\n  actual: {got}", n + 1));
        }
    }
    if expected.len() == actual.len() {
        Ok(())
    } else {
        Err(format!("the README shows {} output lines, the command printed {}", expected.len(), actual.len()))
    }
}

/// `shop all` started by the test; stopped (SIGTERM, then SIGKILL) when dropped.
struct Shop {
    child: Child,
    stdout: PathBuf,
}

impl Shop {
    fn output(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }
}

impl Drop for Shop {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Removes the temporary folder when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The services and ports that `make run` prints in the README (`users      API http://127.0.0.1:8081/v1 …`).
fn services(make_run_output: &str) -> Vec<(String, u16)> {
    make_run_output
        .lines()
        .map(|line| {
            let name = line.split_whitespace().next().unwrap_or_default();
            let port = line
                .split("http://127.0.0.1:")
                .nth(1)
                .and_then(|rest| rest.split('/').next())
                .and_then(|port| port.parse().ok())
                .unwrap_or_else(|| {
                    panic!("`make run` output line without a http://127.0.0.1:<port> URL: {line}")
                });
            (name.to_owned(), port)
        })
        .collect()
}

fn start_shop(dir: &Path, services: &[(String, u16)]) -> Shop {
    for (name, port) in services {
        if let Err(err) = TcpListener::bind(("127.0.0.1", *port)) {
            panic!(
                "the walkthrough needs 127.0.0.1:{port} ({name}) free, as on a fresh machine, but cannot bind it \
                 ({err}): stop whatever listens there (another `make run`?) and run the test again"
            );
        }
    }
    let stdout = dir.join("shop.out");
    let mut command = Command::new(env!("CARGO_BIN_EXE_shop"));
    command.arg("all").current_dir(dir).env_remove("CONFIG_PATH").env("RUST_LOG", "warn");
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("SHOP__") {
            command.env_remove(key);
        }
    }
    for (name, _) in services {
        let url = format!("sqlite://{}/{name}.db?mode=rwc", dir.display());
        command.env(format!("SHOP__{}__DATABASE_URL", name.to_uppercase()), url);
    }
    let child = command
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).expect("create shop.out"))
        .stderr(std::fs::File::create(dir.join("shop.err")).expect("create shop.err"))
        .spawn()
        .expect("start the shop binary");
    Shop { child, stdout }
}

/// Waits until `shop` printed every expected `make run` line and every service answers `/readyz` 200.
fn wait_until_ready(shop: &mut Shop, expected: &str, services: &[(String, u16)], dir: &Path) {
    let deadline = Instant::now() + START_BOUND;
    let printed = |shop: &Shop| {
        let output = shop.output();
        expected.lines().all(|want| output.lines().any(|got| line_matches(want, got)))
    };
    while !printed(shop) {
        if let Ok(Some(status)) = shop.child.try_wait() {
            let err = std::fs::read_to_string(dir.join("shop.err")).unwrap_or_default();
            panic!("`shop all` exited ({status}) before printing its URLs:\n{}{err}", shop.output());
        }
        assert!(
            Instant::now() < deadline,
            "`shop all` did not print the README's `make run` lines within {START_BOUND:?}.\nREADME:\n{expected}\nprinted:\n{}",
            shop.output()
        );
        sleep(Duration::from_millis(50));
    }
    for (name, port) in services {
        while !ready(*port) {
            assert!(Instant::now() < deadline, "{name} on port {port} never answered /readyz with 200");
            sleep(Duration::from_millis(50));
        }
    }
}

fn ready(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!("GET /readyz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    let mut response = String::new();
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_to_string(&mut response).is_ok()
        && response.starts_with("HTTP/1.1 200")
}

#[test]
fn readme_walkthrough_runs_as_written() {
    for tool in ["bash", "curl", "python3"] {
        let found = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(found, "the README walkthrough needs `{tool}` on PATH");
    }
    let steps = walkthrough(README);
    let (make_run, commands) = steps.split_first().expect("the walkthrough has command blocks");
    assert_eq!(
        make_run.script.trim(),
        "make run",
        "README.md:{}: the walkthrough starts with `make run`",
        make_run.line
    );
    let services = services(&make_run.expected);
    assert!(!services.is_empty(), "README.md:{}: show what `make run` prints", make_run.line);

    let dir = TempDir(std::env::temp_dir().join(format!("shop-walkthrough-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0).expect("create the temporary folder");
    let mut shop = start_shop(&dir.0, &services);
    wait_until_ready(&mut shop, &make_run.expected, &services, &dir.0);

    let mut script = String::from("set -euo pipefail\n");
    for step in commands {
        writeln!(script, "{}printf '\\n%s\\n' '{MARKER}'", step.script).unwrap();
    }
    let run = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(&dir.0)
        .stdin(Stdio::null())
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    let outputs: Vec<&str> = stdout.split(MARKER).collect();
    let done = outputs.len() - 1;
    if !run.status.success() {
        let step = &commands[done.min(commands.len() - 1)];
        panic!(
            "README.md:{}: this block failed ({}):\n{}\noutput:\n{}\nstderr:\n{stderr}\nshop log:\n{}",
            step.line,
            run.status,
            step.script,
            outputs[done],
            shop.output()
        );
    }
    assert_eq!(done, commands.len(), "every block ran\nstdout:\n{stdout}\nstderr:\n{stderr}");
    for (step, output) in commands.iter().zip(&outputs) {
        // Each marker starts on a new line: drop the newline printed before it and the one after the last.
        let output = output.strip_prefix('\n').unwrap_or(output);
        if let Err(difference) = output_matches(&step.expected, output) {
            panic!(
                "README.md:{}: the block's output differs from the README's, {difference}\nblock:\n{}",
                step.line, step.script
            );
        }
    }
    assert!(stderr.trim().is_empty(), "the walkthrough's commands wrote to stderr:\n{stderr}");
}

#[test]
fn readme_walkthrough_covers_the_whole_session() {
    let steps = walkthrough(README);
    let all: String = steps.iter().map(|s| s.script.as_str()).collect();
    let has = |needle: &str| all.contains(needle);
    assert!(has("8081/v1/users ") || has("8081/v1/users'"), "register a customer (POST /v1/users)");
    assert!(has("8081/v1/sessions"), "log in (POST /v1/sessions)");
    assert!(has("\"access_token\""), "keep the token from the login");
    assert!(has("8081/v1/users/me"), "read one's own account");
    assert!(has("admin@palisade.local"), "log in as the bootstrapped admin");
    assert!(has("8082/v1/products") && has("Bearer $ADMIN"), "create a product as admin");
    assert!(has("-X PUT http://127.0.0.1:8083/v1/stock/"), "set stock (PUT /v1/stock/{{sku}})");
    assert!(has("If-None-Match: *") || has("If-Match: "), "set stock with a precondition (428 without)");
    assert!(has("8082/v1/products/$PRODUCT_ID"), "read the product back");
    assert!(has("curl -s http://127.0.0.1:8083/v1/stock/"), "read the stock back");
    assert!(has("/metrics"), "show the metrics");
    let prose: String = README
        .split(SECTION)
        .nth(1)
        .map(|rest| rest.split("\n## ").next().unwrap_or_default().to_owned())
        .unwrap_or_default();
    assert!(prose.contains("/docs"), "say where Swagger UI is");
    for step in &steps[1..] {
        assert!(
            !step.expected.is_empty() || step.script.contains("=$("),
            "README.md:{}: show this block's output",
            step.line
        );
    }
}

#[test]
fn output_patterns() {
    assert!(line_matches("plain", "plain"));
    assert!(!line_matches("plain", "plain!"));
    assert!(!line_matches("plain", "a plain"));
    assert!(line_matches(r#"{"id":"…","email":"a@b.co"}"#, r#"{"id":"0b1c-2d","email":"a@b.co"}"#));
    assert!(!line_matches(r#"{"id":"…","email":"a@b.co"}"#, r#"{"id":"0b1c","email":"x@b.co"}"#));
    assert!(line_matches("…", ""));
    assert!(line_matches("a…b…c", "abc"));
    assert!(!line_matches("ab…ba", "aba"), "the two ends of a pattern may not overlap");
    assert!(line_matches("x…", "xyz") && line_matches("…z", "xyz") && !line_matches("…y", "xyz"));
    assert_eq!(output_matches("a\n…\n", "a\nb\n\n"), Ok(()));
    assert!(output_matches("a\n", "a\nb").is_err());
    assert!(output_matches("", "unexpected").is_err());
    assert_eq!(output_matches("", "\n"), Ok(()));
}

#[test]
fn walkthrough_blocks_are_parsed_in_order() {
    let readme = "# T\n## Walkthrough\nRun:\n```sh\nmake run\n```\n```text\nusers API http://127.0.0.1:8081/v1\n```\n\
                  Then:\n```sh\nX=$(true)\n```\n```sh\necho hi\n```\nprints\n```text\nhi\n```\n## Next\n```sh\nignored\n```\n";
    let steps = walkthrough(readme);
    let found: Vec<(&str, &str, usize)> =
        steps.iter().map(|s| (s.script.as_str(), s.expected.as_str(), s.line)).collect();
    assert_eq!(
        found,
        [
            ("make run\n", "users API http://127.0.0.1:8081/v1\n", 4),
            ("X=$(true)\n", "", 11),
            ("echo hi\n", "hi\n", 14),
        ]
    );
    assert_eq!(services(&steps[0].expected), [("users".to_owned(), 8081)]);
}
