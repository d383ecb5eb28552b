//! The transactional outbox: a service announces a change by writing an [`Event`] in the change's own
//! transaction ([`UnitOfWork::publish`](crate::uow::UnitOfWork::publish)); the relay ([`Outbox::spawn_relay`]) delivers it
//! afterwards, at least once, to every subscriber of its type, through a [`Transport`].
//!
//! - **Envelope**: CloudEvents 1.0, structured JSON (`application/cloudevents+json`, [`Envelope`]),
//!   with the producing request's `traceparent` (the CloudEvents distributed-tracing extension), so
//!   the consumer's work joins the producer's trace.
//! - **At least once**: an event is marked delivered only after every subscriber answered 2xx; a
//!   failed delivery is tried again with exponential backoff (only for the subscribers that did not
//!   get it yet, [`kit_outbox_deliveries`]); consumers dedupe by event id ([`crate::inbox`]).
//! - **Never dropped silently**: after `max_attempts` failed attempts an event is parked as dead:
//!   counted (`shop_outbox_dead`), listed and replayable by admins ([`Outbox::dead`],
//!   [`Outbox::replay`]).
//! - **A paused subscriber is not a failed attempt**: when the transport says it did not send at
//!   all because the way to the subscriber is paused ([`Paused`]: its circuit breaker is open), the
//!   event waits until the pause ends and keeps its attempts — otherwise a breaker opened by a short
//!   outage would burn through `max_attempts` in seconds and park healthy events as dead.
//! - **Several replicas**: the relay claims a batch in a transaction (`FOR UPDATE SKIP LOCKED` on
//!   PostgreSQL) and marks it claimed for `claim_ms`, so two relays never send the same event at
//!   once, and a relay that dies mid-batch leaves its events to the next one after the claim lapses.
//!
//! The embedded transport is [`HttpPush`]: a POST to each subscriber listed in the producer's
//! settings (`<service>.events.subscribers.<name>: {url, path, types}`), through the palisade client
//! stack. A broker (NATS JetStream) is another [`Transport`]; the services do not change.
//!
//! Metrics (label `service`): `shop_outbox_backlog` (gauge: events not yet delivered),
//! `shop_outbox_dead` (gauge: events parked as dead), `shop_outbox_delivered_total` and
//! `shop_outbox_failed_attempts_total`, `shop_outbox_paused_total` (counters).
//!
//! [`kit_outbox_deliveries`]: ../../../migrations/kit/sqlite/1000001_outbox_idempotency_audit.sql

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::{BoxFuture, join_all};
use http::Method;
use palisade::trace::{TraceContext, TraceParent};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::BoxError;
use crate::client::Downstream;
use crate::config::DownstreamConfig;
use crate::db::{Db, StoreError};
use crate::jobs::Job;
use crate::service_auth::ServiceSigner;

/// The `Content-Type` of a structured CloudEvent.
pub const CLOUDEVENTS_JSON: &str = "application/cloudevents+json";
/// The scope a producer's service token carries on its pushes to a subscriber.
pub const DELIVER_SCOPE: &str = "events:deliver";

/// A new event, written with [`UnitOfWork::publish`](crate::uow::UnitOfWork::publish).
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// The CloudEvents `id`: unique per event, what consumers dedupe by.
    pub id: Uuid,
    /// `type` (`user.registered`).
    pub event_type: String,
    /// `subject`: the entity the event is about (its id).
    pub subject: String,
    /// `data`, JSON.
    pub data: serde_json::Value,
    /// The `traceparent` of the request that made the change, if any.
    pub traceparent: Option<String>,
    /// `time`.
    pub time: OffsetDateTime,
}

impl Event {
    /// An event of `event_type` about `subject` carrying `data`, now, in the current trace.
    pub fn new(event_type: &str, subject: &str, data: &impl Serialize) -> Result<Self, serde_json::Error> {
        Ok(Self {
            id: Uuid::new_v4(),
            event_type: event_type.to_owned(),
            subject: subject.to_owned(),
            data: serde_json::to_value(data)?,
            traceparent: TraceContext::current().map(|context| context.traceparent().to_string()),
            time: crate::db::now(),
        })
    }
}

