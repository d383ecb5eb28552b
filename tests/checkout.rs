//! The checkout end to end: all six services as separate `shop <service>` processes on real loopback
//! ports (tests/support), driven over HTTP as a client would, with faults injected by killing
//! processes and through payments' provider switches (`PUT /ops/provider`).

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::Shop;

/// Changes some of payments' provider settings (`PUT` replaces them all: read, change, write).
fn provider(shop: &Shop, admin: &str, changes: &Value) {
    let (status, mut settings) = shop.get("payments", "/ops/provider", Some(admin)).unwrap();
    assert_eq!(status, 200, "{settings:?}");
    for (key, value) in changes.as_object().unwrap() {
        settings[key] = value.clone();
    }
    let reply = shop.call("payments", "PUT", "/ops/provider", Some(admin), &[], Some(&settings)).unwrap();
    assert_eq!(reply.status, 200, "{:?}", reply.body);
}

fn payments_of(shop: &Shop, admin: &str, order_id: &str) -> Vec<Value> {
    let (status, body) =
        shop.get("payments", &format!("/v1/payments?order_id={order_id}"), Some(admin)).unwrap();
    assert_eq!(status, 200, "{body:?}");
    body["items"].as_array().cloned().unwrap_or_default()
}

fn notifications(shop: &Shop, token: &str) -> Vec<Value> {
    let (status, body) = shop.get("notifications", "/v1/notifications?limit=100", Some(token)).unwrap();
    assert_eq!(status, 200, "{body:?}");
    body["items"].as_array().cloned().unwrap_or_default()
}

fn metric(shop: &Shop, service: &str, prefix: &str) -> Vec<String> {
    let reply = shop.call(service, "GET", "/metrics", None, &[], None).unwrap();
    let text = reply.body.as_str().unwrap_or_default().to_owned();
    text.lines().filter(|l| l.starts_with(prefix)).map(str::to_owned).collect()
}

