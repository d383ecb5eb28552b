//! The checkout saga end to end: orders in-process, the real users, catalog and inventory on
//! loopback ports, and a fake payments with fault switches (see `support`).

mod support;

use std::time::Duration;

use http::StatusCode;
use kit::testing::assert_problem;
use serde_json::json;
use support::{Mode, Options, World};

#[tokio::test]
async fn happy_path_confirms_with_price_snapshots_and_replays_the_same_answer() {
    let world = World::start(Options::default()).await;
    let (dana_id, dana) = world.customer("dana@example.com").await;
    let mug = world.product("MUG-1", 1299, "EUR", 10).await;
    let pot = world.product("POT-1", 2500, "EUR", 5).await;
    let lines = json!([{ "product_id": mug, "quantity": 2 }, { "product_id": pot, "quantity": 1 }]);

    let (status, headers, order) = world.place(&dana, "key-1", lines.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    let id = order["id"].as_str().unwrap().to_owned();
    assert_eq!(headers["location"], format!("/v1/orders/{id}"));
    assert_eq!(order["status"], "confirmed");
    assert_eq!(order["customer_id"], dana_id.as_str());
    assert_eq!(order["total"], json!({ "amount": 5098, "currency": "EUR" }));
    assert_eq!(order["lines"][0]["sku"], "MUG-1");
    assert_eq!(order["lines"][0]["unit_price"], json!({ "amount": 1299, "currency": "EUR" }));
    assert_eq!(order["lines"][0]["line_total"], json!({ "amount": 2598, "currency": "EUR" }));
    assert_eq!(order["lines"][1]["unit_price"]["amount"], 2500);
    assert!(order["payment_id"].is_string() && order["reservation_id"].is_string(), "{order}");
    // Committed: the units left on-hand, nothing stays reserved.
    assert_eq!(world.stock("MUG-1").await, (8, 0));
    assert_eq!(world.stock("POT-1").await, (4, 0));
    let captured = world.payments.captured(&id);
    assert_eq!(captured.len(), 1);
    assert_eq!(captured[0]["amount"], json!({ "amount": 5098, "currency": "EUR" }));

    // The same key again: the same answer, one order, one charge.
    let (status, headers, again) = world.place(&dana, "key-1", lines).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(headers["idempotent-replayed"], "true");
    assert_eq!(again, order);
    let (_, _, page) = world.get(&dana, "/v1/orders").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");
    assert_eq!(world.payments.charge_calls(), 1);

    // Readable by its customer and admins; another customer gets 404.
    let (status, _, read) = world.get(&dana, &format!("/v1/orders/{id}")).await;
    assert_eq!((status, read), (StatusCode::OK, order.clone()));
    let (_, eve) = world.customer("eve@example.com").await;
    let (status, headers, body) = world.get(&eve, &format!("/v1/orders/{id}")).await;
    assert_problem(status, &headers, &body, StatusCode::NOT_FOUND);
    let (_, _, page) = world.get(&eve, "/v1/orders").await;
    assert_eq!(page["items"], json!([]));
    let (_, _, page) = world.get(&world.admin, &format!("/v1/orders?customer_id={dana_id}")).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");

    // The audit trail has every step.
    let (status, _, audit) = world.get(&world.admin, &format!("/v1/orders/{id}/audit")).await;
    assert_eq!(status, StatusCode::OK, "{audit}");
    let actions: Vec<&str> =
        audit["items"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        [
            "order.create",
            "order.step.pricing",
            "order.step.reserving",
            "order.step.charging",
            "order.step.committing",
            "order.confirmed"
        ]
    );
    let (status, _, _) = world.get(&dana, &format!("/v1/orders/{id}/audit")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // One event, written with the confirmation.
    let events = world.events().await;
    assert_eq!(events.len(), 1, "{events:?}");
    let (kind, subject, data) = &events[0];
    assert_eq!((kind.as_str(), subject.as_str()), ("order.confirmed", id.as_str()));
    assert_eq!(
        *data,
        json!({ "order_id": id, "user_id": dana_id, "total": { "amount": 5098, "currency": "EUR" }, "status": "confirmed" })
    );
}

#[tokio::test]
async fn bad_orders_are_refused_before_anything_is_reserved() {
    let world = World::start(Options::default()).await;
    let (_, dana) = world.customer("dana@example.com").await;
    let mug = world.product("MUG-1", 1299, "EUR", 10).await;
    let usd = world.product("CUP-1", 500, "USD", 10).await;

    let unknown = uuid::Uuid::new_v4().to_string();
    let lines = json!([{ "product_id": mug, "quantity": 1 }, { "product_id": unknown, "quantity": 1 }]);
    let (status, headers, body) = world.place(&dana, "k-unknown", lines).await;
    assert_problem(status, &headers, &body, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["type"].as_str().unwrap().ends_with("/unknown-product"), "{body}");
    assert_eq!(body["errors"][0]["pointer"], "#/lines/1/product_id");

    let lines = json!([{ "product_id": mug, "quantity": 1 }, { "product_id": usd, "quantity": 1 }]);
    let (status, headers, body) = world.place(&dana, "k-mixed", lines).await;
    assert_problem(status, &headers, &body, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["type"].as_str().unwrap().ends_with("/mixed-currencies"), "{body}");

    // Invalid bodies: duplicates, quantities, prices sent by the client, no lines.
    for (key, body) in [
        (
            "k-dup",
            json!({ "lines": [{ "product_id": mug, "quantity": 1 }, { "product_id": mug, "quantity": 2 }] }),
        ),
        ("k-qty", json!({ "lines": [{ "product_id": mug, "quantity": 1001 }] })),
        ("k-none", json!({ "lines": [] })),
    ] {
        let (status, headers, problem) = world.place(&dana, key, body["lines"].clone()).await;
        assert_problem(status, &headers, &problem, StatusCode::UNPROCESSABLE_ENTITY);
    }
    let mut req = support::request(
        "POST",
        "/v1/orders",
        Some(&dana),
        Some(json!({ "lines": [{ "product_id": mug, "quantity": 1, "unit_price": 1 }] })),
    );
    req.headers_mut().insert("idempotency-key", "k-price".parse().unwrap());
    let (status, _, _) = kit::testing::send(&world.orders, req).await;
    assert!(status.is_client_error(), "{status}");
    // No key: 400.
    let req = support::request("POST", "/v1/orders", Some(&dana), Some(json!({ "lines": [] })));
    let (status, _, _) = kit::testing::send(&world.orders, req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    assert_eq!(world.stock("MUG-1").await, (10, 0));
    assert_eq!(world.payments.charge_calls(), 0);
}

#[tokio::test]
async fn insufficient_stock_is_409_and_nothing_is_reserved_or_charged() {
    let world = World::start(Options::default()).await;
    let (_, dana) = world.customer("dana@example.com").await;
    let mug = world.product("MUG-1", 1299, "EUR", 10).await;
    let pot = world.product("POT-1", 2500, "EUR", 1).await;
    let lines = json!([{ "product_id": mug, "quantity": 2 }, { "product_id": pot, "quantity": 3 }]);
    let (status, headers, body) = world.place(&dana, "k1", lines).await;
    assert_problem(status, &headers, &body, StatusCode::CONFLICT);
    assert!(body["type"].as_str().unwrap().ends_with("/insufficient-stock"), "{body}");
    assert_eq!(world.stock("MUG-1").await, (10, 0));
    assert_eq!(world.stock("POT-1").await, (1, 0));
    assert_eq!(world.payments.charge_calls(), 0);
    let (_, _, page) = world.get(&dana, "/v1/orders").await;
    assert_eq!(page["items"][0]["status"], "failed");
    assert_eq!(page["items"][0]["failure_reason"], "insufficient_stock");
}

#[tokio::test]
async fn a_declined_payment_fails_the_order_and_releases_the_stock() {
    let world = World::start(Options::default()).await;
    let (_, dana) = world.customer("dana@example.com").await;
    let mug = world.product("MUG-1", 1299, "EUR", 10).await;
    world.payments.set(Mode::Decline);
    let lines = json!([{ "product_id": mug, "quantity": 3 }]);
    let (status, headers, body) = world.place(&dana, "k1", lines.clone()).await;
    assert_problem(status, &headers, &body, StatusCode::PAYMENT_REQUIRED);
    assert!(body["type"].as_str().unwrap().ends_with("/payment-declined"), "{body}");
    assert_eq!(world.stock("MUG-1").await, (10, 0));
    let (_, _, page) = world.get(&dana, "/v1/orders").await;
    let order = &page["items"][0];
    assert_eq!(
        (order["status"].as_str(), order["failure_reason"].as_str()),
        (Some("failed"), Some("payment_declined"))
    );
    // The answer is kept for the key.
    let (status, headers, again) = world.place(&dana, "k1", lines).await;
    assert_eq!(
        (status, headers["idempotent-replayed"].to_str().unwrap()),
        (StatusCode::PAYMENT_REQUIRED, "true")
    );
    assert_eq!(again, body);
    let events = world.events().await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].0, "order.failed");
    assert_eq!(events[0].2["failure_reason"], "payment_declined");
    assert_eq!(events[0].2["total"], json!({ "amount": 3897, "currency": "EUR" }));
}

#[tokio::test]
async fn payments_failing_or_down_fails_fast_and_leaves_nothing_reserved() {
    let world = World::start(Options::default()).await;
    let (_, dana) = world.customer("dana@example.com").await;
    let mug = world.product("MUG-1", 1299, "EUR", 10).await;
    world.payments.set(Mode::Fail);
    let lines = json!([{ "product_id": mug, "quantity": 3 }]);
    let (status, headers, body) = world.place(&dana, "k1", lines.clone()).await;
    assert_problem(status, &headers, &body, StatusCode::BAD_GATEWAY);
    assert_eq!(world.stock("MUG-1").await, (10, 0));
    let (_, _, page) = world.get(&dana, "/v1/orders").await;
    assert_eq!(page["items"][0]["failure_reason"], "downstream_failure");

    // A 5xx is not kept: the same key, once payments works, places a new order.
    world.payments.set(Mode::Capture);
    let (status, _, order) = world.place(&dana, "k1", lines).await;
    assert_eq!((status, order["status"].as_str()), (StatusCode::CREATED, Some("confirmed")), "{order}");
    assert_eq!(world.stock("MUG-1").await, (7, 0));
    drop(world);

    // payments unreachable (a closed port).
    let (url, _closed) = support::closed_url();
    let world = World::start(Options { payments_url: Some(url), ..Options::default() }).await;
    let (_, dana) = world.customer("dana@example.com").await;
    let mug = world.product("MUG-1", 1299, "EUR", 10).await;
    let (status, headers, body) =
        world.place(&dana, "k1", json!([{ "product_id": mug, "quantity": 3 }])).await;
    assert!(matches!(status, StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE), "{status} {body}");
    assert_problem(status, &headers, &body, status);
    assert_eq!(world.stock("MUG-1").await, (10, 0));
}

#[tokio::test]
async fn a_lost_charge_answer_is_resolved_by_the_recovery_worker_without_charging_twice() {
    let world = World::start(Options { recovery_after_secs: 3, ..Options::default() }).await;
    let (_, dana) = world.customer("dana@example.com").await;
    let mug = world.product("MUG-1", 1299, "EUR", 10).await;
    // payments captures, then its answer never arrives.
    world.payments.set(Mode::CaptureThenHang);
    let (status, headers, body) =
        world.place(&dana, "k1", json!([{ "product_id": mug, "quantity": 2 }])).await;
    assert_problem(status, &headers, &body, StatusCode::GATEWAY_TIMEOUT);
    let (_, _, page) = world.get(&dana, "/v1/orders").await;
    let id = page["items"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(page["items"][0]["status"], "pending");
    assert_eq!(page["items"][0]["step"], "charging");
    assert_eq!(world.stock("MUG-1").await, (10, 2), "held while the outcome is unknown");

    // The worker charges again with the same key: the stored answer says captured.
    world.payments.set(Mode::Capture);
    let order = world.wait_for(&id, "confirmed").await;
    assert_eq!(world.payments.captured(&id).len(), 1);
    assert_eq!(order["payment_id"], world.payments.captured(&id)[0]["id"]);
    assert_eq!(world.stock("MUG-1").await, (8, 0));
}

#[tokio::test]
async fn a_charge_that_never_happened_is_undone_by_the_recovery_worker_not_charged_anew() {
    let world = World::start(Options { recovery_after_secs: 3, ..Options::default() }).await;
    let (_, dana) = world.customer("dana@example.com").await;
    let mug = world.product("MUG-1", 1299, "EUR", 10).await;
    world.payments.set(Mode::Hang);
    let (status, _, _) = world.place(&dana, "k1", json!([{ "product_id": mug, "quantity": 1 }])).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    // The customer was told 504: a charge now would take money for an order they gave up on.
    world.payments.set(Mode::Capture);
    let (_, _, page) = world.get(&dana, "/v1/orders").await;
    let id = page["items"][0]["id"].as_str().unwrap().to_owned();
    let order = world.wait_for(&id, "failed").await;
    assert_eq!(order["failure_reason"], "abandoned");
    assert!(order["payment_id"].is_null(), "{order}");
    assert_eq!(world.stock("MUG-1").await, (10, 0));
}

#[tokio::test]
async fn cancel_refunds_a_confirmed_order_and_refuses_a_terminal_one() {
    let world = World::start(Options::default()).await;
    let (_, dana) = world.customer("dana@example.com").await;
    let (_, eve) = world.customer("eve@example.com").await;
    let mug = world.product("MUG-1", 1299, "EUR", 10).await;
    let (_, _, order) = world.place(&dana, "k1", json!([{ "product_id": mug, "quantity": 2 }])).await;
    let id = order["id"].as_str().unwrap().to_owned();
    let (status, _, _) = world.post(&eve, &format!("/v1/orders/{id}/cancel")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, cancelled) = world.post(&dana, &format!("/v1/orders/{id}/cancel")).await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    assert!(cancelled["refund_id"].is_string(), "{cancelled}");
    assert_eq!(world.payments.refunded(order["payment_id"].as_str().unwrap()), 2598);
    let (status, headers, body) = world.post(&dana, &format!("/v1/orders/{id}/cancel")).await;
    assert_problem(status, &headers, &body, StatusCode::CONFLICT);
    let kinds: Vec<String> = world.events().await.into_iter().map(|(kind, ..)| kind).collect();
    assert_eq!(kinds, ["order.confirmed", "order.cancelled"]);
}

#[tokio::test]
async fn the_recovery_worker_finishes_or_undoes_orders_left_mid_saga() {
    use shop_orders::model::{LineRequest, Money, OrderStatus, Step};
    use shop_orders::store::{Change, NewOrder, Priced, PricedLine, Stage};
    use time::OffsetDateTime;

    let world = World::start(Options { recovery_after_secs: 3, ..Options::default() }).await;
    let (dana_id, _) = world.customer("dana@example.com").await;
    let mug = world.product("MUG-1", 1000, "EUR", 10).await;
    // A second connection to orders' database: the rows a crashed instance left.
    let db = kit::db::Db::connect(&world.orders_db_url, 2).await.unwrap();
    let store = shop_orders::store::for_db(&db);
    let now = OffsetDateTime::now_utc();
    let past = now - time::Duration::seconds(5);
    let priced = Priced {
        lines: vec![PricedLine {
            sku: "MUG-1".into(),
            name: "Mug".into(),
            unit_amount: 1000,
            line_amount: 2000,
        }],
        total: Money { amount: 2000, currency: "EUR".into() },
    };
    let mut ids = Vec::new();
    for _ in 0..2 {
        let new = NewOrder {
            id: uuid::Uuid::new_v4().to_string(),
            customer_id: dana_id.clone(),
            idempotency_key: None,
            lines: vec![LineRequest { product_id: mug.clone(), quantity: 2 }],
            // Held while the test sets it up, so the worker does not take it half made.
            lease_until: now + time::Duration::minutes(1),
        };
        let order = store.create(&new, "test", now).await.unwrap();
        let change =
            Change { priced: Some(priced.clone()), ..Change::to(OrderStatus::Pending, Step::Reserving) };
        let stage = Stage { status: OrderStatus::Pending, step: Step::Account };
        store.advance(&order.id, stage, &change, "test", None, None, now).await.unwrap().unwrap();
        ids.push(order.id);
    }
    // The first crashed after inventory reserved (its answer lost); the second after it was
    // recorded and before the charge.
    let token = kit::testing::token(&world.inventory_keys, kit::auth::Role::Admin);
    for id in &ids {
        let body = json!({ "order_id": id, "lines": [{ "sku": "MUG-1", "quantity": 2 }] });
        let (status, _, reservation) = kit::testing::send(
            &world.inventory,
            support::request("POST", "/v1/reservations", Some(&token), Some(body)),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{reservation}");
        if *id == ids[1] {
            let change = Change {
                reservation_id: Some(reservation["id"].as_str().unwrap().to_owned()),
                ..Change::to(OrderStatus::Pending, Step::Charging)
            };
            let stage = Stage { status: OrderStatus::Pending, step: Step::Reserving };
            store.advance(id, stage, &change, "test", None, None, now).await.unwrap().unwrap();
        }
    }
    assert_eq!(world.stock("MUG-1").await, (10, 4));
    // The crash: their leases lapse.
    for (id, step) in [(&ids[0], Step::Reserving), (&ids[1], Step::Charging)] {
        let change = Change { lease_until: Some(past), ..Change::to(OrderStatus::Pending, step) };
        let stage = Stage { status: OrderStatus::Pending, step };
        store.advance(id, stage, &change, "test", None, None, now).await.unwrap().unwrap();
    }
    // Stopped before charging: undone. Stopped at charging with nothing captured: undone too —
    // never charged after its customer stopped waiting (see `Saga::recover`).
    let abandoned = world.wait_for(&ids[0], "failed").await;
    assert_eq!(abandoned["failure_reason"], "abandoned");
    let undone = world.wait_for(&ids[1], "failed").await;
    assert_eq!(undone["failure_reason"], "abandoned");
    assert!(world.payments.captured(&ids[1]).is_empty(), "{undone}");
    assert!(world.payments.captured(&ids[0]).is_empty());
    assert_eq!(world.stock("MUG-1").await, (10, 0));
}

#[tokio::test]
async fn inventory_down_fails_the_order_fast_without_charging() {
    let (url, _closed) = support::closed_url();
    let world = World::start(Options { inventory_url: Some(url), ..Options::default() }).await;
    let (_, dana) = world.customer("dana@example.com").await;
    let mug = world.product("MUG-1", 1299, "EUR", 10).await;
    let (status, headers, body) =
        world.place(&dana, "k1", json!([{ "product_id": mug, "quantity": 1 }])).await;
    assert!(matches!(status, StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE), "{status} {body}");
    assert_problem(status, &headers, &body, status);
    let (_, _, page) = world.get(&dana, "/v1/orders").await;
    assert_eq!(
        (page["items"][0]["status"].as_str(), page["items"][0]["failure_reason"].as_str()),
        (Some("failed"), Some("downstream_failure"))
    );
    assert_eq!(world.payments.charge_calls(), 0);
}

#[tokio::test]
async fn cancelling_an_order_stuck_at_charging_finds_the_lost_charge_and_refunds_it() {
    // The worker never runs here (first run after 10 minutes): the customer cancels first.
    let options = Options { recovery_after_secs: 3, recovery_interval_ms: 600_000, ..Options::default() };
    let world = World::start(options).await;
    let (_, dana) = world.customer("dana@example.com").await;
    let mug = world.product("MUG-1", 1299, "EUR", 10).await;
    world.payments.set(Mode::CaptureThenHang);
    let (status, _, _) = world.place(&dana, "k1", json!([{ "product_id": mug, "quantity": 2 }])).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    let (_, _, page) = world.get(&dana, "/v1/orders").await;
    let id = page["items"][0]["id"].as_str().unwrap().to_owned();
    // While its driver's lease holds, the order is not cancelled under it.
    let (status, _, body) = world.post(&dana, &format!("/v1/orders/{id}/cancel")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let mut cancelled = body;
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let (status, _, body) = world.post(&dana, &format!("/v1/orders/{id}/cancel")).await;
        cancelled = body;
        if status == StatusCode::OK {
            break;
        }
    }
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    let payment = world.payments.captured(&id)[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(cancelled["payment_id"], payment.as_str());
    assert_eq!(world.payments.refunded(&payment), 2598);
    assert_eq!(world.stock("MUG-1").await, (10, 0));
}

#[tokio::test]
async fn a_client_that_hangs_up_mid_checkout_does_not_stop_the_order_and_its_retry_gets_the_answer() {
    // No recovery worker in this test's time: whatever finishes the order is its own saga.
    let options = Options { recovery_after_secs: 600, recovery_interval_ms: 600_000, ..Options::default() };
    let world = World::start(options).await;
    let (_, dana) = world.customer("dana@example.com").await;
    let mug = world.product("MUG-1", 1299, "EUR", 10).await;
    world.payments.set(Mode::CaptureAfter(300));
    // The client gives up while the charge is on its way (the request future is dropped, as hyper
    // drops it when the connection closes).
    let gave_up = tokio::time::timeout(
        Duration::from_millis(100),
        world.place(&dana, "k1", json!([{ "product_id": mug, "quantity": 2 }])),
    )
    .await;
    assert!(gave_up.is_err(), "the charge takes 300 ms: the client left first");
    let (_, _, page) = world.get(&dana, "/v1/orders").await;
    let id = page["items"][0]["id"].as_str().unwrap().to_owned();
    let order = world.wait_for(&id, "confirmed").await;
    assert_eq!(world.payments.captured(&id).len(), 1);
    assert_eq!(world.stock("MUG-1").await, (8, 0));

    // The retry with the same key is answered with that order, not placed again.
    world.payments.set(Mode::Capture);
    let (status, _, again) = world.place(&dana, "k1", json!([{ "product_id": mug, "quantity": 2 }])).await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    assert_eq!(again["id"], order["id"]);
    assert_eq!(world.payments.captured(&id).len(), 1, "charged once");
    assert_eq!(world.stock("MUG-1").await, (8, 0));
}