/// A CloudEvents 1.0 event in the structured JSON format, as sent and as received.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Envelope {
    /// Always `1.0`.
    pub specversion: String,
    /// Unique per event within its source.
    pub id: String,
    /// The producer: `/shop/<service>`.
    pub source: String,
    /// The kind of event (`order.confirmed`).
    #[serde(rename = "type")]
    pub event_type: String,
    /// The entity the event is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// When the change happened (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// `application/json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datacontenttype: Option<String>,
    /// The event's payload.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    /// The distributed-tracing extension: the producing request's W3C `traceparent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

impl Envelope {
    /// The trace context to continue for this event (a child of its `traceparent`), if it has a
    /// valid one.
    pub fn trace(&self) -> Option<TraceContext> {
        let parent = TraceParent::parse(self.traceparent.as_deref()?.as_bytes()).ok()?;
        Some(TraceContext::child_of(&parent, None))
    }
}

/// How an event reaches its subscribers: HTTP push ([`HttpPush`]) or a broker.
pub trait Transport: Send + Sync + std::fmt::Debug + 'static {
    /// The subscribers that want events of `event_type`.
    fn subscribers(&self, event_type: &str) -> Vec<String>;

    /// Delivers `event` to `subscriber`; `Ok` once it has accepted it.
    fn deliver<'a>(&'a self, subscriber: &'a str, event: &'a Envelope)
    -> BoxFuture<'a, Result<(), BoxError>>;
}

/// A [`Transport`]'s error for a delivery it did not even try: the way to the subscriber is paused
/// (an open circuit breaker) for `retry_after`. The relay waits that long and counts no attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Paused {
    /// When to try again.
    pub retry_after: Duration,
}

impl std::fmt::Display for Paused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "deliveries paused for {} ms (circuit open)", self.retry_after.as_millis())
    }
}

impl std::error::Error for Paused {}

/// How delivering one event went.
#[derive(Debug)]
enum Outcome {
    /// Every subscriber has it.
    Delivered,
    /// An attempt failed (the first failure).
    Failed(String),
    /// Nothing failed, but some subscriber was not tried: paused for this long.
    Paused(Duration, String),
}

/// One subscriber of a producer's events (`<service>.events.subscribers.<name>`).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SubscriberConfig {
    /// The subscriber's base URL (`http://127.0.0.1:8086`).
    pub url: String,
    /// Where it accepts events (default `/v1/events`).
    pub path: String,
    /// The event types it wants: exact (`order.confirmed`), a prefix (`order.*`) or `*` (default).
    pub types: Vec<String>,
    /// Timeout of one delivery attempt (the relay retries with its own backoff).
    pub attempt_timeout_ms: u64,
}

impl Default for SubscriberConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            path: "/v1/events".to_owned(),
            types: vec!["*".to_owned()],
            attempt_timeout_ms: 2_000,
        }
    }
}

impl SubscriberConfig {
    /// Whether this subscriber wants `event_type`.
    pub fn wants(&self, event_type: &str) -> bool {
        self.types.iter().any(|pattern| match pattern.strip_suffix('*') {
            Some(prefix) => event_type.starts_with(prefix),
            None => pattern == event_type,
        })
    }
}

/// A service's outbox settings (`<service>.events`).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboxConfig {
    /// How often the relay looks for events to send (default 200 ms).
    pub relay_interval_ms: u64,
    /// Events claimed per relay run (default 100).
    pub batch: u32,
    /// Failed attempts before an event is parked as dead (default 12, about 18 minutes of backoff).
    pub max_attempts: u32,
    /// First retry delay; it doubles per failed attempt (default 500 ms).
    pub backoff_base_ms: u64,
    /// Longest retry delay (default 300 000 ms).
    pub backoff_max_ms: u64,
    /// How long a claimed event is left to the relay that claimed it (default 30 000 ms).
    pub claim_ms: u64,
    /// Who gets the events, by name.
    pub subscribers: BTreeMap<String, SubscriberConfig>,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            relay_interval_ms: 200,
            batch: 100,
            max_attempts: 12,
            backoff_base_ms: 500,
            backoff_max_ms: 300_000,
            claim_ms: 30_000,
            subscribers: BTreeMap::new(),
        }
    }
}

