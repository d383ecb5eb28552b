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
//! Configuration: see `kit::config` (`CONFIG_PATH`, `SHOP__*` variables); logs: `RUST_LOG`,
//! `LOG_FORMAT=json`.

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
    kit::telemetry::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("shop: {err}");
            ExitCode::FAILURE
        }
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
        "all" => service::run(SERVICES, &settings()?).await,
        "help" | "-h" | "--help" => {
            let names: Vec<_> = SERVICES.iter().map(|s| s.name).collect();
            println!("usage: shop [all | {} | migrate | openapi [dir] | keygen]", names.join(" | "));
            Ok(())
        }
        name => match SERVICES.iter().find(|s| s.name == name) {
            Some(one) => service::run(&[one], &settings()?).await,
            None => Err(format!("unknown command or service `{name}`; try `shop help`").into()),
        },
    }
}

/// The settings, refused when they hold a key no service knows (every service's keys count, so one
/// file serves `shop all` and `shop <service>` alike).
fn settings() -> Result<kit::config::Settings, kit::BoxError> {
    let settings = kit::config::Settings::load()?;
    service::check_keys(SERVICES, &settings)?;
    Ok(settings)
}
