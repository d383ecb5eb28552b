//! The W3C `traceparent` and `tracestate` headers (Trace Context Level 1), parsed without allocating.

use std::fmt;

use http::header::{GetAll, HeaderName};
use http::{HeaderMap, HeaderValue};

use super::context::{SpanId, TraceFlags, TraceId, decode_hex};
use super::error::InvalidTraceParent;

/// The `traceparent` header name.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// The `tracestate` header name.
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// The length of a version `00` `traceparent`.
const LEN: usize = 55;
/// Bounds on a `tracestate` kept for propagation.
const MAX_TRACESTATE_LEN: usize = 512;
const MAX_TRACESTATE_MEMBERS: usize = 32;
/// Members longer than this are the first dropped from a `tracestate` over the length limit.
const MAX_TRACESTATE_MEMBER_KEPT_FIRST: usize = 128;

/// A parsed `traceparent` header: the caller's trace id, its span id (our parent) and the flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TraceParent {
    trace_id: TraceId,
    parent_id: SpanId,
    flags: TraceFlags,
}

impl TraceParent {
    /// A `traceparent` naming `parent_id` in trace `trace_id` (reserved flags are cleared).
    pub const fn new(trace_id: TraceId, parent_id: SpanId, flags: TraceFlags) -> Self {
        Self { trace_id, parent_id, flags: TraceFlags::from_bits(flags.bits()) }
    }

    /// Parses a header value per Trace Context Level 1: version `00` is exactly
    /// `00-<32 hex trace-id>-<16 hex parent-id>-<2 hex flags>` in lowercase hex, with non-zero ids;
    /// version `ff` is invalid; a later version (`01`..`fe`) is read by the version `00` rules for its
    /// first four fields and may continue only after a `-`. Surrounding whitespace is ignored.
    pub fn parse(value: &[u8]) -> Result<Self, InvalidTraceParent> {
        const INVALID: InvalidTraceParent = InvalidTraceParent::new();
        let value = value.trim_ascii();
        if value.len() < LEN {
            return Err(INVALID);
        }
        let [version] = decode_hex::<1>(&value[..2]).ok_or(INVALID)?;
        let length_ok = match version {
            0x00 => value.len() == LEN,
            0xff => false,
            _ => value.len() == LEN || value[LEN] == b'-',
        };
        if !length_ok || value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
            return Err(INVALID);
        }
        let trace_id = TraceId::from_hex(&value[3..35]).ok_or(INVALID)?;
        let parent_id = SpanId::from_hex(&value[36..52]).ok_or(INVALID)?;
        let [flags] = decode_hex::<1>(&value[53..55]).ok_or(INVALID)?;
        Ok(Self::new(trace_id, parent_id, TraceFlags::from_bits(flags)))
    }

    /// The caller's `traceparent`, `None` when it is missing, invalid or sent more than once.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let mut values = headers.get_all(TRACEPARENT).iter();
        let value = values.next()?;
        if values.next().is_some() {
            return None;
        }
        Self::parse(value.as_bytes()).ok()
    }

    /// The trace id.
    pub const fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// The span id of the caller (the parent of the span that receives this header).
    pub const fn parent_id(&self) -> SpanId {
        self.parent_id
    }

    /// The flags.
    pub const fn flags(&self) -> TraceFlags {
        self.flags
    }

    /// The version `00` encoding, on the stack.
    pub fn encode(&self) -> [u8; LEN] {
        let mut out = [b'-'; LEN];
        out[..2].copy_from_slice(b"00");
        out[3..35].copy_from_slice(&self.trace_id.to_hex());
        out[36..52].copy_from_slice(&self.parent_id.to_hex());
        out[53] = b'0';
        out[54] = if self.flags.is_sampled() { b'1' } else { b'0' };
        out
    }

    /// The header value (its only allocation is the header's own buffer).
    pub fn to_header_value(&self) -> HeaderValue {
        HeaderValue::from_bytes(&self.encode()).expect("traceparent is ASCII")
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(std::str::from_utf8(&self.encode()).map_err(|_| fmt::Error)?)
    }
}