impl OutboxConfig {
    /// Rejects values that cannot work, naming the key under `<service>.events`.
    pub fn validate(&self, service: &str) -> Result<(), BoxError> {
        let key = |name: &str| format!("{service}.events.{name}");
        if self.relay_interval_ms < 10 {
            return Err(format!("{} must be at least 10", key("relay_interval_ms")).into());
        }
        if self.batch == 0 || self.max_attempts == 0 {
            return Err(format!("{} and {} must be at least 1", key("batch"), key("max_attempts")).into());
        }
        if self.backoff_base_ms == 0 || self.backoff_max_ms < self.backoff_base_ms {
            return Err(format!(
                "{} must be at least 1 and at most {}",
                key("backoff_base_ms"),
                key("backoff_max_ms")
            )
            .into());
        }
        if self.claim_ms < 1_000 {
            return Err(format!("{} must be at least 1000", key("claim_ms")).into());
        }
        for (name, subscriber) in &self.subscribers {
            let client = DownstreamConfig { url: subscriber.url.clone(), ..DownstreamConfig::default() };
            client.validate(name).map_err(|e| format!("{}: {e}", key(&format!("subscribers.{name}"))))?;
            if !subscriber.path.starts_with('/') {
                return Err(format!("{} must start with /", key(&format!("subscribers.{name}.path"))).into());
            }
        }
        Ok(())
    }

    /// The delay before attempt `attempts + 1`, after `attempts` failed ones.
    fn backoff(&self, attempts: u32) -> Duration {
        let factor = 1u64 << attempts.saturating_sub(1).min(30);
        Duration::from_millis(self.backoff_base_ms.saturating_mul(factor).min(self.backoff_max_ms))
    }
}

/// HTTP push: each event is POSTed as a structured CloudEvent to each subscriber that wants it,
/// through the client stack (breaker, trace, metrics per subscriber).
#[derive(Debug)]
pub struct HttpPush {
    subscribers: Vec<(String, SubscriberConfig, Downstream)>,
}

impl HttpPush {
    /// A transport for the subscribers in `config`. With `signer`, each push carries the producer's
    /// service token for the subscriber (audience: the subscriber's name, scope [`DELIVER_SCOPE`]).
    pub fn new(
        config: &OutboxConfig,
        signer: Option<&ServiceSigner>,
    ) -> Result<Self, palisade::InvalidConfig> {
        let subscribers = config
            .subscribers
            .iter()
            .map(|(name, subscriber)| {
                let client = DownstreamConfig {
                    url: subscriber.url.clone(),
                    attempt_timeout_ms: subscriber.attempt_timeout_ms,
                    total_budget_ms: subscriber.attempt_timeout_ms,
                    // The relay retries with its own backoff, across runs.
                    retry_max_attempts: 1,
                    ..DownstreamConfig::default()
                };
                let mut downstream = Downstream::fixed(&format!("events-{name}"), &client)?;
                if let Some(signer) = signer {
                    downstream = downstream.authenticated(signer.clone(), name, &[DELIVER_SCOPE]);
                }
                Ok((name.clone(), subscriber.clone(), downstream))
            })
            .collect::<Result<_, palisade::InvalidConfig>>()?;
        Ok(Self { subscribers })
    }
}

impl Transport for HttpPush {
    fn subscribers(&self, event_type: &str) -> Vec<String> {
        self.subscribers
            .iter()
            .filter(|(_, config, _)| config.wants(event_type))
            .map(|(name, _, _)| name.clone())
            .collect()
    }

    fn deliver<'a>(
        &'a self,
        subscriber: &'a str,
        event: &'a Envelope,
    ) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            let Some((_, config, client)) = self.subscribers.iter().find(|(name, _, _)| name == subscriber)
            else {
                return Err(format!("no subscriber {subscriber} is configured any more").into());
            };
            let body = Bytes::from(serde_json::to_vec(event)?);
            let headers = [("content-type", CLOUDEVENTS_JSON)];
            let reply = client
                .call(Method::POST, &config.path, Some(body), &headers, event.trace())
                .await
                .map_err(|err| -> BoxError {
                    match err.circuit_open() {
                        Some(retry_after) => Box::new(Paused { retry_after }),
                        None => Box::new(err),
                    }
                })?;
            if reply.status.is_success() {
                Ok(())
            } else {
                Err(format!("{subscriber} answered {}", reply.status).into())
            }
        })
    }
}

/// A dead event, for admins.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DeadEvent {
    /// The event as it would be sent.
    pub event: Envelope,
    /// Failed attempts.
    pub attempts: u32,
    /// The last failure.
    pub last_error: Option<String>,
    /// When it was parked (RFC 3339).
    pub dead_at: String,
}

