//! The forward steps: account, pricing, reservation, charge, commit.

use http::{Method, StatusCode};
use kit::client::ClientError;
use kit::error::{ApiError, FieldError};

use super::calls::{
    Account, ChargeBody, Payment, Product, Reservation, ReserveBody, ReserveLine, UNUSABLE, charge_key,
    classify,
};
use super::{Next, Outcome, Saga, busy, failure_error};
use crate::model::{FailureReason, MAX_TOTAL, Money, Order, OrderStatus, Step};
use crate::store::{Change, Priced, PricedLine};

impl Saga {
    pub(super) async fn check_account(&self, order: &Order) -> Next {
        let path = format!("/v1/users/{}", order.customer_id);
        match self.users.get_json::<Account>(&path).await {
            Ok(account) => {
                let unusable = account.disabled
                    || account.locked
                    || account.status.as_deref().is_some_and(|s| UNUSABLE.contains(&s));
                if unusable {
                    Next::Fail(FailureReason::AccountUnusable, failure_error(FailureReason::AccountUnusable))
                } else {
                    Next::Change(Change::to(OrderStatus::Pending, Step::Pricing))
                }
            }
            Err(err) => match classify(&self.users, &err) {
                Outcome::Refused(StatusCode::NOT_FOUND, _) => {
                    Next::Fail(FailureReason::UnknownAccount, failure_error(FailureReason::UnknownAccount))
                }
                // Reading changes nothing: any failure fails the order, with nothing to undo.
                Outcome::Refused(..) => {
                    Next::Fail(FailureReason::DownstreamFailure, self.users.api_error(&err))
                }
                Outcome::NotDone(e) | Outcome::Unknown(e) => Next::Fail(FailureReason::DownstreamFailure, e),
            },
        }
    }

    pub(super) async fn price(&self, order: &Order) -> Next {
        let mut lines = Vec::with_capacity(order.lines.len());
        let mut currency: Option<String> = None;
        let mut total: i64 = 0;
        for (i, line) in order.lines.iter().enumerate() {
            let product =
                match self.catalog.get_json::<Product>(&format!("/v1/products/{}", line.product_id)).await {
                    Ok(product) => product,
                    Err(err) => {
                        return match classify(&self.catalog, &err) {
                            Outcome::Refused(StatusCode::NOT_FOUND, _) => Next::Fail(
                                FailureReason::UnknownProduct,
                                failure_error(FailureReason::UnknownProduct)
                                    .with_detail(format!("line {i}: no product {}", line.product_id))
                                    .with_errors(vec![FieldError::new(
                                        format!("#/lines/{i}/product_id"),
                                        format!("no product {}", line.product_id),
                                    )]),
                            ),
                            Outcome::Refused(..) => {
                                Next::Fail(FailureReason::DownstreamFailure, self.catalog.api_error(&err))
                            }
                            Outcome::NotDone(e) | Outcome::Unknown(e) => {
                                Next::Fail(FailureReason::DownstreamFailure, e)
                            }
                        };
                    }
                };
            if product.archived {
                return Next::Fail(
                    FailureReason::ProductArchived,
                    failure_error(FailureReason::ProductArchived)
                        .with_detail(format!("line {i}: product {} is archived", line.product_id))
                        .with_errors(vec![FieldError::new(format!("#/lines/{i}/product_id"), "archived")]),
                );
            }
            match &currency {
                Some(c) if *c != product.price.currency => {
                    return Next::Fail(
                        FailureReason::MixedCurrencies,
                        failure_error(FailureReason::MixedCurrencies).with_errors(vec![FieldError::new(
                            format!("#/lines/{i}/product_id"),
                            format!("priced in {}, the order so far in {c}", product.price.currency),
                        )]),
                    );
                }
                Some(_) => {}
                None => currency = Some(product.price.currency.clone()),
            }
            let line_amount = product.price.amount.checked_mul(line.quantity).filter(|a| *a >= 0);
            let sum = line_amount.and_then(|a| total.checked_add(a)).filter(|t| *t <= MAX_TOTAL);
            let (Some(line_amount), Some(sum)) = (line_amount, sum) else {
                return Next::Fail(FailureReason::TotalTooLarge, failure_error(FailureReason::TotalTooLarge));
            };
            total = sum;
            lines.push(PricedLine {
                sku: product.sku,
                name: product.name,
                unit_amount: product.price.amount,
                line_amount,
            });
        }
        let Some(currency) = currency else {
            return Next::Fail(FailureReason::UnknownProduct, failure_error(FailureReason::UnknownProduct));
        };
        Next::Change(Change {
            priced: Some(Priced { lines, total: Money { amount: total, currency } }),
            ..Change::to(OrderStatus::Pending, Step::Reserving)
        })
    }

