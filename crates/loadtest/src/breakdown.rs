//! Variants between [`bare`] and the full catalog, to see where the catalog's time
//! goes (`BREAKDOWN=1 make load`). Each adds one thing to the previous:
//!
//! | variant | what runs |
//! |---|---|
//! | `bare-stack` | the bare handler behind the palisade [`ServerStack`] only (with the kit's logging and Prometheus recorder, as `shop` installs them) |
//! | `bare-kit` | the bare handler behind everything [`kit::server::app`] adds: the stack, `ProblemContextLayer`, body limit, JWT keys extension, and the operational routes beside it |
//! | `catalog-handlers` | the catalog's own `/v1` routes (kit extractors, `Store` trait object, cache lookup with the cache off) with no layers |
//!
//! The full catalog itself is `shop catalog`.

use std::time::Duration;

use axum::Router;
use kit::auth::JwtKeys;
use kit::config::ServiceConfig;
use kit::db::Db;
use kit::health::Health;
use palisade::stack::ServerStack;
use shop_catalog::api::AppState;
use shop_catalog::cache::{CacheConfig, ProductCache};

use crate::{BoxError, bare};

/// One breakdown variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// The bare handler behind the palisade server stack.
    BareStack,
    /// The bare handler behind the kit's whole server assembly.
    BareKit,
    /// The catalog's routes without layers.
    CatalogHandlers,
}

impl Variant {
    /// Every variant, in the order the breakdown runs them.
    pub const ALL: [Self; 3] = [Self::BareStack, Self::BareKit, Self::CatalogHandlers];

    /// The name on the command line and in the table.
    pub const fn name(self) -> &'static str {
        match self {
            Self::BareStack => "bare-stack",
            Self::BareKit => "bare-kit",
            Self::CatalogHandlers => "catalog-handlers",
        }
    }

    /// The variant called `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.name() == name)
    }
}

/// The router of `variant` on the catalog's SQLite database at `url`, with the catalog's default
/// settings (pool size, timeout, body limit).
pub async fn app(variant: Variant, url: &str) -> Result<Router, BoxError> {
    let config = ServiceConfig::defaults("catalog", 0);
    let db = bare::connect(url, config.db_max_connections).await?;
    match variant {
        Variant::BareStack => {
            kit::telemetry::init();
            let _recorder = kit::telemetry::prometheus();
            let stack = ServerStack::builder().name("catalog").timeout(config.request_timeout()).build()?;
            Ok(bare::app(&db).layer(stack))
        }
        Variant::BareKit => {
            kit::telemetry::init();
            let health =
                Health::new(Db::Sqlite(db.clone()), Duration::from_millis(config.readiness_timeout_ms));
            let keys = JwtKeys::new(b"breakdown-variant-unused-secret", Duration::from_secs(60));
            let openapi = utoipa::openapi::OpenApiBuilder::new().build();
            Ok(kit::server::app("catalog", bare::app(&db), openapi, &health, &config, keys, None)?)
        }
        Variant::CatalogHandlers => {
            let state = AppState {
                store: shop_catalog::store::for_db(&Db::Sqlite(db)),
                cache: std::sync::Arc::new(ProductCache::new(&CacheConfig {
                    ttl_ms: 0,
                    ..CacheConfig::default()
                })),
            };
            let (router, _) = shop_catalog::api::router().split_for_parts();
            Ok(router.with_state(state))
        }
    }
}