/// A service's outbox: what its relay sends, and the admin view of it.
#[derive(Clone, Debug)]
pub struct Outbox {
    service: Arc<str>,
    db: Db,
    config: Arc<OutboxConfig>,
    transport: Arc<dyn Transport>,
}

type Row = (String, String, String, String, Option<String>, i64, i64);

impl Outbox {
    /// The outbox of `service` in `db`, sending through `transport`.
    pub fn new(service: &str, db: Db, config: OutboxConfig, transport: Arc<dyn Transport>) -> Self {
        Self { service: service.into(), db, config: Arc::new(config), transport }
    }

    /// Starts the relay: a [`Job`] every `relay_interval_ms`, until the pool closes or the job is
    /// dropped.
    pub fn spawn_relay(&self) -> Job {
        let outbox = self.clone();
        Job::spawn(
            "outbox-relay",
            &self.db,
            Duration::from_millis(self.config.relay_interval_ms),
            move || {
                let outbox = outbox.clone();
                async move {
                    match outbox.relay_once().await {
                        Ok(sent) => sent >= outbox.config.batch as usize,
                        Err(err) => {
                            tracing::warn!(service = %outbox.service, error = %err, "outbox relay run failed");
                            false
                        }
                    }
                }
            },
        )
    }

    /// One relay run: claims due events (at most `batch`), delivers them, records the outcome, and
    /// updates the gauges. Returns how many events it claimed.
    pub async fn relay_once(&self) -> Result<usize, StoreError> {
        let now = millis(OffsetDateTime::now_utc());
        let claimed = self.claim(now).await?;
        let outcomes = join_all(claimed.iter().map(|row| self.deliver(row))).await;
        for (row, outcome) in claimed.iter().zip(outcomes) {
            self.settle(row, outcome).await?;
        }
        self.gauges().await?;
        Ok(claimed.len())
    }

    async fn claim(&self, now: i64) -> Result<Vec<Row>, StoreError> {
        let until = now.saturating_add(i64::try_from(self.config.claim_ms).unwrap_or(i64::MAX));
        macro_rules! claim {
            ($pool:expr) => {{
                use crate::db::SqlPool as _;
                let pool = $pool;
                let sql = format!(
                    "SELECT id, type, subject, data, traceparent, created_at, attempts FROM kit_outbox \
                     WHERE delivered_at IS NULL AND dead_at IS NULL AND next_attempt_at <= $1 AND claimed_until <= $1 \
                     ORDER BY seq LIMIT $2{}",
                    pool.dialect().claim_lock
                );
                let mut tx = pool.begin_write().await?;
                let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(now)
                    .bind(i64::from(self.config.batch))
                    .fetch_all(&mut *tx)
                    .await?;
                for row in &rows {
                    sqlx::query("UPDATE kit_outbox SET claimed_until = $2 WHERE id = $1")
                        .bind(&row.0)
                        .bind(until)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                rows
            }};
        }
        Ok(match &self.db {
            Db::Sqlite(pool) => claim!(pool),
            Db::Postgres(pool) => claim!(pool),
        })
    }

    /// Sends one event to each subscriber that wants it and does not have it yet.
    async fn deliver(&self, row: &Row) -> Outcome {
        let envelope = self.envelope(row);
        let delivered = match self.delivered_to(&row.0).await {
            Ok(delivered) => delivered,
            Err(err) => return Outcome::Failed(err.to_string()),
        };
        let (mut failure, mut paused) = (None, None);
        for subscriber in self.transport.subscribers(&envelope.event_type) {
            if delivered.contains(&subscriber) {
                continue;
            }
            match self.transport.deliver(&subscriber, &envelope).await {
                Ok(()) => {
                    if let Err(err) = self.record_delivery(&row.0, &subscriber).await {
                        failure.get_or_insert_with(|| err.to_string());
                    }
                }
                Err(err) => {
                    tracing::debug!(event = %envelope.id, %subscriber, error = %err, "event delivery failed");
                    let why = format!("{subscriber}: {err}");
                    if let Some(pause) = err.downcast_ref::<Paused>() {
                        paused = paused.max(Some((pause.retry_after, why)));
                    } else {
                        failure.get_or_insert(why);
                    }
                }
            }
        }
        match (failure, paused) {
            (Some(failure), _) => Outcome::Failed(failure),
            (None, Some((wait, why))) => Outcome::Paused(wait, why),
            (None, None) => Outcome::Delivered,
        }
    }

    fn envelope(&self, (id, event_type, subject, data, traceparent, created_at, _): &Row) -> Envelope {
        Envelope {
            specversion: "1.0".to_owned(),
            id: id.clone(),
            source: format!("/shop/{}", self.service),
            event_type: event_type.clone(),
            subject: Some(subject.clone()),
            time: from_millis(*created_at).format(&time::format_description::well_known::Rfc3339).ok(),
            datacontenttype: Some("application/json".to_owned()),
            data: serde_json::from_str(data).unwrap_or(serde_json::Value::Null),
            traceparent: traceparent.clone(),
        }
    }

    async fn delivered_to(&self, event_id: &str) -> Result<Vec<String>, StoreError> {
        const SQL: &str = "SELECT subscriber FROM kit_outbox_deliveries WHERE event_id = $1";
        Ok(match &self.db {
            Db::Sqlite(pool) => sqlx::query_scalar(SQL).bind(event_id).fetch_all(pool).await?,
            Db::Postgres(pool) => sqlx::query_scalar(SQL).bind(event_id).fetch_all(pool).await?,
        })
    }

    async fn record_delivery(&self, event_id: &str, subscriber: &str) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO kit_outbox_deliveries (event_id, subscriber, delivered_at) VALUES ($1, $2, $3) \
                           ON CONFLICT (event_id, subscriber) DO NOTHING";
        let now = millis(OffsetDateTime::now_utc());
        match &self.db {
            Db::Sqlite(pool) => {
                sqlx::query(SQL).bind(event_id).bind(subscriber).bind(now).execute(pool).await.map(drop)?;
            }
            Db::Postgres(pool) => {
                sqlx::query(SQL).bind(event_id).bind(subscriber).bind(now).execute(pool).await.map(drop)?;
            }
        }
        Ok(())
    }

