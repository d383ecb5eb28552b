//! `shop`: runs Palisade Shop.
//!
//! ```text
//! shop all            every service, each on its own port with its own database (default)
//! shop <service>      one service (users, catalog, …)
//! shop migrate        apply every service's migrations and exit
//! shop openapi [dir]  write <dir>/<service>.json (default dir: openapi)
//! shop keygen         print a new service signing key (`signing_key`) and its `public_key`
//! ```
//!
//! Configuration: see `kit::config` (`CONFIG_PATH`, `SHOP__*` variables); SIGHUP or a change of
//! the file reloads it (`kit::reload`). Logs: `RUST_LOG` or `log_level`, `LOG_FORMAT=json`; span
//! export: `OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_SERVICE_NAME` (`kit::telemetry::otlp`).

use std::process::ExitCode;

use kit::service::{self, Service};

/// Every implemented service; adding one is one line.
const SERVICES: &[&Service] = &[
    &shop_users::SERVICE,
    &shop_catalog::SERVICE,
    &shop_inventory::SERVICE,
    &shop_payments::SERVICE,
    &shop_orders::SERVICE,
    &shop_notifications::SERVICE,
];

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Spans export over OTLP only with `OTEL_EXPORTER_OTLP_ENDPOINT` set (kit::telemetry::otlp).
    let exporter = kit::telemetry::init_exporting(service_name(&args));
    let result = run(&args).await;
    if let Some(exporter) = exporter
        && let Err(err) = exporter.shutdown().await
    {
        eprintln!("shop: the last spans could not be exported: {err}");
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("shop: {err}");
            ExitCode::FAILURE
        }
    }
}

/// The OpenTelemetry `service.name` of this process: the one service it runs, else `shop`
/// (`shop all` runs them all in one process, docs/decisions/022).
fn service_name(args: &[String]) -> &str {
    match args.first() {
        Some(name) if SERVICES.iter().any(|s| s.name == name) => name,
        _ => "shop",
    }
}

async fn run(args: &[String]) -> Result<(), kit::BoxError> {
    let command = args.first().map_or("all", String::as_str);
    match command {
        "openapi" => {
            let dir = args.get(1).map_or("openapi", String::as_str);
            service::write_openapi(SERVICES, std::path::Path::new(dir))
        }
        "migrate" => service::migrate(SERVICES, &settings()?).await,
        "keygen" => {
            // The seed is the caller's secret (`<service>.signing_key`); the public key goes into
            // each callee's `trusted_keys.<kid>.public_key` (decision 007).
            let pair = kit::service_auth::KeyPair::generate()?;
            println!("signing_key: {}", pair.seed().expose());
            println!("public_key: {}", pair.public_key());
            Ok(())
        }
        "all" => service::run(SERVICES, settings).await,
        "help" | "-h" | "--help" => {
            let names: Vec<_> = SERVICES.iter().map(|s| s.name).collect();
            println!("usage: shop [all | {} | migrate | openapi [dir] | keygen]", names.join(" | "));
            Ok(())
        }
        name => match SERVICES.iter().find(|s| s.name == name) {
            Some(one) => service::run(&[one], settings).await,
            None => Err(format!("unknown command or service `{name}`; try `shop help`").into()),
        },
    }
}

/// The settings, refused when they hold a key no service knows (every service's keys count, so one
/// file serves `shop all` and `shop <service>` alike); at start and on each reload.
fn settings() -> Result<kit::config::Settings, kit::BoxError> {
    let settings = kit::config::Settings::load()?;
    service::check_keys(SERVICES, &settings)?;
    Ok(settings)
}
