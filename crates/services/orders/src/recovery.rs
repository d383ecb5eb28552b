//! The recovery worker: a [`Job`] that claims orders whose driver's lease lapsed (a crash, a
//! restart, a step whose outcome was unknown) and finishes or undoes them ([`Saga::recover`]).
//!
//! Safe with several replicas: [`Store::claim_stuck`](crate::store::Store::claim_stuck) claims with
//! `FOR UPDATE SKIP LOCKED` and leases each order for another `recovery_after_secs`, and every step
//! is a conditional change ([`Store::advance`](crate::store::Store::advance)), so two workers never
//! apply the same step; the downstream calls are idempotent, so repeating one is harmless.

use std::time::Duration;

use kit::db::Db;
use kit::jobs::Job;
use time::OffsetDateTime;

use crate::saga::{Driver, Saga};

/// The audit actor of the worker's changes.
pub const ACTOR: &str = "orders-recovery";

/// Starts the worker: every `interval`, at most `batch` orders per run.
pub fn spawn(saga: Saga, db: &Db, interval: Duration, batch: u32) -> Job {
    Job::spawn("orders-recovery", db, interval, move || {
        let saga = saga.clone();
        async move { recover_once(&saga, batch).await >= batch as usize }
    })
}

/// One run: claims up to `batch` stuck orders and drives each; returns how many it claimed.
pub async fn recover_once(saga: &Saga, batch: u32) -> usize {
    let now = OffsetDateTime::now_utc();
    let claimed = match saga.store.claim_stuck(now, now + saga.lease, batch).await {
        Ok(claimed) => claimed,
        Err(err) => {
            tracing::warn!(error = %err, "order recovery: cannot claim orders");
            return 0;
        }
    };
    let driver = Driver { actor: ACTOR.to_owned(), claim: None };
    for order in &claimed {
        let id = order.id.clone();
        match saga.recover(order.clone(), &driver).await {
            Ok(_) => tracing::info!(order = %id, "order recovered"),
            Err(err) => tracing::warn!(order = %id, error = %err, "order recovery: left for the next run"),
        }
    }
    claimed.len()
}