    /// Records the outcome of one event's run: delivered, to be retried after the backoff, or dead.
    async fn settle(&self, row: &Row, outcome: Outcome) -> Result<(), StoreError> {
        let now = millis(OffsetDateTime::now_utc());
        let service = self.service.to_string();
        // Every statement binds the same four values ($1 id, $2 now, $3 error, $4 next attempt).
        let (sql, next, error): (&str, i64, Option<String>) = match outcome {
            Outcome::Paused(wait, why) => {
                metrics::counter!("shop_outbox_paused_total", "service" => service).increment(1);
                // At least the relay's own pace, so a zero wait does not spin.
                let wait = wait.max(Duration::from_millis(self.config.relay_interval_ms));
                (
                    "UPDATE kit_outbox SET claimed_until = 0, last_error = $3, next_attempt_at = $4 \
                     WHERE id = $1 AND $2 >= 0",
                    now.saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX)),
                    Some(why),
                )
            }
            Outcome::Delivered => {
                metrics::counter!("shop_outbox_delivered_total", "service" => service).increment(1);
                (
                    "UPDATE kit_outbox SET delivered_at = $2, claimed_until = 0, last_error = $3, \
                     next_attempt_at = $4 WHERE id = $1",
                    now,
                    None,
                )
            }
            Outcome::Failed(err) => {
                metrics::counter!("shop_outbox_failed_attempts_total", "service" => service).increment(1);
                let attempts = u32::try_from(row.6.saturating_add(1)).unwrap_or(u32::MAX);
                if attempts >= self.config.max_attempts {
                    tracing::warn!(
                        service = %self.service, event = %row.0, r#type = %row.1, attempts, error = %err,
                        "event parked as dead after its last attempt; replay it once the subscriber is fixed"
                    );
                    (
                        "UPDATE kit_outbox SET attempts = attempts + 1, dead_at = $2, claimed_until = 0, \
                         last_error = $3, next_attempt_at = $4 WHERE id = $1",
                        now,
                        Some(err),
                    )
                } else {
                    let delay = i64::try_from(self.config.backoff(attempts).as_millis()).unwrap_or(i64::MAX);
                    (
                        "UPDATE kit_outbox SET attempts = attempts + 1, claimed_until = 0, last_error = $3, \
                         next_attempt_at = $4 WHERE id = $1 AND $2 >= 0",
                        now.saturating_add(delay),
                        Some(err),
                    )
                }
            }
        };
        macro_rules! run {
            ($pool:expr) => {
                sqlx::query(sql)
                    .bind(&row.0)
                    .bind(now)
                    .bind(&error)
                    .bind(next)
                    .execute($pool)
                    .await
                    .map(drop)?
            };
        }
        match &self.db {
            Db::Sqlite(pool) => run!(pool),
            Db::Postgres(pool) => run!(pool),
        }
        Ok(())
    }

    /// Sets the gauges from [`Outbox::counts`].
    async fn gauges(&self) -> Result<(u64, u64), StoreError> {
        let (backlog, dead) = self.counts().await?;
        let service = self.service.to_string();
        #[allow(clippy::cast_precision_loss)] // counts far below 2^52
        {
            metrics::gauge!("shop_outbox_backlog", "service" => service.clone()).set(backlog as f64);
            metrics::gauge!("shop_outbox_dead", "service" => service).set(dead as f64);
        }
        Ok((backlog, dead))
    }

    /// Events not yet delivered (and not dead), and dead events.
    pub async fn counts(&self) -> Result<(u64, u64), StoreError> {
        const SQL: &str = "SELECT \
            (SELECT COUNT(*) FROM kit_outbox WHERE delivered_at IS NULL AND dead_at IS NULL), \
            (SELECT COUNT(*) FROM kit_outbox WHERE dead_at IS NOT NULL)";
        let (backlog, dead): (i64, i64) = match &self.db {
            Db::Sqlite(pool) => sqlx::query_as(SQL).fetch_one(pool).await?,
            Db::Postgres(pool) => sqlx::query_as(SQL).fetch_one(pool).await?,
        };
        Ok((backlog.unsigned_abs(), dead.unsigned_abs()))
    }

    /// Dead events, oldest first, paged.
    pub async fn dead(&self, limit: u32, offset: u64) -> Result<Vec<DeadEvent>, StoreError> {
        type DeadRow = (String, String, String, String, Option<String>, i64, i64, Option<String>, i64);
        const SQL: &str = "SELECT id, type, subject, data, traceparent, created_at, attempts, last_error, dead_at \
                           FROM kit_outbox WHERE dead_at IS NOT NULL ORDER BY seq LIMIT $1 OFFSET $2";
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        let rows: Vec<DeadRow> = match &self.db {
            Db::Sqlite(pool) => {
                sqlx::query_as(SQL).bind(i64::from(limit)).bind(offset).fetch_all(pool).await?
            }
            Db::Postgres(pool) => {
                sqlx::query_as(SQL).bind(i64::from(limit)).bind(offset).fetch_all(pool).await?
            }
        };
        Ok(rows
            .into_iter()
            .map(|(id, event_type, subject, data, traceparent, created_at, attempts, last_error, dead_at)| {
                let row = (id, event_type, subject, data, traceparent, created_at, attempts);
                DeadEvent {
                    event: self.envelope(&row),
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                    last_error,
                    dead_at: from_millis(dead_at)
                        .format(&time::format_description::well_known::Rfc3339)
                        .unwrap_or_default(),
                }
            })
            .collect())
    }

    /// Puts a dead event back in line with a fresh count of attempts; `false` when no dead event has
    /// this id. Subscribers that already had it do not get it again.
    pub async fn replay(&self, id: &str) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE kit_outbox SET dead_at = NULL, attempts = 0, next_attempt_at = $2, claimed_until = 0 \
                           WHERE id = $1 AND dead_at IS NOT NULL";
        let now = millis(OffsetDateTime::now_utc());
        let done = match &self.db {
            Db::Sqlite(pool) => sqlx::query(SQL).bind(id).bind(now).execute(pool).await?.rows_affected(),
            Db::Postgres(pool) => sqlx::query(SQL).bind(id).bind(now).execute(pool).await?.rows_affected(),
        };
        if done > 0 {
            tracing::info!(service = %self.service, event = id, "dead event replayed");
        }
        Ok(done > 0)
    }
}

/// Milliseconds since the Unix epoch, as the kit's tables store times.
pub(crate) fn millis(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// The time `ms` milliseconds after the Unix epoch.
pub(crate) fn from_millis(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

pub mod admin;

#[cfg(test)]
mod tests;
