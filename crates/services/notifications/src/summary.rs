//! What each event tells its user ([`draft`]).
//!
//! | type | title | summary |
//! |---|---|---|
//! | `user.registered` | Welcome to Palisade Shop | Welcome, {name}! Your account {email} is ready. |
//! | `payment.captured` | Payment received | We received your payment of {amount} for order {order_id}. |
//! | `payment.failed` | Payment declined | Your payment of {amount} for order {order_id} was declined. |
//! | `payment.refunded` | Refund issued | We refunded {amount} for order {order_id}. |
//! | `order.confirmed` | Order confirmed | Your order {order_id} ({total}) is confirmed. |
//! | `order.failed` | Order failed | Your order {order_id} could not be completed: {failure_reason}. |
//! | `order.cancelled` | Order cancelled | Your order {order_id} was cancelled. |
//! | any other | Update | Something changed: {type} about {subject}. |
//!
//! Decision: an event of another type that names a user still notifies them, with the generic
//! summary ("one notification per event for `data.user_id`", the contract); an event without a
//! `data.user_id` string (`product.price_changed`, `stock.low`) is acknowledged and notifies nobody.
//! A field the summary needs but the event lacks is left out of the sentence, never an error: the
//! event is the producer's, and refusing it would only park it as dead there.
//! Amounts are `Money` (`{amount, currency}`, minor units) written with the currency's ISO 4217
//! minor unit: `{"amount": 1999, "currency": "EUR"}` is `19.99 EUR`.

use kit::outbox::Envelope;
use serde_json::Value;

use crate::model::{Draft, MAX_USER_ID_LEN};

/// The notification `event` makes, if it names a user (`data.user_id`, a non-blank string).
pub fn draft(event: &Envelope) -> Option<Draft> {
    let data = &event.data;
    let user_id = data
        .get("user_id")
        .and_then(Value::as_str)
        .filter(|id| !id.trim().is_empty() && id.len() <= MAX_USER_ID_LEN)?;
    let text = |key: &str| data.get(key).and_then(Value::as_str).filter(|s| !s.trim().is_empty());
    let order = text("order_id").map_or_else(String::new, |id| format!(" for order {id}"));
    let amount = data.get("amount").and_then(money).unwrap_or_else(|| "the amount".to_owned());
    // "order o-1", or "order" when the event names none.
    let your_order = text("order_id").map_or_else(|| "order".to_owned(), |id| format!("order {id}"));
    let (title, summary) = match event.event_type.as_str() {
        "user.registered" => {
            let name = text("name").map_or_else(String::new, |name| format!(", {name}"));
            let account =
                text("email").map_or_else(|| "account".to_owned(), |email| format!("account {email}"));
            ("Welcome to Palisade Shop", format!("Welcome{name}! Your {account} is ready."))
        }
        "payment.captured" => ("Payment received", format!("We received your payment of {amount}{order}.")),
        "payment.failed" => ("Payment declined", format!("Your payment of {amount}{order} was declined.")),
        "payment.refunded" => ("Refund issued", format!("We refunded {amount}{order}.")),
        "order.confirmed" => {
            let total = data.get("total").and_then(money).map_or_else(String::new, |t| format!(" ({t})"));
            ("Order confirmed", format!("Your {your_order}{total} is confirmed."))
        }
        "order.failed" => {
            let reason = text("failure_reason").map_or_else(String::new, |r| format!(": {r}"));
            ("Order failed", format!("Your {your_order} could not be completed{reason}."))
        }
        "order.cancelled" => ("Order cancelled", format!("Your {your_order} was cancelled.")),
        other => {
            let about = event.subject.as_deref().map_or_else(String::new, |s| format!(" about {s}"));
            ("Update", format!("Something changed: {other}{about}."))
        }
    };
    Some(Draft { user_id: user_id.to_owned(), title: title.to_owned(), summary })
}

