//! The dashboard and the alert rules of `deploy/monitoring/` use only what the services export: all
//! six run as `shop <service>` processes (tests/support), some traffic makes the series that only
//! appear with it (an order through every downstream, an event delivery that fails), and every
//! metric name, matcher label and literal label value of every PromQL expression must be on one of
//! the six `/metrics` pages. The labels Prometheus adds at scrape (`app`, `namespace`, `pod`) are
//! read from deploy/monitoring/prometheus.yml.

#[path = "monitoring/promql.rs"]
mod promql;
mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format, Yaml};
use promql::{Exported, parse_exposition, problems, scan};
use serde_json::{Value, json};
use support::{SERVICES, Shop, eventually};

fn monitoring(file: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/monitoring").join(file)
}

fn yaml(file: &str) -> Value {
    let text = std::fs::read_to_string(monitoring(file)).unwrap();
    Figment::from(Yaml::string(&text)).extract().unwrap()
}

/// Every PromQL expression of the alert rules and the dashboard, each with where it is. A Grafana
/// `label_values(selector, label)` query yields its selector, and its label as `by (label)`.
fn expressions() -> Vec<(String, String)> {
    let mut found = Vec::new();
    for group in yaml("alerts.yml")["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let name = rule["alert"].as_str().or_else(|| rule["record"].as_str()).unwrap();
            found.push((format!("alerts.yml {name}"), rule["expr"].as_str().unwrap().to_owned()));
        }
    }
    let text = std::fs::read_to_string(monitoring("dashboard.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).unwrap();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or_default();
            found.push((format!("dashboard.json \"{title}\""), target["expr"].as_str().unwrap().to_owned()));
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        let query = variable["query"]["query"].as_str().unwrap_or_default();
        if let Some(args) = query.strip_prefix("label_values(").and_then(|q| q.strip_suffix(')')) {
            let (selector, label) = args.rsplit_once(',').unwrap();
            let name = variable["name"].as_str().unwrap();
            found.push((format!("dashboard.json ${name}"), format!("group by ({label}) ({selector})")));
        }
    }
    found
}

/// The labels prometheus.yml's relabelling adds to every series.
fn target_labels() -> BTreeSet<String> {
    let config = yaml("prometheus.yml");
    let mut labels = BTreeSet::new();
    for job in config["scrape_configs"].as_array().unwrap() {
        for relabel in job["relabel_configs"].as_array().into_iter().flatten() {
            if let Some(label) = relabel["target_label"].as_str().filter(|l| !l.starts_with("__")) {
                labels.insert(label.to_owned());
            }
        }
    }
    labels
}

fn scrape(shop: &Shop, service: &str) -> String {
    let reply = shop.call(service, "GET", "/metrics", None, &[], None).unwrap();
    assert_eq!(reply.status, 200, "{service} /metrics");
    reply.body.as_str().unwrap().to_owned()
}

/// Traffic that makes every series the dashboard and alerts use: an event push refused by a breaker
/// forced open (`shop_outbox_failed_attempts_total`), then an order (orders' calls to users,
/// catalog, inventory and payments; events to notifications).
fn drive(shop: &Shop) {
    let admin = shop.admin();
    let breaker = "/ops/breakers/events-notifications";
    let forced =
        shop.call("users", "POST", &format!("{breaker}/force-open"), Some(&admin), &[], None).unwrap();
    assert!(forced.status < 300, "{:?}", forced.body);
    let (_, token) = shop.customer("grace@example.com");
    eventually(Duration::from_secs(30), "users counts a failed event delivery", || {
        scrape(shop, "users").contains("shop_outbox_failed_attempts_total{").then_some(())
    });
    let reset = shop.call("users", "POST", &format!("{breaker}/reset"), Some(&admin), &[], None).unwrap();
    assert!(reset.status < 300, "{:?}", reset.body);

    let mug = shop.product(&admin, "MUG-MON", 1299, 5);
    let placed = shop.order(&token, "monitoring-1", &json!([{ "product_id": mug, "quantity": 1 }]));
    assert_eq!(placed.status, 201, "{:?}", placed.body);
    assert_eq!(placed.body["status"], "confirmed", "{:?}", placed.body);
    eventually(Duration::from_secs(30), "users delivered its events after the reset", || {
        scrape(shop, "users").contains("shop_outbox_backlog{service=\"users\"} 0").then_some(())
    });
}

