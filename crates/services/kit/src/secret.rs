//! [`Secret`]: a value that never shows in `Debug` output or logs.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A secret (JWT key, database URL with a password, admin password): `Debug` prints `[redacted]`.
///
/// Read it with [`Secret::expose`], only where it is used. It serializes to its real value so that
/// configuration defaults can round-trip through [`figment`]; never serialize a config for logging.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps `value`.
    pub const fn new(value: T) -> Self {
        Self(value)
    }

    /// The secret value.
    pub const fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Secret<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // serde's own message would echo the value ("invalid type: integer `1234`"): replace it.
        T::deserialize(deserializer).map(Self).map_err(|_| {
            serde::de::Error::custom(
                "invalid secret (in the environment, a value of only digits is read as a number: \
                 use a string); the value is not shown",
            )
        })
    }
}

impl<T: Serialize> Serialize for Secret<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::Secret;

    #[test]
    fn debug_is_redacted() {
        let secret = Secret::new("hunter2".to_owned());
        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn a_bad_value_is_not_echoed_in_the_error() {
        let err = serde_json::from_str::<Secret<String>>("123456789").unwrap_err().to_string();
        assert!(!err.contains("123456789"), "{err}");
        assert!(err.contains("not shown"), "{err}");
    }
}
