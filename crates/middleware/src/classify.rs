//! One decision, shared by the breaker, retry and metrics: did a call fail, and was it the
//! dependency's fault?
//!
//! By default ([`DefaultClassifier`]) a call failed when the inner service returned an error (transport
//! error, timeout, open circuit downstream) or a response with a 5xx status or `429 Too Many Requests`.
//! Every other status, 4xx included, is a success *of the dependency*: the caller sent a bad request, and
//! the dependency answered it correctly. Two results are [`Outcome::Ignore`]: not the dependency's
//! fault, so they are recorded neither as a success nor as a failure:
//! - the caller's own [`DeadlineExceeded`](crate::timeout::error::DeadlineExceeded) (its end-to-end
//!   deadline passed: a healthy dependency must not be blamed for the caller's lack of time), and
//! - a `504` carrying [`DEADLINE_EXCEEDED_HEADER`], which palisade's problem mapping sets when a
//!   downstream answered that *our* deadline (propagated to it) passed.
//!
//! A per-call [`Elapsed`](crate::timeout::error::Elapsed) (the dependency took longer than the
//! timeout *we* gave it) stays a failure.
//!
//! On the server side use [`ServerClassifier`]: only 5xx and errors are failures, so nothing a
//! client sends (a 429 of our own limiter included) counts against the service.
//!
//! Replace it with any closure `Fn(Result<&Res, &E>) -> Outcome`, or, to look at the request too,
//! a [`MakeClassify`] such as [`MakeClassifyFn`]:
//!
//! ```
//! use palisade::classify::{DEADLINE_EXCEEDED_HEADER, MakeClassify, MakeClassifyFn};
//! use palisade::{BoxError, Classify, DefaultClassifier, Outcome};
//!
//! let ok = http::Response::builder().status(404).body(()).unwrap();
//! let overloaded = http::Response::builder().status(503).body(()).unwrap();
//! let expired = http::Response::builder().status(504).header(DEADLINE_EXCEEDED_HEADER, "1").body(()).unwrap();
//! let c = DefaultClassifier;
//! assert_eq!(Classify::<_, BoxError>::classify(&c, Ok(&ok)), Outcome::Success);
//! assert_eq!(Classify::<_, BoxError>::classify(&c, Ok(&overloaded)), Outcome::Failure);
//! assert_eq!(Classify::<_, BoxError>::classify(&c, Ok(&expired)), Outcome::Ignore);
//!
//! // A dependency whose 404s mean it lost our data: count them as failures too.
//! let strict = |result: Result<&http::Response<()>, &()>| match result {
//!     Ok(res) if res.status() == 404 || res.status().is_server_error() => Outcome::Failure,
//!     Ok(_) => Outcome::Success,
//!     Err(()) => Outcome::Failure,
//! };
//! assert_eq!(strict.classify(Ok(&ok)), Outcome::Failure);
//!
//! // Per request: a 404 on a `DELETE` is fine (already gone), anywhere else it is a failure.
//! let by_method = MakeClassifyFn::new(|req: &http::Request<()>| {
//!     let delete = req.method() == http::Method::DELETE;
//!     move |result: Result<&http::Response<()>, &()>| match result {
//!         Ok(res) if res.status() == 404 && !delete => Outcome::Failure,
//!         Ok(res) if res.status().is_server_error() => Outcome::Failure,
//!         Ok(_) => Outcome::Success,
//!         Err(()) => Outcome::Failure,
//!     }
//! });
//! let delete = http::Request::delete("/items/1").body(()).unwrap();
//! let get = http::Request::get("/items/1").body(()).unwrap();
//! assert_eq!(MakeClassify::<_, _, ()>::make_classify(&by_method, &delete).classify(Ok(&ok)), Outcome::Success);
//! assert_eq!(MakeClassify::<_, _, ()>::make_classify(&by_method, &get).classify(Ok(&ok)), Outcome::Failure);
//! ```

use std::fmt;

use http::header::HeaderName;
use http::{Response, StatusCode};

use crate::BoxError;

/// The response header that marks a `504` as "the caller's deadline passed" rather than "this
/// service timed out": `palisade-deadline-exceeded: 1`.
///
/// palisade's problem mapping sets it on the `504` it makes from a
/// [`DeadlineExceeded`](crate::timeout::error::DeadlineExceeded), and [`DefaultClassifier`] answers
/// [`Outcome::Ignore`] for a `504` that carries it: the downstream was not at fault, our budget
/// was spent.
pub const DEADLINE_EXCEEDED_HEADER: HeaderName = HeaderName::from_static("palisade-deadline-exceeded");

