//! Retry (work in progress).
