//! The handle cache: label values → pre-resolved `metrics` handles, shared by every clone of a service.
//!
//! Lookups on the hot path take no lock and allocate nothing:
//! - the target (route template or peer) is found in a fixed-capacity, insert-only, open-addressing table
//!   whose slots are `OnceLock`s, so a reader only does atomic loads and string compares;
//! - the method is an index into a fixed array of lazily created [`Series`];
//! - the status is an index into a fixed array of lazily resolved histograms for common codes.
//!
//! Only the first request of a new combination takes a mutex, allocates, and asks the recorder for a
//! handle. Handles are registered by [`metric_handles`](crate::metric_handles): with the first
//! recorder installed, even if requests came before it.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use ::metrics::{Histogram, Key, Label, SharedString, Unit};
use http::Method;

use crate::metric_handles::{self, Description, LazyGauge};

use crate::metric_names::{
    ERROR_STATUS, HTTP_CLIENT_ACTIVE_REQUESTS, HTTP_CLIENT_REQUEST_DURATION, HTTP_SERVER_ACTIVE_REQUESTS,
    HTTP_SERVER_REQUEST_DURATION, LABEL_METHOD, LABEL_ROUTE, LABEL_SERVER_ADDRESS, OTHER, UNMATCHED_ROUTE,
};

/// Which metric family a layer records: names and the label that identifies the target.
#[derive(Debug)]
pub(crate) struct Side {
    duration: &'static str,
    active: &'static str,
    target_label: &'static str,
    /// Label value when the target strategy found nothing.
    none_label: &'static str,
    duration_help: &'static str,
    active_help: &'static str,
}

pub(crate) static SERVER: Side = Side {
    duration: HTTP_SERVER_REQUEST_DURATION,
    active: HTTP_SERVER_ACTIVE_REQUESTS,
    target_label: LABEL_ROUTE,
    none_label: UNMATCHED_ROUTE,
    duration_help: "Duration of HTTP server requests.",
    active_help: "Number of active HTTP server requests.",
};

pub(crate) static CLIENT: Side = Side {
    duration: HTTP_CLIENT_REQUEST_DURATION,
    active: HTTP_CLIENT_ACTIVE_REQUESTS,
    target_label: LABEL_SERVER_ADDRESS,
    none_label: OTHER,
    duration_help: "Duration of HTTP client requests.",
    active_help: "Number of active HTTP client requests.",
};

const METHOD_LABELS: [&str; 10] =
    ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE", OTHER];

/// Index into [`METHOD_LABELS`]; extension methods share the `_OTHER` slot so cardinality stays bounded.
#[inline]
pub(crate) fn method_index(method: &Method) -> usize {
    if *method == Method::GET {
        0
    } else if *method == Method::POST {
        1
    } else if *method == Method::PUT {
        2
    } else if *method == Method::DELETE {
        3
    } else if *method == Method::PATCH {
        4
    } else if *method == Method::HEAD {
        5
    } else if *method == Method::OPTIONS {
        6
    } else if *method == Method::CONNECT {
        7
    } else if *method == Method::TRACE {
        8
    } else {
        9
    }
}

/// Codes with a lock-free histogram slot; any other code takes a mutex (still no allocation after the
/// first time).
const COMMON_STATUSES: [u16; 33] = [
    200, 201, 202, 204, 206, 301, 302, 303, 304, 307, 308, 400, 401, 403, 404, 405, 406, 408, 409, 410, 412,
    413, 415, 416, 422, 428, 429, 431, 500, 501, 502, 503, 504,
];

#[inline]
fn status_slot(code: u16) -> Option<usize> {
    COMMON_STATUSES.iter().position(|&c| c == code)
}

/// `"100"` … `"999"`: every label a `StatusCode` can produce, so no status ever allocates a label.
static STATUS_DIGITS: [[u8; 3]; 900] = {
    let mut table = [[0u8; 3]; 900];
    let mut i = 0;
    while i < 900 {
        let code = i + 100;
        table[i] = [b'0' + (code / 100) as u8, b'0' + (code / 10 % 10) as u8, b'0' + (code % 10) as u8];
        i += 1;
    }
    table
};