/// Whether a call succeeded, from the point of view of the dependency's health.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// The dependency did its job (including rejecting a bad request).
    Success,
    /// The dependency failed: an error, a 5xx, or `429 Too Many Requests`.
    Failure,
    /// Not the dependency's fault (the caller's own deadline passed): recorded as nothing. A
    /// breaker neither counts the call nor, for a half-open probe, lets it decide (the permit is
    /// given back); a retry does not retry it.
    Ignore,
}

impl Outcome {
    /// `true` for [`Outcome::Failure`].
    #[inline]
    pub const fn is_failure(self) -> bool {
        matches!(self, Outcome::Failure)
    }

    /// `true` for [`Outcome::Ignore`].
    #[inline]
    pub const fn is_ignore(self) -> bool {
        matches!(self, Outcome::Ignore)
    }
}

/// Decides the [`Outcome`] of a call from its result.
///
/// Implemented by [`DefaultClassifier`], [`ServerClassifier`] and by every
/// `Fn(Result<&Res, &E>) -> Outcome` closure.
pub trait Classify<Res, E> {
    /// Classifies one finished call.
    fn classify(&self, result: Result<&Res, &E>) -> Outcome;
}

/// Makes the [`Classify`] of one call from its request (like tower-http's `MakeClassifier`).
///
/// [`DefaultClassifier`], [`ServerClassifier`] and every `Clone` classifier closure are one (they
/// ignore the request and are cloned per call: free for the unit structs and for closures that
/// capture nothing); [`MakeClassifyFn`] turns a `Fn(&Req) -> impl Classify` into one. A classifier
/// type of your own implements it in three lines, as these do.
pub trait MakeClassify<Req, Res, E> {
    /// The classifier of one call.
    type Classify: Classify<Res, E>;

    /// The classifier for the call about to send `req`.
    fn make_classify(&self, req: &Req) -> Self::Classify;
}

/// A classifier that ignores the request: cloned for each call (free for the unit structs and for
/// closures that capture nothing).
macro_rules! make_classify_by_clone {
    ($($classifier:ty),*) => {$(
        impl<Req, Res, E> MakeClassify<Req, Res, E> for $classifier
        where
            $classifier: Classify<Res, E>,
        {
            type Classify = Self;

            #[inline]
            fn make_classify(&self, _req: &Req) -> Self {
                *self
            }
        }
    )*};
}

make_classify_by_clone!(DefaultClassifier, ServerClassifier);

impl<F, Req, Res, E> MakeClassify<Req, Res, E> for F
where
    F: Fn(Result<&Res, &E>) -> Outcome + Clone,
{
    type Classify = F;

    #[inline]
    fn make_classify(&self, _req: &Req) -> F {
        self.clone()
    }
}

/// A [`MakeClassify`] from a function of the request that returns the call's classifier.
#[derive(Clone, Copy)]
pub struct MakeClassifyFn<F> {
    f: F,
}

impl<F> MakeClassifyFn<F> {
    /// Wraps `f: Fn(&Req) -> impl Classify`.
    pub const fn new(f: F) -> Self {
        Self { f }
    }
}

impl<F, C, Req, Res, E> MakeClassify<Req, Res, E> for MakeClassifyFn<F>
where
    F: Fn(&Req) -> C,
    C: Classify<Res, E>,
{
    type Classify = C;

    #[inline]
    fn make_classify(&self, req: &Req) -> C {
        (self.f)(req)
    }
}

impl<F> fmt::Debug for MakeClassifyFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MakeClassifyFn").finish_non_exhaustive()
    }
}

/// The default (client-side) classifier: errors, 5xx and 429 are failures; the caller's own
/// expired deadline is ignored; everything else is a success.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DefaultClassifier;

impl DefaultClassifier {
    /// Classifies a status code alone: 5xx and 429 are failures.
    #[inline]
    pub fn classify_status(status: StatusCode) -> Outcome {
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            Outcome::Failure
        } else {
            Outcome::Success
        }
    }
}