#[test]
fn dashboard_and_alerts_use_only_exported_metrics() {
    let expressions = expressions();
    let target_labels = target_labels();
    assert!(
        ["app", "namespace", "pod"].iter().all(|l| target_labels.contains(*l)),
        "prometheus.yml adds {target_labels:?}"
    );
    let shop = Shop::start("monitoring", &[]);
    drive(&shop);
    let mut exported = Exported::new();
    for service in SERVICES {
        parse_exposition(&scrape(&shop, service), &mut exported);
    }

    let mut used = BTreeSet::new();
    let mut found = Vec::new();
    for (place, expr) in &expressions {
        used.extend(scan(expr).selectors.into_iter().map(|(metric, _)| metric));
        found.extend(problems(place, expr, &exported, &target_labels));
    }
    assert!(found.is_empty(), "{} problems:\n{}", found.len(), found.join("\n"));
    // The scan saw the families the dashboard is about (a scanner that finds nothing passes nothing).
    for family in [
        "http_server_request_duration_seconds_count",
        "http_server_request_duration_seconds_bucket",
        "http_client_request_duration_seconds_count",
        "palisade_circuit_breaker_state",
        "palisade_retry_retries_total",
        "shop_outbox_backlog",
        "shop_outbox_dead",
        "shop_outbox_failed_attempts_total",
    ] {
        assert!(used.contains(family), "{family} not among the names used: {used:?}");
    }
}

#[test]
fn the_scanner_reads_names_labels_and_values() {
    let used = scan(
        r#"histogram_quantile(0.99, sum by (app, le) (rate(http_x_bucket{namespace="$namespace", http_route=~"/v1/{id}.*"}[$__rate_interval])))
           > 1 and on (app) sum without (pod) (up_total offset 5m) unless max(other:recorded) == bool 2"#,
    );
    let names: Vec<&str> = used.selectors.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["http_x_bucket", "up_total", "other:recorded"]);
    assert_eq!(
        used.selectors[0].1,
        [
            ("namespace".to_owned(), "=".to_owned(), "$namespace".to_owned()),
            ("http_route".to_owned(), "=~".to_owned(), "/v1/{id}.*".to_owned()),
        ]
    );
    assert_eq!(used.grouping, ["app", "le", "pod"].into_iter().map(String::from).collect());
}

#[test]
fn a_misspelt_name_label_or_value_is_reported() {
    let mut exported = Exported::new();
    parse_exposition(
        concat!(
            "# TYPE palisade_circuit_breaker_state gauge\n",
            "palisade_circuit_breaker_state{name=\"users\",state=\"open\"} 0\n",
            "http_server_request_duration_seconds_count{http_route=\"/v1/products/{id}\",http_response_status_code=\"200\"} 2\n",
        ),
        &mut exported,
    );
    let targets: BTreeSet<String> = ["app".to_owned()].into();
    let check = |expr: &str| problems("test", expr, &exported, &targets);
    assert!(
        check(r#"max by (app, name) (palisade_circuit_breaker_state{state="open", app="x"})"#).is_empty()
    );
    assert!(
        check(r#"rate(http_server_request_duration_seconds_count{http_route="/v1/products/{id}"}[5m])"#)
            .is_empty()
    );
    let misspelt = check("rate(http_server_request_duration_second_count[5m])");
    assert_eq!(
        misspelt,
        ["test: metric `http_server_request_duration_second_count` is not exported by any service"]
    );
    assert_eq!(check(r#"palisade_circuit_breaker_state{stat="open"}"#).len(), 1);
    assert_eq!(check(r#"palisade_circuit_breaker_state{state="opened"}"#).len(), 1);
    assert_eq!(check("sum by (route) (palisade_circuit_breaker_state)").len(), 1);
}
