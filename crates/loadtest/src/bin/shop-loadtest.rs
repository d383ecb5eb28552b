//! `shop-loadtest`: the baseline servers and the seeding step of `make load`.
//!
//! ```text
//! shop-loadtest hello ADDR                          bare axum "hello" on ADDR
//! shop-loadtest bare-sqlite ADDR DATABASE_URL [N]   bare axum + sqlx GET /v1/products/{id} (pool N, default 8)
//! shop-loadtest breakdown VARIANT ADDR DATABASE_URL  bare-stack | bare-kit | catalog-handlers (see breakdown)
//! shop-loadtest seed BASE_URL                       create one product through the catalog API; prints its id
//! ```
//!
//! `seed` signs its admin token with `SHOP__JWT_SECRET` (the catalog's development secret when unset).

use std::process::ExitCode;

use shop_loadtest::breakdown::{self, Variant};
use shop_loadtest::{BoxError, bare, hello, seed, serve};

const USAGE: &str =
    "usage: shop-loadtest hello ADDR | bare-sqlite ADDR DATABASE_URL [POOL_SIZE] | seed BASE_URL";

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("shop-loadtest: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &[String]) -> Result<(), BoxError> {
    let arg = |i: usize| args.get(i).map(String::as_str).ok_or(USAGE);
    match arg(0)? {
        "hello" => Ok(serve(arg(1)?, hello::app()).await?),
        "bare-sqlite" => {
            let pool_size = match args.get(3) {
                Some(n) => n.parse().map_err(|_| format!("POOL_SIZE must be a number, not {n}"))?,
                None => bare::POOL_SIZE,
            };
            let pool = bare::connect(arg(2)?, pool_size).await?;
            Ok(serve(arg(1)?, bare::app(pool)).await?)
        }
        "breakdown" => {
            let variant = Variant::from_name(arg(1)?).ok_or(USAGE)?;
            Ok(serve(arg(2)?, breakdown::app(variant, arg(3)?).await?).await?)
        }
        "seed" => {
            let secret =
                std::env::var("SHOP__JWT_SECRET").unwrap_or_else(|_| kit::config::DEV_JWT_SECRET.to_owned());
            println!("{}", seed::create_product(arg(1)?, &secret).await?);
            Ok(())
        }
        "help" | "-h" | "--help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => Err(format!("unknown command `{other}`\n{USAGE}").into()),
    }
}
