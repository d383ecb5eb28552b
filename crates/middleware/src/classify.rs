//! One decision, shared by the breaker, retry and metrics: did a call fail?
//!
//! By default ([`DefaultClassifier`]) a call failed when the inner service returned an error (transport
//! error, timeout, open circuit downstream) or a response with a 5xx status or `429 Too Many Requests`.
//! Every other status, 4xx included, is a success *of the dependency*: the caller sent a bad request, and
//! the dependency answered it correctly.
//!
//! Replace it with any closure `Fn(Result<&Res, &E>) -> Outcome`:
//!
//! ```
//! use palisade::{Classify, DefaultClassifier, Outcome};
//!
//! let ok = http::Response::builder().status(404).body(()).unwrap();
//! let overloaded = http::Response::builder().status(503).body(()).unwrap();
//! assert_eq!(Classify::<_, ()>::classify(&DefaultClassifier, Ok(&ok)), Outcome::Success);
//! assert_eq!(Classify::<_, ()>::classify(&DefaultClassifier, Ok(&overloaded)), Outcome::Failure);
//!
//! // A dependency whose 404s mean it lost our data: count them as failures too.
//! let strict = |result: Result<&http::Response<()>, &()>| match result {
//!     Ok(res) if res.status() == 404 || res.status().is_server_error() => Outcome::Failure,
//!     Ok(_) => Outcome::Success,
//!     Err(()) => Outcome::Failure,
//! };
//! assert_eq!(strict.classify(Ok(&ok)), Outcome::Failure);
//! ```

use http::{Response, StatusCode};

/// Whether a call succeeded, from the point of view of the dependency's health.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The dependency did its job (including rejecting a bad request).
    Success,
    /// The dependency failed: an error, a 5xx, or `429 Too Many Requests`.
    Failure,
}

impl Outcome {
    /// `true` for [`Outcome::Failure`].
    #[inline]
    pub const fn is_failure(self) -> bool {
        matches!(self, Outcome::Failure)
    }
}

/// Decides the [`Outcome`] of a call from its result.
///
/// Implemented by [`DefaultClassifier`] and by every `Fn(Result<&Res, &E>) -> Outcome` closure.
pub trait Classify<Res, E> {
    /// Classifies one finished call.
    fn classify(&self, result: Result<&Res, &E>) -> Outcome;
}

/// The default classifier: errors, 5xx and 429 are failures; everything else is a success.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DefaultClassifier;

impl DefaultClassifier {
    /// Classifies a status code alone: 5xx and 429 are failures.
    #[inline]
    pub fn classify_status(status: StatusCode) -> Outcome {
        if status.is_server_error() || status.as_u16() == 429 { Outcome::Failure } else { Outcome::Success }
    }
}

impl<B, E> Classify<Response<B>, E> for DefaultClassifier {
    #[inline]
    fn classify(&self, result: Result<&Response<B>, &E>) -> Outcome {
        match result {
            Ok(res) => Self::classify_status(res.status()),
            Err(_) => Outcome::Failure,
        }
    }
}

impl<F, Res, E> Classify<Res, E> for F
where
    F: Fn(Result<&Res, &E>) -> Outcome,
{
    #[inline]
    fn classify(&self, result: Result<&Res, &E>) -> Outcome {
        self(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> Response<()> {
        Response::builder().status(code).body(()).unwrap()
    }

    #[test]
    fn default_counts_errors_5xx_and_429_as_failures() {
        let c = DefaultClassifier;
        for code in [500, 502, 503, 504, 429] {
            assert_eq!(Classify::<_, ()>::classify(&c, Ok(&status(code))), Outcome::Failure, "{code}");
        }
        for code in [200, 201, 204, 301, 400, 401, 404, 409, 422] {
            assert_eq!(Classify::<_, ()>::classify(&c, Ok(&status(code))), Outcome::Success, "{code}");
        }
        assert_eq!(Classify::<Response<()>, _>::classify(&c, Err(&"boom")), Outcome::Failure);
    }
}
