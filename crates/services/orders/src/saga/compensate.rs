//! Undoing an order: refund, release, then `failed` or `cancelled`.

use http::{Method, StatusCode};
use kit::error::ApiError;

use super::calls::{Items, Payment, Refund, RefundBody, Reservation, classify, refund_key};
use super::{Driven, Driver, Outcome, Saga};
use crate::model::{FailureReason, Order, OrderStatus, Step};
use crate::store::Change;

impl Saga {
    /// The id of the payment captured for `order`, if payments has one (a charge whose answer was lost).
    pub(super) async fn captured(&self, order: &Order) -> Result<Option<String>, ApiError> {
        let path = format!("/v1/payments?order_id={}", order.id);
        let payments: Items<Payment> =
            self.payments.get_json(&path).await.map_err(|e| self.payments.api_error(&e))?;
        Ok(payments.items.into_iter().find(|p| p.status == "captured").map(|p| p.id))
    }

    /// Undoes what the order did (refund, release), then ends it `failed` or `cancelled`.
    pub(super) async fn compensate(
        &self,
        mut order: Order,
        driver: &Driver,
        failure: Option<ApiError>,
    ) -> Result<Driven, ApiError> {
        let reason = order.failure_reason.unwrap_or(FailureReason::Abandoned);
        // Only an abandoned or cancelled order can stand at a step whose call has no known outcome.
        let unknown_outcome = matches!(reason, FailureReason::Abandoned | FailureReason::Cancelled);
        let fail = |e: ApiError| failure.clone().unwrap_or(e);
        // Cancelled while a charge's answer was lost: payments knows whether it captured. (A
        // charge that failed to an answer, or certainly did nothing, left nothing to look up.)
        if unknown_outcome
            && order.payment_id.is_none()
            && order.step == Step::Charging
            && let Some(captured) = self.captured(&order).await.map_err(fail)?
        {
            let change = Change { payment_id: Some(captured), ..Change::to(order.status, order.step) };
            order = self.advance(&order, &change, driver).await?;
        }
        if let (Some(payment), None, Some(amount)) = (&order.payment_id, &order.refund_id, &order.total) {
            let path = format!("/v1/payments/{payment}/refunds");
            let key = refund_key(&order.id);
            let refund: Refund = self
                .payments
                .send(Method::POST, &path, Some(&RefundBody { amount }), &[("idempotency-key", &key)])
                .await
                .map_err(|e| fail(self.payments.api_error(&e)))?;
            let change = Change { refund_id: Some(refund.id), ..Change::to(order.status, order.step) };
            order = self.advance(&order, &change, driver).await?;
        }
        let reservation = match &order.reservation_id {
            Some(id) => Some(id.clone()),
            // Undoing a reservation whose answer was lost: asking again (idempotent per order id)
            // finds it. (A reservation refused or certainly not made left nothing to find.)
            None if order.step == Step::Reserving && unknown_outcome => match self.reserve_call(&order).await
            {
                Ok(reservation) => Some(reservation.id),
                Err(err) => match classify(&self.inventory, &err) {
                    Outcome::Refused(..) => None,
                    Outcome::NotDone(e) | Outcome::Unknown(e) => return Err(fail(e)),
                },
            },
            None => None,
        };
        if let Some(id) = reservation {
            let path = format!("/v1/reservations/{id}/release");
            match self.inventory.send::<(), Reservation>(Method::POST, &path, None, &[]).await {
                Ok(_) => {}
                // Committed (a cancelled confirmed order: restocking is an admin adjustment) or gone
                // (perhaps released by an earlier attempt of this very call).
                Err(err) if matches!(err.status(), Some(StatusCode::CONFLICT | StatusCode::NOT_FOUND)) => {}
                Err(err) => return Err(fail(self.inventory.api_error(&err))),
            }
        }
        let status =
            if reason == FailureReason::Cancelled { OrderStatus::Cancelled } else { OrderStatus::Failed };
        let change = Change::to(status, order.step);
        self.finish(&order, change, driver, failure.as_ref()).await
    }
}