fn sum(lines: &[String]) -> f64 {
    lines.iter().filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

/// Happy path, decline, idempotency (sequential and 20 concurrent), one trace through every service,
/// notifications while notifications is down, and the client metrics — on one shop.
#[test]
fn orders_confirm_decline_dedupe_trace_and_notify() {
    let mut shop = Shop::start("checkout", &[]);
    let admin = shop.admin();
    let (customer, token) = shop.customer("ada@example.com");
    let mug = shop.product(&admin, "MUG-1", 1299, 10);
    let lines = json!([{ "product_id": mug, "quantity": 2 }]);

    // 1. Happy path, with a traceparent the whole way (8).
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    let placed = shop
        .call(
            "orders",
            "POST",
            "/v1/orders",
            Some(&token),
            &[("idempotency-key", "k-1"), ("traceparent", &traceparent)],
            Some(&json!({ "lines": lines })),
        )
        .unwrap();
    assert_eq!(placed.status, 201, "{:?}", placed.body);
    assert_eq!(placed.body["status"], "confirmed", "{:?}", placed.body);
    let order_id = placed.body["id"].as_str().unwrap().to_owned();
    assert_eq!(placed.body["total"]["amount"], 2598);
    assert_eq!(shop.stock("MUG-1"), (8, 0), "two mugs left for good, none held");
    let paid = payments_of(&shop, &admin, &order_id);
    assert_eq!(paid.len(), 1, "{paid:?}");
    assert_eq!(paid[0]["status"], "captured");
    assert_eq!(paid[0]["amount"]["amount"], 2598);
    let confirmed = support::eventually(Duration::from_secs(20), "the order.confirmed notification", || {
        let found: Vec<_> = notifications(&shop, &token)
            .into_iter()
            .filter(|n| n["event_type"] == "order.confirmed")
            .collect();
        (!found.is_empty()).then_some(found)
    });
    assert_eq!(confirmed.len(), 1);
    let (status, audit) = shop.get("orders", &format!("/v1/orders/{order_id}/audit"), Some(&admin)).unwrap();
    assert_eq!(status, 200, "{audit:?}");
    assert!(audit["items"].as_array().is_some_and(|a| !a.is_empty()), "{audit:?}");
    for service in ["orders", "users", "catalog", "inventory", "payments", "notifications"] {
        support::eventually(Duration::from_secs(20), &format!("{service} logs the trace id"), || {
            shop.log(service).contains(trace_id).then_some(())
        });
    }

    // 5. The same key again: the same answer, no second order or charge.
    let again = shop.order(&token, "k-1", &lines);
    assert_eq!(again.status, 201);
    assert_eq!(again.body, placed.body);
    assert_eq!(payments_of(&shop, &admin, &order_id).len(), 1);
    // ... and 20 at once with a fresh key.
    let answers: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..20).map(|_| scope.spawn(|| shop.order(&token, "k-20", &lines))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let done: Vec<_> = answers.iter().filter(|a| a.status == 201).collect();
    assert!(!done.is_empty(), "{answers:?}");
    assert!(answers.iter().all(|a| a.status == 201 || a.status == 409), "{answers:?}");
    assert!(done.iter().all(|a| a.body == done[0].body), "identical answers");
    let after = shop.order(&token, "k-20", &lines);
    assert_eq!(after.body, done[0].body);
    let (_, mine) = shop.get("orders", "/v1/orders?limit=100", Some(&token)).unwrap();
    assert_eq!(mine["items"].as_array().unwrap().len(), 2, "two keys, two orders: {mine:?}");
    assert_eq!(shop.stock("MUG-1"), (6, 0));

    // 2. Declined: failed with its reason, stock back, nothing captured.
    provider(&shop, &admin, &json!({ "decline_rate": 1.0 }));
    let declined = shop.order(&token, "k-declined", &lines);
    assert_eq!(declined.status, 402, "{:?}", declined.body);
    let (_, list) = shop.get("orders", "/v1/orders?limit=100", Some(&token)).unwrap();
    let failed: Vec<_> =
        list["items"].as_array().unwrap().iter().filter(|o| o["status"] == "failed").cloned().collect();
    assert_eq!(failed.len(), 1, "{list:?}");
    assert_eq!(failed[0]["failure_reason"], "payment_declined");
    assert_eq!(shop.stock("MUG-1"), (6, 0), "released");
    let failed_id = failed[0]["id"].as_str().unwrap();
    assert!(payments_of(&shop, &admin, failed_id).iter().all(|p| p["status"] != "captured"));
    provider(&shop, &admin, &json!({ "decline_rate": 0.0 }));

    notifications_arrive_after_an_outage(&mut shop, &token, &mug);

    // Customers never see another customer's order.
    let (_, other) = shop.customer("bob@example.com");
    assert_eq!(shop.get("orders", &format!("/v1/orders/{order_id}"), Some(&other)).unwrap().0, 404);
    assert_eq!(shop.get("orders", &format!("/v1/orders/{order_id}"), Some(&token)).unwrap().0, 200);
    let _ = customer;

    // 10. Client durations and breaker state per downstream, and retries, on orders' /metrics.
    let durations = metric(&shop, "orders", "http_client_request_duration_seconds_count");
    for peer in ["users", "catalog", "inventory", "payments"] {
        assert!(durations.iter().any(|l| l.contains(&format!("\"{peer}\""))), "{peer}: {durations:?}");
    }
    let breakers = metric(&shop, "orders", "palisade_circuit_breaker_state");
    assert!(breakers.iter().any(|l| l.contains("payments")), "{breakers:?}");
}

/// 3 and 4: payments down (fail fast once the breaker opens, nothing held, back without a restart)
/// and payments slower than the deadline (504, compensated, payments saw the deadline).
#[test]
fn payments_down_or_slow_fails_fast_and_leaves_nothing_held() {
    let open_ms = 2_000;
    let mut shop = Shop::start(
        "payments-faults",
        &[
            ("SHOP__ORDERS__DOWNSTREAMS__PAYMENTS__BREAKER_OPEN_MS", "2000"),
            ("SHOP__ORDERS__DOWNSTREAMS__PAYMENTS__BREAKER_MINIMUM_CALLS", "3"),
            ("SHOP__ORDERS__DOWNSTREAMS__PAYMENTS__BREAKER_WINDOW_CALLS", "5"),
            // 10 % of it (the fail-fast bound below) leaves room for the whole saga of a debug
            // build on a busy 2-core machine; the slow case uses its own 800 ms deadline.
            ("SHOP__ORDERS__DOWNSTREAMS__PAYMENTS__ATTEMPT_TIMEOUT_MS", "5000"),
            ("SHOP__ORDERS__DOWNSTREAMS__PAYMENTS__TOTAL_BUDGET_MS", "6000"),
            ("SHOP__ORDERS__RECOVERY_AFTER_SECS", "2"),
            ("SHOP__ORDERS__RECOVERY_INTERVAL_MS", "200"),
        ],
    );
    let admin = shop.admin();
    let (_, token) = shop.customer("ada@example.com");
    let mug = shop.product(&admin, "MUG-2", 500, 100);
    let lines = json!([{ "product_id": mug, "quantity": 1 }]);

    // 4. Slower than the caller's deadline.
    provider(&shop, &admin, &json!({ "hang_rate": 1.0 }));
    let before = sum(&metric(&shop, "payments", "shop_payments_abandoned_total"));
    let slow = shop
        .call(
            "orders",
            "POST",
            "/v1/orders",
            Some(&token),
            &[("idempotency-key", "slow"), ("x-request-timeout-ms", "800")],
            Some(&json!({ "lines": lines })),
        )
        .unwrap();
    assert_eq!(slow.status, 504, "{:?}", slow.body);
    provider(&shop, &admin, &json!({ "hang_rate": 0.0 }));
    support::eventually(Duration::from_secs(10), "payments abandoned the request at its deadline", || {
        (sum(&metric(&shop, "payments", "shop_payments_abandoned_total")) > before).then_some(())
    });
    support::eventually(Duration::from_secs(30), "the slow order is compensated: nothing held", || {
        (shop.stock("MUG-2") == (100, 0)).then_some(())
    });

    shop.kill("payments");
    let mut fast = None;
    for i in 0..20 {
        let started = Instant::now();
        let reply = shop.order(&token, &format!("down-{i}"), &lines);
        assert!(matches!(reply.status, 502..=504), "{i}: {reply:?}");
        assert_eq!(reply.header("content-type"), Some("application/problem+json"));
        if reply.status == 503 && reply.header("retry-after").is_some() {
            fast = Some(started.elapsed());
            break;
        }
    }
    let fast = fast.expect("the payments breaker opened within 20 orders");
    assert!(
        fast < Duration::from_millis(500),
        "an open breaker answers within 10 % of the 5 s attempt timeout, the whole saga included: {fast:?}"
    );
    assert_eq!(shop.stock("MUG-2").1, 0, "nothing stays reserved");

    shop.start_service("payments");
    let back = Instant::now();
    support::eventually(
        Duration::from_millis(open_ms + 5_000),
        "orders succeed again without a restart",
        || {
            (shop.order(&token, &format!("back-{}", back.elapsed().as_millis()), &lines).status == 201)
                .then_some(())
        },
    );
    assert_eq!(shop.stock("MUG-2"), (99, 0));
}

/// 6: orders killed while its charge is in flight, then restarted: the recovery worker confirms or
/// refunds; never money taken without a confirmed order or a refund.
#[test]
fn an_order_interrupted_by_a_crash_is_finished_or_refunded_after_restart() {
    let mut shop = Shop::start(
        "crash",
        &[("SHOP__ORDERS__RECOVERY_AFTER_SECS", "1"), ("SHOP__ORDERS__RECOVERY_INTERVAL_MS", "200")],
    );
    let admin = shop.admin();
    let (_, token) = shop.customer("ada@example.com");
    let mug = shop.product(&admin, "MUG-3", 700, 10);
    provider(&shop, &admin, &json!({ "latency_ms_p50": 1500, "latency_ms_p99": 1500 }));
    let port = shop.ports["orders"];
    let placing = std::thread::spawn({
        let token = token.clone();
        let body = json!({ "lines": [{ "product_id": mug, "quantity": 3 }] });
        move || {
            support::http(
                port,
                "POST",
                "/v1/orders",
                Some(&token),
                &[("idempotency-key", "crash-1")],
                Some(&body),
            )
        }
    });
    // The charge takes 1.5 s at the provider: kill orders while it waits for it.
    std::thread::sleep(Duration::from_millis(700));
    shop.kill("orders");
    let _ = placing.join();
    provider(&shop, &admin, &json!({ "latency_ms_p50": 2, "latency_ms_p99": 10 }));
    shop.start_service("orders");
    let (_, list) = support::eventually(Duration::from_secs(60), "the interrupted order is terminal", || {
        let (status, body) = shop.get("orders", "/v1/orders?limit=10", Some(&token)).unwrap();
        let items = body["items"].as_array()?.clone();
        (status == 200
            && !items.is_empty()
            && items.iter().all(|o| o["status"] == "confirmed" || o["status"] == "failed"))
        .then_some((status, body))
    });
    let order = &list["items"][0];
    let paid = payments_of(&shop, &admin, order["id"].as_str().unwrap());
    let captured: i64 = paid
        .iter()
        .filter(|p| p["status"] == "captured")
        .map(|p| p["amount"]["amount"].as_i64().unwrap())
        .sum();
    let refunded: i64 = paid.iter().map(|p| p["refunded"]["amount"].as_i64().unwrap_or(0)).sum();
    if order["status"] == "confirmed" {
        assert_eq!(captured - refunded, 2100, "{order:?} {paid:?}");
        assert_eq!(shop.stock("MUG-3"), (7, 0));
    } else {
        assert_eq!(captured - refunded, 0, "failed order keeps no money: {order:?} {paid:?}");
        assert_eq!(shop.stock("MUG-3"), (10, 0));
    }
}

/// 7. Notifications down while orders are placed: each arrives once it is back, none twice.
fn notifications_arrive_after_an_outage(shop: &mut Shop, token: &str, mug: &str) {
    shop.kill("notifications");
    for i in 0..3 {
        assert_eq!(
            shop.order(token, &format!("k-down-{i}"), &json!([{ "product_id": mug, "quantity": 1 }])).status,
            201
        );
    }
    shop.start_service("notifications");
    let all = support::eventually(Duration::from_secs(30), "5 order.confirmed notifications", || {
        let found: Vec<_> =
            notifications(shop, token).into_iter().filter(|n| n["event_type"] == "order.confirmed").collect();
        (found.len() >= 5).then_some(found)
    });
    std::thread::sleep(Duration::from_secs(1));
    let settled =
        notifications(shop, token).into_iter().filter(|n| n["event_type"] == "order.confirmed").count();
    assert_eq!((all.len(), settled), (5, 5), "every confirmation once, none twice");
}
