//! Which requests and which failures are retried.

use std::sync::LazyLock;
use std::time::{Duration, SystemTime};

use http::header::{HeaderMap, HeaderName, RETRY_AFTER};
use http::{Extensions, Method, Request, Response, StatusCode, Uri, Version};

use crate::{BoxError, Classify, DefaultClassifier};

/// The `Idempotency-Key` header: a request that carries it may be retried whatever its method.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// What to do after a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Return this result to the caller.
    Return,
    /// Retry after the backoff delay.
    Retry,
    /// Retry no sooner than this delay (the server said when, e.g. `Retry-After`), plus the backoff's
    /// delay so that callers told the same time (`Retry-After: 0` included) do not come back together.
    /// A delay above the layer's `max_retry_after` returns the result instead.
    RetryAfter(Duration),
}

/// Decides which requests may be retried and which results are retried.
///
/// Implemented by [`DefaultPolicy`], by `()` (never retry) and by every closure
/// `Fn(&RequestHead<'_>, Result<&http::Response<B>, &BoxError>) -> Decision` (which may retry any
/// request: it sees the request on every decision). Whatever the policy says, `max_attempts`, the
/// budget and the request's [`Deadline`](crate::Deadline) still bound the retries.
pub trait Policy<ResB> {
    /// Whether `req` may be retried at all. Checked once, before the first attempt: a request that may
    /// not is sent as it is, without buffering its body or copying its head (default: `true`).
    fn is_retryable<B>(&self, req: &Request<B>) -> bool {
        let _ = req;
        true
    }

    /// What to do with the `result` of an attempt at `req` (the inner service's error is boxed).
    fn decide(&self, req: &RequestHead<'_>, result: Result<&Response<ResB>, &BoxError>) -> Decision;
}

/// The head of the request an attempt sent, as a [`Policy`] sees it: what
/// [`http::Request`]'s accessors of the same names return.
///
/// A view of the copy the retry layer keeps to send the request again (not an
/// [`http::request::Parts`], which would cost building one for every request).
#[derive(Clone, Copy, Debug)]
pub struct RequestHead<'a> {
    pub(crate) method: &'a Method,
    pub(crate) uri: &'a Uri,
    pub(crate) version: Version,
    pub(crate) headers: Option<&'a HeaderMap>,
    pub(crate) extensions: &'a Extensions,
}

impl RequestHead<'_> {
    /// The request's method.
    pub const fn method(&self) -> &Method {
        self.method
    }

    /// The request's URI.
    pub const fn uri(&self) -> &Uri {
        self.uri
    }

    /// The request's HTTP version.
    pub const fn version(&self) -> Version {
        self.version
    }

    /// The request's headers.
    pub fn headers(&self) -> &HeaderMap {
        // The layer keeps no map for a request without headers.
        static NONE: LazyLock<HeaderMap> = LazyLock::new(HeaderMap::new);
        self.headers.unwrap_or(&NONE)
    }

    /// The request's extensions (a [`Deadline`](crate::Deadline), for one).
    pub const fn extensions(&self) -> &Extensions {
        self.extensions
    }
}

impl<ResB> Policy<ResB> for () {
    fn is_retryable<B>(&self, _req: &Request<B>) -> bool {
        false
    }

    fn decide(&self, _req: &RequestHead<'_>, _result: Result<&Response<ResB>, &BoxError>) -> Decision {
        Decision::Return
    }
}

