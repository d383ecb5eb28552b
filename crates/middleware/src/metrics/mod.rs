//! Metrics (work in progress).
