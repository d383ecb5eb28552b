//! The error every layer builder returns for a configuration that cannot work.

use std::fmt;

/// A layer was configured with a value that cannot work (a threshold outside `0..=1`, a zero window,
/// a backoff cap below its base, …). Returned by the builders, never discovered at request time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidConfig {
    setting: &'static str,
    reason: String,
}

impl InvalidConfig {
    /// `setting` (for example `"failure_rate_threshold"`) is invalid because of `reason`.
    pub fn new(setting: &'static str, reason: impl Into<String>) -> Self {
        Self { setting, reason: reason.into() }
    }

    /// The name of the offending setting.
    pub const fn setting(&self) -> &'static str {
        self.setting
    }
}

impl fmt::Display for InvalidConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {}", self.setting, self.reason)
    }
}

impl std::error::Error for InvalidConfig {}