fn status_label(code: u16) -> &'static str {
    let digits = STATUS_DIGITS.get(usize::from(code).wrapping_sub(100)).map(<[u8; 3]>::as_slice);
    // `StatusCode` is always 100..=999, and the table is ASCII digits.
    std::str::from_utf8(digits.unwrap_or(b"000")).unwrap_or(OTHER)
}

/// The series of one (target, method) pair: its in-flight gauge and its duration histograms by status.
pub(crate) struct Series {
    side: &'static Side,
    method: &'static str,
    target: SharedString,
    pub(crate) active: LazyGauge,
    common: [OnceLock<Histogram>; COMMON_STATUSES.len()],
    error: OnceLock<Histogram>,
    rare: Mutex<Vec<(u16, Histogram)>>,
}

impl std::fmt::Debug for Series {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Series")
            .field("method", &self.method)
            .field("target", &&*self.target)
            .finish_non_exhaustive()
    }
}

impl Series {
    fn new(side: &'static Side, method: &'static str, target: SharedString) -> Self {
        let labels = vec![Label::new(LABEL_METHOD, method), Label::new(side.target_label, target.clone())];
        let help = Description { unit: Unit::Count, help: side.active_help };
        let active = LazyGauge::described(side.active, labels, help);
        Self {
            side,
            method,
            target,
            active,
            common: std::array::from_fn(|_| OnceLock::new()),
            error: OnceLock::new(),
            rare: Mutex::new(Vec::new()),
        }
    }

    fn key(&self, status: &'static str) -> Key {
        let labels = vec![
            Label::new(LABEL_METHOD, self.method),
            Label::new(self.side.target_label, self.target.clone()),
            Label::new(crate::metric_names::LABEL_STATUS, status),
        ];
        Key::from_parts(self.side.duration, labels)
    }

    /// The histogram in `slot`, registered if a recorder is installed (else the call is not recorded).
    #[inline]
    fn histogram<'a>(&self, slot: &'a OnceLock<Histogram>, status: &'static str) -> Option<&'a Histogram> {
        let help = Description { unit: Unit::Seconds, help: self.side.duration_help };
        metric_handles::resolve(slot, || self.key(status), Some(&help))
    }

    /// Records one finished call: `status` is `None` when the inner service returned an error.
    pub(crate) fn record(&self, status: Option<u16>, seconds: f64) {
        let Some(code) = status else {
            if let Some(histogram) = self.histogram(&self.error, ERROR_STATUS) {
                histogram.record(seconds);
            }
            return;
        };
        if let Some(slot) = status_slot(code) {
            if let Some(histogram) = self.histogram(&self.common[slot], status_label(code)) {
                histogram.record(seconds);
            }
            return;
        }
        let mut rare = self.rare.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, histogram)) = rare.iter().find(|(c, _)| *c == code) {
            histogram.record(seconds);
        } else if let Some(histogram) = self.histogram(&OnceLock::new(), status_label(code)) {
            histogram.record(seconds);
            rare.push((code, histogram.clone()));
        }
    }
}

/// One target label value and its per-method series, created on first use.
#[derive(Debug)]
pub(crate) struct Entry {
    label: SharedString,
    methods: [OnceLock<Arc<Series>>; METHOD_LABELS.len()],
}

impl Entry {
    pub(crate) fn new(label: SharedString) -> Self {
        Self { label, methods: std::array::from_fn(|_| OnceLock::new()) }
    }

    #[inline]
    fn series(&self, shared: &Shared, method: usize) -> &Arc<Series> {
        self.methods[method]
            .get_or_init(|| Arc::new(Series::new(shared.side, METHOD_LABELS[method], self.label.clone())))
    }
}

/// Insert-only open-addressing table of targets with a fixed capacity (twice the cap, so probes end).
#[derive(Debug)]
struct Table {
    slots: Box<[OnceLock<Box<Entry>>]>,
    max: usize,
    /// Number of entries; also serialises inserts.
    len: Mutex<usize>,
}

impl Table {
    fn new(max: usize) -> Self {
        let capacity = if max == 0 { 0 } else { (max * 2).next_power_of_two() };
        Self { slots: (0..capacity).map(|_| OnceLock::new()).collect(), max, len: Mutex::new(0) }
    }

