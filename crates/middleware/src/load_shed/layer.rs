//! [`LoadShedLayer`] and its builder.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower::Layer;

use super::{LoadShed, Shared};
use crate::InvalidConfig;

/// Default limit of requests in flight.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 512;
/// Default base of the `Retry-After` a shed request gets (jittered up to twice this).
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Wraps services in a [`LoadShed`]. Every service made by one layer, and every clone of those,
/// shares one limit.
#[derive(Clone)]
pub struct LoadShedLayer {
    shared: Arc<Shared>,
}

impl LoadShedLayer {
    /// A builder with the defaults ([`DEFAULT_MAX_IN_FLIGHT`] requests, `Retry-After` from
    /// [`DEFAULT_RETRY_AFTER`], name `"server"`).
    pub fn builder() -> LoadShedBuilder {
        LoadShedBuilder {
            name: Cow::Borrowed("server"),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            retry_after: DEFAULT_RETRY_AFTER,
        }
    }

    /// Requests in flight right now.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight()
    }

    /// The limit of requests in flight.
    pub fn max_in_flight(&self) -> usize {
        self.shared.max
    }
}

impl<S> Layer<S> for LoadShedLayer {
    type Service = LoadShed<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LoadShed { inner, shared: Arc::clone(&self.shared) }
    }
}

impl fmt::Debug for LoadShedLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadShedLayer").field("shared", &self.shared).finish()
    }
}

/// Configures a [`LoadShedLayer`]. Setters never fail; [`build`](Self::build) checks the values.
#[derive(Clone, Debug)]
pub struct LoadShedBuilder {
    name: Cow<'static, str>,
    max_in_flight: usize,
    retry_after: Duration,
}

impl LoadShedBuilder {
    /// The `name` label of the rejection counter (default `"server"`).
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = name.into();
        self
    }

    /// How many requests may be in flight at once; one more is refused with
    /// [`Overloaded`](super::error::Overloaded) (default [`DEFAULT_MAX_IN_FLIGHT`]). Must be at least 1.
    pub fn max_in_flight(mut self, max: usize) -> Self {
        self.max_in_flight = max;
        self
    }

    /// The base of the `Retry-After` a refused request gets: each refusal says a random delay between
    /// this and twice this, so that refused clients spread out (default [`DEFAULT_RETRY_AFTER`]).
    pub fn retry_after(mut self, base: Duration) -> Self {
        self.retry_after = base;
        self
    }

    /// Builds the layer; fails when `max_in_flight` is 0.
    pub fn build(self) -> Result<LoadShedLayer, InvalidConfig> {
        if self.max_in_flight == 0 {
            return Err(InvalidConfig::new("max_in_flight", "must be at least 1"));
        }
        Ok(LoadShedLayer { shared: Arc::new(Shared::new(&self.name, self.max_in_flight, self.retry_after)) })
    }
}
