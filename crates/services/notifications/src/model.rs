//! The notifications' types: what the API sends and receives.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

/// What an event tells a user, before it is stored ([`crate::summary::draft`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Draft {
    /// Who the event is about (its `data.user_id`).
    pub user_id: String,
    /// A short heading.
    pub title: String,
    /// One sentence for a person.
    pub summary: String,
}

/// One notification: a received event about a user, with a summary for a person.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct Notification {
    /// The notification's id.
    pub id: Uuid,
    /// The user it is for.
    #[schema(example = "6f1c1d0e-8a3b-4c6e-9a51-0c2f7d9e4b11")]
    pub user_id: String,
    /// The event's CloudEvents `id`.
    pub event_id: String,
    /// The event's `type`.
    #[schema(example = "order.confirmed")]
    pub event_type: String,
    /// The event's producer (`source`).
    #[schema(example = "/shop/orders")]
    pub source: String,
    /// The entity the event is about (`subject`), when it names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// A short heading.
    #[schema(example = "Order confirmed")]
    pub title: String,
    /// One sentence for a person.
    #[schema(example = "Your order o-123 (19.99 EUR) is confirmed.")]
    pub summary: String,
    /// The event's payload, as received.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    /// When the event was received.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// A page of a user's notifications, newest first.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct NotificationPage {
    /// The notifications, newest first.
    pub items: Vec<Notification>,
    /// The page size used.
    pub limit: u32,
    /// The offset used.
    pub offset: u64,
    /// The `offset` of the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_offset: Option<u64>,
}

/// The query of `GET /v1/notifications`.
#[derive(Clone, Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Whose notifications (admins only; a customer may name only themself). Default: the caller's.
    pub user_id: Option<String>,
    /// Page size, 1–100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// Notifications to skip (default 0).
    #[param(minimum = 0)]
    pub offset: Option<u64>,
}

/// Longest `user_id` (event data and the list's query).
pub const MAX_USER_ID_LEN: usize = 256;