/// The `tracestate` to pass along: the header lines as one list, or `None` when there is none, or when
/// it is malformed or has a duplicate key (the specification lets a vendor drop a header it cannot
/// parse). A list too long is truncated as the specification says, not dropped: members past the 32nd
/// go, then, while the list is longer than 512 characters, members longer than 128 characters from
/// the end, then any member from the end.
pub(super) fn parse_tracestate(lines: &GetAll<'_, HeaderValue>) -> Option<HeaderValue> {
    let mut kept: [&[u8]; MAX_TRACESTATE_MEMBERS] = [&[]; MAX_TRACESTATE_MEMBERS];
    let mut members = 0;
    // Whether the list can be passed on as the one header line it came in.
    let mut as_received = true;
    let mut line_count = 0;
    for line in lines {
        line_count += 1;
        for member in line.as_bytes().split(|&c| c == b',') {
            let member = member.trim_ascii();
            if member.is_empty() {
                continue; // the list grammar allows empty members
            }
            let key = valid_member(member)?;
            if members == MAX_TRACESTATE_MEMBERS {
                as_received = false; // the rest is truncated, still checked to be well formed
                continue;
            }
            if kept[..members].iter().any(|m| member_key(m) == key) {
                return None;
            }
            kept[members] = member;
            members += 1;
        }
    }
    if members == 0 {
        return None;
    }
    let len = |kept: &[&[u8]]| kept.iter().map(|m| m.len()).sum::<usize>() + kept.len() - 1;
    let mut total = len(&kept[..members]);
    if total > MAX_TRACESTATE_LEN {
        as_received = false;
        // Large members first, from the end.
        let mut i = members;
        while i > 0 && total > MAX_TRACESTATE_LEN {
            i -= 1;
            if kept[i].len() > MAX_TRACESTATE_MEMBER_KEPT_FIRST {
                kept.copy_within(i + 1..members, i);
                members -= 1;
                total = if members == 0 { 0 } else { len(&kept[..members]) };
            }
        }
        while members > 0 && total > MAX_TRACESTATE_LEN {
            members -= 1;
            total = if members == 0 { 0 } else { len(&kept[..members]) };
        }
        if members == 0 {
            return None;
        }
    }
    if as_received && line_count == 1 {
        return lines.iter().next().cloned(); // the common case: no copy
    }
    // Several header lines are one list, or members were dropped: the only allocation, and rare.
    let mut joined = Vec::with_capacity(total);
    for (i, member) in kept[..members].iter().enumerate() {
        if i > 0 {
            joined.push(b',');
        }
        joined.extend_from_slice(member);
    }
    HeaderValue::from_bytes(&joined).ok()
}

/// The key of a member already checked by [`valid_member`].
fn member_key(member: &[u8]) -> &[u8] {
    member.split(|&c| c == b'=').next().unwrap_or(member)
}

/// Checks one `key=value` list member, returning its key.
fn valid_member(member: &[u8]) -> Option<&[u8]> {
    let eq = member.iter().position(|&c| c == b'=')?;
    let (key, value) = (&member[..eq], &member[eq + 1..]);
    (valid_key(key) && valid_value(value)).then_some(key)
}

fn valid_key(key: &[u8]) -> bool {
    fn key_char(c: u8) -> bool {
        matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'*' | b'/')
    }
    match key.iter().position(|&c| c == b'@') {
        // simple-key = lcalpha 0*255( lcalpha / DIGIT / "_" / "-"/ "*" / "/" )
        None => {
            key.len() <= 256
                && key.first().is_some_and(u8::is_ascii_lowercase)
                && key.iter().all(|&c| key_char(c))
        }
        // multi-tenant-key = tenant-id "@" system-id
        Some(at) => {
            let (tenant, system) = (&key[..at], &key[at + 1..]);
            tenant.len() <= 241
                && tenant.first().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                && tenant.iter().all(|&c| key_char(c))
                && system.len() <= 14
                && system.first().is_some_and(u8::is_ascii_lowercase)
                && system.iter().all(|&c| key_char(c))
        }
    }
}

fn valid_value(value: &[u8]) -> bool {
    // value = 0*255(chr) nblk-chr; chr = %x20 / nblk-chr; nblk-chr = %x21-2B / %x2D-3C / %x3E-7E
    value.len() <= 256
        && value.last().is_some_and(|&c| c != b' ')
        && value.iter().all(|&c| matches!(c, 0x20..=0x2b | 0x2d..=0x3c | 0x3e..=0x7e))
}