    /// Reserves (idempotent per order id): a new reservation, or the one a previous attempt made.
    pub(super) async fn reserve_call(&self, order: &Order) -> Result<Reservation, ClientError> {
        let lines = order
            .lines
            .iter()
            .map(|l| ReserveLine { sku: l.sku.as_deref().unwrap_or_default(), quantity: l.quantity })
            .collect();
        let body = ReserveBody { order_id: &order.id, lines };
        self.inventory.send(Method::POST, "/v1/reservations", Some(&body), &[]).await
    }

    pub(super) async fn reserve(&self, order: &Order) -> Next {
        match self.reserve_call(order).await {
            Ok(reservation) => Next::Change(Change {
                reservation_id: Some(reservation.id),
                ..Change::to(OrderStatus::Pending, Step::Charging)
            }),
            Err(err) => match classify(&self.inventory, &err) {
                Outcome::Refused(_, problem) if problem.is("insufficient-stock") => {
                    let errors = problem
                        .errors
                        .iter()
                        .map(|e| FieldError::new(e.pointer.clone(), e.detail.clone()))
                        .collect();
                    Next::Fail(
                        FailureReason::InsufficientStock,
                        failure_error(FailureReason::InsufficientStock).with_errors(errors),
                    )
                }
                Outcome::Refused(_, problem) if problem.is("unknown-sku") => {
                    Next::Fail(FailureReason::UnknownSku, failure_error(FailureReason::UnknownSku))
                }
                Outcome::Refused(..) => {
                    Next::Fail(FailureReason::DownstreamFailure, self.inventory.api_error(&err))
                }
                Outcome::NotDone(e) => Next::Fail(FailureReason::DownstreamFailure, e),
                Outcome::Unknown(e) => Next::Unknown(e),
            },
        }
    }

    pub(super) async fn charge(&self, order: &Order) -> Next {
        let Some(amount) = &order.total else {
            return Next::Fail(
                FailureReason::DownstreamFailure,
                ApiError::internal("an order at charging has no total"),
            );
        };
        let body = ChargeBody { order_id: &order.id, customer_id: &order.customer_id, amount };
        let key = charge_key(&order.id);
        let charged: Result<Payment, _> =
            self.payments.send(Method::POST, "/v1/payments", Some(&body), &[("idempotency-key", &key)]).await;
        match charged {
            Ok(payment) if payment.status == "captured" => Next::Change(Change {
                payment_id: Some(payment.id),
                ..Change::to(OrderStatus::Pending, Step::Committing)
            }),
            Ok(_) => {
                Next::Fail(FailureReason::PaymentDeclined, failure_error(FailureReason::PaymentDeclined))
            }
            Err(err) => match classify(&self.payments, &err) {
                Outcome::Refused(StatusCode::PAYMENT_REQUIRED, problem) => {
                    let mut error = failure_error(FailureReason::PaymentDeclined);
                    if let Some(detail) = problem.detail {
                        error = error.with_detail(format!("{detail}; the stock was released"));
                    }
                    Next::Fail(FailureReason::PaymentDeclined, error)
                }
                // Another attempt with this key is running there: its outcome is not known yet.
                Outcome::Refused(StatusCode::CONFLICT, problem)
                    if problem.is("idempotency-key-in-flight") =>
                {
                    Next::Unknown(busy())
                }
                Outcome::Refused(..) => {
                    Next::Fail(FailureReason::DownstreamFailure, self.payments.api_error(&err))
                }
                Outcome::NotDone(e) => Next::Fail(FailureReason::DownstreamFailure, e),
                Outcome::Unknown(e) => Next::Unknown(e),
            },
        }
    }

    pub(super) async fn commit(&self, order: &Order) -> Next {
        let Some(reservation) = &order.reservation_id else {
            return Next::Fail(
                FailureReason::DownstreamFailure,
                ApiError::internal("no reservation to commit"),
            );
        };
        let path = format!("/v1/reservations/{reservation}/commit");
        match self.inventory.send::<(), Reservation>(Method::POST, &path, None, &[]).await {
            Ok(_) => Next::Change(Change::to(OrderStatus::Confirmed, Step::Done)),
            Err(err) => match classify(&self.inventory, &err) {
                // Expired or released meanwhile: the stock is gone; the payment is refunded.
                Outcome::Refused(StatusCode::CONFLICT, _) => Next::Fail(
                    FailureReason::ReservationExpired,
                    failure_error(FailureReason::ReservationExpired),
                ),
                // Paid: never give up on committing; the recovery worker repeats it.
                Outcome::Refused(..) | Outcome::NotDone(_) | Outcome::Unknown(_) => {
                    Next::Unknown(self.inventory.api_error(&err))
                }
            },
        }
    }
}
