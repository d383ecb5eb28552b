//! Reading and writing a remaining time budget in header values.

use std::time::Duration;

/// Most ASCII digits in a millisecond value (`u64::MAX` has 20).
const MAX_MILLIS_DIGITS: usize = 20;
/// Most ASCII digits in a `grpc-timeout` value, per the gRPC HTTP/2 protocol spec.
const MAX_GRPC_DIGITS: usize = 8;
/// The largest value a `grpc-timeout` can carry (8 digits).
const MAX_GRPC_VALUE: u64 = 99_999_999;

/// Strips optional whitespace (RFC 9110 OWS) around a field value.
fn trim_ows(value: &[u8]) -> &[u8] {
    let start = value.iter().position(|b| !matches!(b, b' ' | b'\t')).unwrap_or(value.len());
    let end = value.iter().rposition(|b| !matches!(b, b' ' | b'\t')).map_or(start, |i| i + 1);
    &value[start..end]
}

/// Parses 1 to `max_digits` ASCII digits (no sign) into a `u64`; `None` on anything else or overflow.
fn parse_digits(digits: &[u8], max_digits: usize) -> Option<u64> {
    if digits.is_empty() || digits.len() > max_digits {
        return None;
    }
    digits.iter().try_fold(0_u64, |acc, &b| {
        if b.is_ascii_digit() { acc.checked_mul(10)?.checked_add(u64::from(b - b'0')) } else { None }
    })
}

/// Parses the palisade budget header: a non-negative integer number of milliseconds.
pub(crate) fn parse_millis(value: &[u8]) -> Option<Duration> {
    parse_digits(trim_ows(value), MAX_MILLIS_DIGITS).map(Duration::from_millis)
}

/// Parses a `grpc-timeout` value: 1 to 8 ASCII digits followed by one unit among
/// `H` (hours), `M` (minutes), `S` (seconds), `m` (milliseconds), `u` (microseconds), `n` (nanoseconds).
pub(crate) fn parse_grpc(value: &[u8]) -> Option<Duration> {
    let (&unit, digits) = trim_ows(value).split_last()?;
    let n = parse_digits(digits, MAX_GRPC_DIGITS)?;
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Formats `budget` as whole milliseconds, rounded down: the callee never believes it has more time
/// than the caller will wait.
pub(crate) fn format_millis(budget: Duration) -> http::HeaderValue {
    // Saturates after ~584 million years; `u64` always fits a header value.
    let millis = u64::try_from(budget.as_millis()).unwrap_or(u64::MAX);
    http::HeaderValue::from(millis)
}

/// Formats `budget` as a `grpc-timeout` value in the finest unit that fits 8 digits, rounded down.
pub(crate) fn format_grpc(budget: Duration) -> http::HeaderValue {
    const UNITS: [(u128, u8); 6] = [
        (1, b'n'),
        (1_000, b'u'),
        (1_000_000, b'm'),
        (1_000_000_000, b'S'),
        (60_000_000_000, b'M'),
        (3_600_000_000_000, b'H'),
    ];
    let nanos = budget.as_nanos();
    let (value, unit) = UNITS
        .iter()
        .find_map(|&(per, unit)| {
            let v = nanos / per;
            u64::try_from(v).ok().filter(|v| *v <= MAX_GRPC_VALUE).map(|v| (v, unit))
        })
        // Budgets beyond ~11,000 years are sent as the largest value.
        .unwrap_or((MAX_GRPC_VALUE, b'H'));
    // At most 8 digits and the unit, written right to left on the stack.
    let mut buf = [0_u8; MAX_GRPC_DIGITS + 1];
    let mut start = MAX_GRPC_DIGITS;
    buf[start] = unit;
    let mut rest = value;
    loop {
        start -= 1;
        buf[start] = b'0' + u8::try_from(rest % 10).expect("a decimal digit fits u8");
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    http::HeaderValue::from_bytes(&buf[start..]).expect("digits and a unit letter are a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_millis() {
        assert_eq!(parse_millis(b"0"), Some(Duration::ZERO));
        assert_eq!(parse_millis(b"1500"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_millis(b" 50\t"), Some(Duration::from_millis(50)));
        assert_eq!(parse_millis(b"18446744073709551615"), Some(Duration::from_millis(u64::MAX)));
        for bad in [&b""[..], b" ", b"-1", b"+1", b"1.5", b"1s", b"1 2", b"0x10", b"18446744073709551616"] {
            assert_eq!(parse_millis(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn parses_grpc_timeout() {
        assert_eq!(parse_grpc(b"1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc(b"2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_grpc(b"3S"), Some(Duration::from_secs(3)));
        assert_eq!(parse_grpc(b"99999999m"), Some(Duration::from_millis(99_999_999)));
        assert_eq!(parse_grpc(b"5u"), Some(Duration::from_micros(5)));
        assert_eq!(parse_grpc(b"0n"), Some(Duration::ZERO));
        for bad in [&b""[..], b"m", b"100", b"100x", b"123456789m", b"-1S", b"1.5S", b"1 S", b"1s"] {
            assert_eq!(parse_grpc(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn formats_in_the_finest_unit_that_fits() {
        assert_eq!(format_grpc(Duration::from_millis(1500)), "1500000u");
        assert_eq!(format_grpc(Duration::from_nanos(99_999_999)), "99999999n");
        assert_eq!(format_grpc(Duration::from_secs(100_000)), "100000S");
        assert_eq!(format_grpc(Duration::ZERO), "0n");
        assert_eq!(format_grpc(Duration::MAX), "99999999H");
        assert_eq!(format_millis(Duration::from_micros(1999)), "1");
    }

    proptest! {
        #[test]
        fn grpc_round_trip_loses_less_than_one_unit(nanos in 0_u64..=u64::MAX) {
            let budget = Duration::from_nanos(nanos);
            let value = format_grpc(budget);
            let bytes = value.as_bytes();
            prop_assert!(bytes.len() <= MAX_GRPC_DIGITS + 1);
            let parsed = parse_grpc(bytes).expect("formatted values parse");
            prop_assert!(parsed <= budget);
            let unit = parse_grpc(&[b"1", &bytes[bytes.len() - 1..]].concat()).unwrap();
            prop_assert!(budget.checked_sub(parsed).is_some_and(|lost| lost < unit));
        }

        #[test]
        fn millis_round_trip(millis in 0_u64..=u64::MAX) {
            let value = format_millis(Duration::from_millis(millis));
            prop_assert_eq!(parse_millis(value.as_bytes()), Some(Duration::from_millis(millis)));
        }
    }
}
