//! The committed `openapi/orders.json` matches the code.

#[test]
fn openapi_file_is_up_to_date() {
    let generated = kit::service::openapi_json(&shop_orders::SERVICE).unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../openapi/orders.json");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi/orders.json is out of date with the code: run `cargo run --bin shop -- openapi` and commit it"
    );
}