/// `{"amount": 1999, "currency": "EUR"}` as `19.99 EUR`; `None` unless it is a Money of a known
/// currency.
fn money(value: &Value) -> Option<String> {
    let amount = value.get("amount")?.as_i64()?;
    let code = value.get("currency")?.as_str()?;
    let exponent = u32::from(iso_currency::Currency::from_code(code)?.exponent()?);
    let sign = if amount < 0 { "-" } else { "" };
    let units = amount.unsigned_abs();
    if exponent == 0 {
        return Some(format!("{sign}{units} {code}"));
    }
    let scale = 10u64.checked_pow(exponent)?;
    let width = exponent as usize;
    Some(format!("{sign}{}.{:0width$} {code}", units / scale, units % scale))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(event_type: &str, data: Value) -> Envelope {
        Envelope {
            specversion: "1.0".into(),
            id: "e-1".into(),
            source: "/shop/test".into(),
            event_type: event_type.into(),
            subject: Some("x-1".into()),
            time: None,
            datacontenttype: None,
            data,
            traceparent: None,
        }
    }

    fn summary(event_type: &str, data: Value) -> Option<(String, String)> {
        draft(&event(event_type, data)).map(|d| (d.title, d.summary))
    }

    #[test]
    fn each_known_type_has_its_sentence() {
        let pay =
            json!({ "user_id": "u", "order_id": "o-1", "amount": { "amount": 1999, "currency": "EUR" } });
        let cases = [
            (
                "user.registered",
                json!({ "user_id": "u", "email": "a@example.com", "name": "Ada" }),
                "Welcome, Ada! Your account a@example.com is ready.",
            ),
            ("payment.captured", pay.clone(), "We received your payment of 19.99 EUR for order o-1."),
            ("payment.failed", pay.clone(), "Your payment of 19.99 EUR for order o-1 was declined."),
            ("payment.refunded", pay, "We refunded 19.99 EUR for order o-1."),
            (
                "order.confirmed",
                json!({ "user_id": "u", "order_id": "o-1", "total": { "amount": 500, "currency": "JPY" } }),
                "Your order o-1 (500 JPY) is confirmed.",
            ),
            (
                "order.failed",
                json!({ "user_id": "u", "order_id": "o-1", "failure_reason": "payment declined" }),
                "Your order o-1 could not be completed: payment declined.",
            ),
            (
                "order.cancelled",
                json!({ "user_id": "u", "order_id": "o-1" }),
                "Your order o-1 was cancelled.",
            ),
            ("stock.adjusted", json!({ "user_id": "u" }), "Something changed: stock.adjusted about x-1."),
        ];
        for (event_type, data, expected) in cases {
            let (_, summary) = summary(event_type, data).unwrap();
            assert_eq!(summary, expected, "{event_type}");
        }
    }

    #[test]
    fn missing_fields_are_left_out_and_events_without_a_user_are_ignored() {
        assert_eq!(
            summary(
                "payment.captured",
                json!({ "user_id": "u", "amount": { "amount": 5, "currency": "EUR" } })
            )
            .unwrap()
            .1,
            "We received your payment of 0.05 EUR."
        );
        assert_eq!(
            summary(
                "payment.failed",
                json!({ "user_id": "u", "amount": { "amount": 5, "currency": "ZZZ" } })
            )
            .unwrap()
            .1,
            "Your payment of the amount was declined."
        );
        assert_eq!(
            summary("order.cancelled", json!({ "user_id": "u" })).unwrap().1,
            "Your order was cancelled."
        );
        assert_eq!(
            summary("user.registered", json!({ "user_id": "u" })).unwrap().1,
            "Welcome! Your account is ready."
        );
        for data in [json!({}), json!({ "user_id": 7 }), json!({ "user_id": " " }), json!(null), json!([1])] {
            assert_eq!(summary("order.confirmed", data.clone()), None, "{data}");
        }
        assert_eq!(money(&json!({ "amount": -1234, "currency": "USD" })).as_deref(), Some("-12.34 USD"));
        assert_eq!(money(&json!({ "amount": 1, "currency": "BHD" })).as_deref(), Some("0.001 BHD"));
    }
}