    /// The entry for `key`, inserting it if the cap allows; `None` when the table is full.
    fn get_or_insert(&self, key: &str) -> Option<&Entry> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let start = hash(key) & mask;
        let mut i = start;
        // Fast path: atomic loads only. An empty slot ends the probe (entries are never removed).
        while let Some(entry) = self.slots[i].get() {
            if *entry.label == *key {
                return Some(entry);
            }
            i = (i + 1) & mask;
        }
        // Slow path, once per new target: re-probe under the lock, another thread may have inserted.
        let mut len = self.len.lock().unwrap_or_else(PoisonError::into_inner);
        let mut i = start;
        loop {
            if let Some(entry) = self.slots[i].get() {
                if *entry.label == *key {
                    return Some(entry);
                }
                i = (i + 1) & mask;
                continue;
            }
            if *len >= self.max {
                return None;
            }
            *len += 1;
            return Some(
                self.slots[i].get_or_init(|| Box::new(Entry::new(SharedString::from(key.to_owned())))),
            );
        }
    }
}

/// FxHash-style multiply-rotate over 8-byte words. Keys are route templates or peer hosts chosen by the
/// application (never raw request paths), and the table is capped, so a fast non-keyed hash is fine.
#[inline]
fn hash(key: &str) -> usize {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h: u64 = key.len() as u64;
    let mut words = key.as_bytes().chunks_exact(8);
    for word in &mut words {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(bytes)).wrapping_mul(K);
    }
    for &byte in words.remainder() {
        h = (h.rotate_left(5) ^ u64::from(byte)).wrapping_mul(K);
    }
    // The multiply leaves the best bits high; fold them into the low bits the mask keeps.
    (h ^ (h >> 32)) as usize
}

/// Everything a layer's services share through one `Arc`.
#[derive(Debug)]
pub(crate) struct Shared {
    side: &'static Side,
    /// A client with a configured peer name: every call uses this entry, no lookup at all.
    fixed: Option<Entry>,
    /// The target strategy found nothing (unmatched route, no host).
    none: Entry,
    /// The table is full.
    overflow: Entry,
    table: Table,
}

impl Shared {
    pub(crate) fn new(side: &'static Side, fixed: Option<SharedString>, max_targets: usize) -> Self {
        let table_max = if fixed.is_some() { 0 } else { max_targets };
        Self {
            side,
            fixed: fixed.map(Entry::new),
            none: Entry::new(SharedString::const_str(side.none_label)),
            overflow: Entry::new(SharedString::const_str(OTHER)),
            table: Table::new(table_max),
        }
    }

    pub(crate) fn is_fixed(&self) -> bool {
        self.fixed.is_some()
    }

    /// The series for this call. `target` is only consulted when the layer has no fixed peer name.
    #[inline]
    pub(crate) fn series(&self, method: &Method, target: Option<&str>) -> Arc<Series> {
        let entry = match (&self.fixed, target) {
            (Some(fixed), _) => fixed,
            (None, None) => &self.none,
            (None, Some(target)) => self.table.get_or_insert(target).unwrap_or(&self.overflow),
        };
        Arc::clone(entry.series(self, method_index(method)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_labels_cover_every_code() {
        assert_eq!(status_label(100), "100");
        assert_eq!(status_label(404), "404");
        assert_eq!(status_label(999), "999");
        for code in COMMON_STATUSES {
            assert_eq!(status_label(code), code.to_string());
        }
    }

    #[test]
    fn extension_methods_share_one_slot() {
        assert_eq!(METHOD_LABELS[method_index(&Method::GET)], "GET");
        assert_eq!(METHOD_LABELS[method_index(&Method::PATCH)], "PATCH");
        assert_eq!(METHOD_LABELS[method_index(&Method::from_bytes(b"PURGE").unwrap())], OTHER);
    }

    #[test]
    fn table_is_capped_and_finds_what_it_inserted() {
        let table = Table::new(3);
        let a: *const Entry = table.get_or_insert("/a").unwrap();
        let b: *const Entry = table.get_or_insert("/b").unwrap();
        assert!(table.get_or_insert("/c").is_some());
        assert!(table.get_or_insert("/d").is_none(), "cap of 3 targets");
        assert!(std::ptr::eq(a, table.get_or_insert("/a").unwrap()));
        assert!(std::ptr::eq(b, table.get_or_insert("/b").unwrap()));
        assert!(Table::new(0).get_or_insert("/a").is_none());
    }
}
