//! Shared plumbing of the Palisade Shop services, written once and used by every service.
//!
//! | module | what |
//! |---|---|
//! | [`config`] | typed settings: defaults → YAML at `CONFIG_PATH` → `SHOP__*` environment |
//! | [`secret`] | [`Secret`](secret::Secret), redacted in `Debug` |
//! | [`db`] | SQLite/PostgreSQL pools by URL, embedded migrations, [`StoreError`](db::StoreError), pool metrics |
//! | [`error`] | [`ApiError`](error::ApiError): RFC 9457 problem+json for every error |
//! | [`extract`] | `Json`, `Path`, `Query` with problem+json rejections |
//! | [`auth`] | HS256 JWTs: issue, and the `AuthUser`/`AdminUser` extractors |
//! | [`paging`] | `limit`/`offset` checks and next-page offsets for list endpoints |
//! | [`rate_limit`] | keyed token-bucket limiter with bounded memory |
//! | [`client_ip`] | the client's address, through trusted proxies' forwarding headers |
//! | [`openapi`] | the `bearer` security scheme and document assembly every service's spec shares |
//! | [`health`] | `/livez`, `/readyz` |
//! | [`ops`] | `/ops`: the live resilience page, its JSON, breaker actions |
//! | [`jobs`] | background work every interval, stopped with the service |
//! | [`telemetry`] | logging setup, the process-wide Prometheus recorder, span export over OTLP |
//! | [`server`] | the layered app, bind-first server, graceful shutdown |
//! | [`reload`] | settings reloaded on SIGHUP or a change of the file, applied to new requests |
//! | [`service_auth`] | service-to-service tokens: Ed25519 per service, audience, scopes |
//! | [`service`] | the [`Service`](service::Service) a service crate exports for the `shop` binary |
//! | [`client`] | JSON client for a downstream behind the palisade client stack |
//! | [`text`] | what a human-readable text field may hold (no control, invisible or bidi characters) |
//! | [`token_check`] | asks users whether a token is still current (revocation) |
//! | [`uow`] | the outbox event and audit entry written in a store's own transaction |
//! | [`outbox`] | transactional outbox, CloudEvents envelopes, the relay, HTTP push |
//! | [`inbox`] | consumer-side dedupe of events delivered at least once, in the effect's transaction |
//! | [`audit`] | the append-only audit trail and its reader |
//! | [`idempotency`] | server-side `Idempotency-Key`: claim, replay, expiry |

pub mod audit;
pub mod auth;
pub mod client;
pub mod client_ip;
pub mod config;
pub mod db;
pub mod error;
pub mod extract;
pub mod health;
pub mod idempotency;
pub mod inbox;
pub mod jobs;
pub mod openapi;
pub mod ops;
pub mod outbox;
pub mod paging;
pub mod rate_limit;
pub mod reload;
pub mod secret;
pub mod server;
pub mod service;
pub mod service_auth;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod text;
pub mod token_check;
pub mod uow;

pub use palisade::BoxError;