impl<B> Classify<Response<B>, BoxError> for DefaultClassifier {
    #[inline]
    fn classify(&self, result: Result<&Response<B>, &BoxError>) -> Outcome {
        match result {
            Ok(res) if deadline_exceeded_response(res) => Outcome::Ignore,
            Ok(res) => Self::classify_status(res.status()),
            Err(err) => classify_error(&**err),
        }
    }
}

/// The server-side classifier: only 5xx responses and errors are failures (the caller's own
/// expired deadline is ignored); every 4xx, 429 included, is the client's business, not a failure
/// of the service.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerClassifier;

impl<B> Classify<Response<B>, BoxError> for ServerClassifier {
    #[inline]
    fn classify(&self, result: Result<&Response<B>, &BoxError>) -> Outcome {
        match result {
            Ok(res) if deadline_exceeded_response(res) => Outcome::Ignore,
            Ok(res) if res.status().is_server_error() => Outcome::Failure,
            Ok(_) => Outcome::Success,
            Err(err) => classify_error(&**err),
        }
    }
}

/// A `504` marked by palisade's problem mapping as "the caller's deadline passed".
#[inline]
fn deadline_exceeded_response<B>(res: &Response<B>) -> bool {
    // The status first: the header lookup only runs on 504s.
    res.status() == StatusCode::GATEWAY_TIMEOUT && res.headers().contains_key(DEADLINE_EXCEEDED_HEADER)
}

#[allow(unused_variables)] // `err` is only inspected with the timeout feature.
fn classify_error(err: &(dyn std::error::Error + 'static)) -> Outcome {
    #[cfg(feature = "timeout")]
    {
        let mut cause = Some(err);
        while let Some(e) = cause {
            if e.is::<crate::timeout::error::DeadlineExceeded>() {
                return Outcome::Ignore;
            }
            cause = e.source();
        }
    }
    Outcome::Failure
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

    fn classify<C: Classify<Response<()>, BoxError>>(c: &C, code: u16) -> Outcome {
        c.classify(Ok(&status(code)))
    }

    #[test]
    fn default_counts_errors_5xx_and_429_as_failures() {
        let c = DefaultClassifier;
        for code in [500, 502, 503, 504, 429] {
            assert_eq!(classify(&c, code), Outcome::Failure, "{code}");
        }
        for code in [200, 201, 204, 301, 400, 401, 404, 409, 422] {
            assert_eq!(classify(&c, code), Outcome::Success, "{code}");
        }
        let err: BoxError = "boom".into();
        assert_eq!(Classify::<Response<()>, _>::classify(&c, Err(&err)), Outcome::Failure);
    }

    #[test]
    fn server_counts_only_5xx_and_errors() {
        let c = ServerClassifier;
        for code in [500, 502, 503, 504] {
            assert_eq!(classify(&c, code), Outcome::Failure, "{code}");
        }
        for code in [200, 400, 404, 422, 429] {
            assert_eq!(classify(&c, code), Outcome::Success, "{code}");
        }
    }

    #[test]
    fn a_marked_504_is_ignored_an_unmarked_one_is_a_failure() {
        let marked = Response::builder().status(504).header(DEADLINE_EXCEEDED_HEADER, "1").body(()).unwrap();
        // The marker means nothing on another status.
        let marked_500 =
            Response::builder().status(500).header(DEADLINE_EXCEEDED_HEADER, "1").body(()).unwrap();
        for c in [&DefaultClassifier as &dyn Classify<Response<()>, BoxError>, &ServerClassifier] {
            assert_eq!(c.classify(Ok(&marked)), Outcome::Ignore);
            assert_eq!(c.classify(Ok(&status(504))), Outcome::Failure);
            assert_eq!(c.classify(Ok(&marked_500)), Outcome::Failure);
        }
    }

    #[cfg(feature = "timeout")]
    #[test]
    fn the_callers_deadline_is_ignored_a_timeout_is_a_failure() {
        use crate::timeout::error::{DeadlineExceeded, Elapsed};
        let deadline: BoxError = DeadlineExceeded::new().into();
        let elapsed: BoxError = Elapsed::new().into();
        for c in [&DefaultClassifier as &dyn Classify<Response<()>, BoxError>, &ServerClassifier] {
            assert_eq!(c.classify(Err(&deadline)), Outcome::Ignore);
            assert_eq!(c.classify(Err(&elapsed)), Outcome::Failure);
        }
    }
}