impl<F, ResB> Policy<ResB> for F
where
    F: Fn(&RequestHead<'_>, Result<&Response<ResB>, &BoxError>) -> Decision,
{
    fn decide(&self, req: &RequestHead<'_>, result: Result<&Response<ResB>, &BoxError>) -> Decision {
        self(req, result)
    }
}

/// The HTTP-aware default policy.
///
/// - **Requests**: only idempotent methods (`GET`, `HEAD`, `OPTIONS`, `PUT`, `DELETE`) or requests that
///   carry an [`Idempotency-Key`](IDEMPOTENCY_KEY) header are retried. Any other request is sent once.
/// - **Results**: only what the [classifier](crate::classify) calls a failure is retried (an
///   [`Outcome::Ignore`](crate::Outcome::Ignore), such as a downstream's `504` marked
///   [deadline-exceeded](crate::classify::DEADLINE_EXCEEDED_HEADER), is returned as it is), and of those:
///   - a response whose status is in the retryable set (default `429`, `502`, `503`, `504`). `500` is
///     *not* retried by default, even for idempotent requests: it usually means a bug that the same
///     request will hit again (add it with [`retry_status`](Self::retry_status)). Other 4xx never are.
///   - `429` and `503` with a `Retry-After` header (delta-seconds or HTTP-date) retry after that delay
///     plus the (jittered) backoff, as long as the server's delay is within the layer's
///     `max_retry_after` (beyond it, the response is returned as it is, so the caller sees the
///     server's `Retry-After`). `Retry-After: 0` or a past date is the backoff alone.
///   - any error (connect and transport errors, a per-attempt `timeout::error::Elapsed`
///     timeout, …), except two that retrying cannot fix: the caller's
///     `timeout::error::DeadlineExceeded`, and an open circuit
///     (`circuit_breaker::error::CircuitOpen`), returned at once: the breaker exists so that
///     callers fail fast instead of waiting on a dependency that is down, so a retry never sleeps
///     out its open interval. Both are found anywhere in the error's `source()` chain.
#[derive(Clone, Copy, Debug)]
pub struct DefaultPolicy<C = DefaultClassifier> {
    classifier: C,
    /// Bit `n` set = status `400 + n` is retryable.
    statuses: [u64; 4],
}

impl Default for DefaultPolicy {
    fn default() -> Self {
        Self::new()
    }
}

impl DefaultPolicy {
    /// The default policy with the [`DefaultClassifier`].
    pub const fn new() -> Self {
        Self::with_classifier(DefaultClassifier)
    }
}

impl<C> DefaultPolicy<C> {
    /// The default policy with another classifier: results it calls a success are never retried.
    pub const fn with_classifier(classifier: C) -> Self {
        let mut statuses = [0; 4];
        let mut i = 0;
        let defaults = [429u16, 502, 503, 504];
        while i < defaults.len() {
            let n = defaults[i] - 400;
            statuses[(n / 64) as usize] |= 1 << (n % 64);
            i += 1;
        }
        Self { classifier, statuses }
    }

    /// Also retries responses with `status` (a 4xx or 5xx; others are ignored) when the classifier calls
    /// them failures.
    pub const fn retry_status(mut self, status: StatusCode) -> Self {
        if let Some(n) = status.as_u16().checked_sub(400)
            && n < 256
        {
            self.statuses[(n / 64) as usize] |= 1 << (n % 64);
        }
        self
    }

    /// Whether a failed response with `status` is retried.
    pub const fn retries_status(&self, status: StatusCode) -> bool {
        match status.as_u16().checked_sub(400) {
            Some(n) if n < 256 => self.statuses[(n / 64) as usize] & (1 << (n % 64)) != 0,
            _ => false,
        }
    }

    /// The same policy (statuses included) with another classifier.
    pub fn replace_classifier<C2>(self, classifier: C2) -> DefaultPolicy<C2> {
        DefaultPolicy { classifier, statuses: self.statuses }
    }

    /// The classifier.
    pub const fn classifier(&self) -> &C {
        &self.classifier
    }
}

impl<C, ResB> Policy<ResB> for DefaultPolicy<C>
where
    C: Classify<Response<ResB>, BoxError>,
{
    #[inline]
    fn is_retryable<B>(&self, req: &Request<B>) -> bool {
        matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE)
            // By reference, after the emptiness check: the key is not built, compared or dropped for
            // a request without headers.
            || (!req.headers().is_empty() && req.headers().contains_key(&IDEMPOTENCY_KEY))
    }

    fn decide(&self, _req: &RequestHead<'_>, result: Result<&Response<ResB>, &BoxError>) -> Decision {
        if !self.classifier.classify(result).is_failure() {
            return Decision::Return;
        }
        match result {
            Ok(res) => {
                let status = res.status();
                if !self.retries_status(status) {
                    Decision::Return
                } else if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE
                {
                    retry_after(res.headers(), SystemTime::now())
                        .map_or(Decision::Retry, Decision::RetryAfter)
                } else {
                    Decision::Retry
                }
            }
            Err(err) => decide_error(&**err),
        }
    }
}

#[allow(unused_variables)] // `err` is only inspected with the timeout or circuit-breaker features.
fn decide_error(err: &(dyn std::error::Error + 'static)) -> Decision {
    let mut cause = Some(err);
    while let Some(e) = cause {
        #[cfg(feature = "timeout")]
        if e.is::<crate::timeout::error::DeadlineExceeded>() {
            return Decision::Return;
        }
        #[cfg(feature = "circuit-breaker")]
        if e.is::<crate::circuit_breaker::error::CircuitOpen>() {
            return Decision::Return;
        }
        cause = e.source();
    }
    Decision::Retry
}

/// The delay a `Retry-After` header asks for, as of `now`: delta-seconds (`120`) or an HTTP-date (a
/// date in the past means zero). `None` when the header is absent or malformed.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use http::HeaderMap;
/// use palisade::retry::retry_after;
///
/// let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
/// let mut headers = HeaderMap::new();
/// headers.insert("retry-after", "3".parse().unwrap());
/// assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(3)));
/// headers.insert("retry-after", "Sun, 06 Nov 1994 08:49:42 GMT".parse().unwrap());
/// assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(5)));
/// ```
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // All digits: too many of them is a very long time, not a malformed header.
        return Some(value.parse().map_or(Duration::MAX, Duration::from_secs));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, value.parse().unwrap());
        h
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(retry_after(&headers("0"), now), Some(Duration::ZERO));
        assert_eq!(retry_after(&headers(" 7 "), now), Some(Duration::from_secs(7)));
        assert_eq!(retry_after(&headers("99999999999999999999999"), now), Some(Duration::MAX));
        assert_eq!(retry_after(&headers("Sun, 06 Nov 1994 08:49:37 GMT"), now), Some(Duration::ZERO));
        assert_eq!(retry_after(&headers("Sun, 06 Nov 1994 08:40:00 GMT"), now), Some(Duration::ZERO));
        assert_eq!(
            retry_after(&headers("Sun, 06 Nov 1994 08:50:37 GMT"), now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(retry_after(&headers("-1"), now), None);
        assert_eq!(retry_after(&headers("soon"), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn status_set() {
        let p = DefaultPolicy::new();
        for code in [429, 502, 503, 504] {
            assert!(p.retries_status(StatusCode::from_u16(code).unwrap()), "{code}");
        }
        for code in [200, 400, 404, 500, 501, 505] {
            assert!(!p.retries_status(StatusCode::from_u16(code).unwrap()), "{code}");
        }
        let p = p.retry_status(StatusCode::INTERNAL_SERVER_ERROR).retry_status(StatusCode::OK);
        assert!(p.retries_status(StatusCode::INTERNAL_SERVER_ERROR));
        assert!(!p.retries_status(StatusCode::OK));
    }
}
