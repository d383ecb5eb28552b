//! Offset paging as every list endpoint does it: `limit` 1–100 (default 20), `offset` at most
//! `i64::MAX` (what the databases take), and one extra row fetched to tell whether a next page
//! exists.
//!
//! ```
//! use kit::paging;
//!
//! let mut errors = Vec::new();
//! let (limit, offset) = paging::check(Some(2), None, &mut errors);
//! assert!(errors.is_empty());
//! // The store is asked for `limit + 1` rows.
//! let mut rows = vec!["a", "b", "c"];
//! assert_eq!(paging::finish(&mut rows, limit, offset), Some(2));
//! assert_eq!(rows, ["a", "b"]);
//! ```

use crate::error::FieldError;

/// Default page size.
pub const DEFAULT_LIMIT: u32 = 20;
/// Largest page size.
pub const MAX_LIMIT: u32 = 100;

/// The `(limit, offset)` of a list request, defaults applied. A value out of range is reported in
/// `errors` (fields `limit`, `offset`), after whatever is already there.
pub fn check(limit: Option<u32>, offset: Option<u64>, errors: &mut Vec<FieldError>) -> (u32, u64) {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        errors.push(FieldError::new("limit", format!("must be between 1 and {MAX_LIMIT}")));
    }
    let offset = offset.unwrap_or(0);
    if offset > i64::MAX as u64 {
        errors.push(FieldError::new("offset", "is too large"));
    }
    (limit, offset)
}

/// Cuts `rows`, fetched with `limit + 1`, to the page, and returns the next page's offset: `None`
/// on the last page.
pub fn finish<T>(rows: &mut Vec<T>, limit: u32, offset: u64) -> Option<u64> {
    let next_offset = (rows.len() > limit as usize).then(|| offset + u64::from(limit));
    rows.truncate(limit as usize);
    next_offset
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_applies_defaults_and_reports_values_out_of_range() {
        let mut errors = Vec::new();
        assert_eq!(check(None, None, &mut errors), (DEFAULT_LIMIT, 0));
        assert_eq!(check(Some(MAX_LIMIT), Some(7), &mut errors), (MAX_LIMIT, 7));
        assert!(errors.is_empty());
        check(Some(0), Some(u64::MAX), &mut errors);
        check(Some(MAX_LIMIT + 1), None, &mut errors);
        let pointers: Vec<&str> = errors.iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(pointers, ["limit", "offset", "limit"]);
    }

    #[test]
    fn finish_cuts_the_extra_row_and_gives_the_next_offset() {
        let mut full = vec![1, 2, 3];
        assert_eq!(finish(&mut full, 2, 10), Some(12));
        assert_eq!(full, [1, 2]);
        let mut last = vec![1, 2];
        assert_eq!(finish(&mut last, 2, 10), None);
        assert_eq!(last, [1, 2]);
    }
}
