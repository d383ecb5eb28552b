//! `shop-loadtest`: the baseline servers and the seeding step of `make load`.
//!
//! ```text
//! shop-loadtest hello ADDR                          bare axum "hello" on ADDR
//! shop-loadtest bare-sqlite ADDR DATABASE_URL [N]   bare axum + sqlx GET /v1/products/{id} (pool N, default 8)
//! shop-loadtest breakdown VARIANT ADDR DATABASE_URL  bare-stack | bare-kit | catalog-handlers (see breakdown)
//! shop-loadtest seed BASE_URL                       create one product through the catalog API; prints its id
//! shop-loadtest commits normal|full PER_ORDER SECONDS [CONCURRENCY]  the floor of a durability setting (commits)
//! ```
//!
//! `seed` signs its admin token with `SHOP__JWT_SECRET` (the catalog's development secret when unset).

use std::process::ExitCode;

use shop_loadtest::breakdown::{self, Variant};
use shop_loadtest::{BoxError, bare, commits, hello, seed, serve};

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
            Ok(serve(arg(1)?, bare::app(&pool)).await?)
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
        "commits" => {
            let number = |i: usize| -> Result<u32, BoxError> {
                let text = arg(i)?;
                text.parse().map_err(|_| format!("{text} is not a number").into())
            };
            let floor = commits::Floor {
                dir: std::env::temp_dir().join(format!("shop-floor-{}", std::process::id())),
                full: match arg(1)? {
                    "full" => true,
                    "normal" => false,
                    other => return Err(format!("synchronous must be normal or full, not {other}").into()),
                },
                per_order: number(2)?,
                files: 3,
                concurrency: if args.len() > 4 { number(4)? } else { 32 },
                duration: std::time::Duration::from_secs(u64::from(number(3)?)),
            };
            let (orders, commits, elapsed) = commits::run(&floor).await?;
            let _ = std::fs::remove_dir_all(&floor.dir);
            let secs = elapsed.as_secs_f64();
            println!(
                "{:<20} {:>10.0} orders/s  ({} commits per order, {:.0} commits/s, synchronous={}, {} in flight)",
                "floor",
                orders as f64 / secs,
                floor.per_order,
                commits as f64 / secs,
                arg(1)?,
                floor.concurrency
            );
            Ok(())
        }
        "help" | "-h" | "--help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => Err(format!("unknown command `{other}`\n{USAGE}").into()),
    }
}
