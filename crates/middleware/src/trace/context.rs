//! The trace context of a request: ids, flags, `tracestate`, and the thread's current context.

use std::cell::RefCell;
use std::fmt;

use http::{HeaderMap, HeaderValue};

use super::header::{TRACEPARENT, TRACESTATE, TraceParent, parse_tracestate};

const HEX: &[u8; 16] = b"0123456789abcdef";

fn encode_hex<const N: usize, const M: usize>(bytes: [u8; N]) -> [u8; M] {
    debug_assert_eq!(M, 2 * N);
    let mut out = [0; M];
    // Pairs of output bytes, so that no index needs a bounds check (this runs for every request:
    // the span's `trace_id` field and the echoed `traceparent`).
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX[usize::from(b >> 4)];
        pair[1] = HEX[usize::from(b & 0xf)];
    }
    out
}

/// The value of each lowercase hex digit, `0xff` for every other byte.
const NIBBLE: [u8; 256] = {
    let mut table = [0xff; 256];
    let mut i = 0;
    while i < 16 {
        table[HEX[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// Decodes lowercase hex only (the W3C header forbids uppercase).
pub(super) fn decode_hex<const N: usize>(hex: &[u8]) -> Option<[u8; N]> {
    if hex.len() != 2 * N {
        return None;
    }
    let mut out = [0; N];
    let mut invalid = 0;
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        let (hi, lo) = (NIBBLE[usize::from(pair[0])], NIBBLE[usize::from(pair[1])]);
        invalid |= hi | lo; // any 0xff sets the high bits
        *byte = hi << 4 | lo;
    }
    (invalid & 0xf0 == 0).then_some(out)
}

fn write_hex<const N: usize, const M: usize>(f: &mut fmt::Formatter<'_>, bytes: [u8; N]) -> fmt::Result {
    let hex: [u8; M] = encode_hex(bytes);
    // Only ASCII hex digits were written.
    f.write_str(std::str::from_utf8(&hex).map_err(|_| fmt::Error)?)
}

/// A 16-byte W3C trace id, never all zeros. Displays as 32 lowercase hex digits, formatted on demand
/// (no allocation), so it can be recorded in log fields as it is.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId([u8; 16]);

impl TraceId {
    /// The id with these bytes, `None` if they are all zero (the invalid id).
    pub const fn from_bytes(bytes: [u8; 16]) -> Option<Self> {
        if u128::from_be_bytes(bytes) == 0 { None } else { Some(Self(bytes)) }
    }

    /// A random id (never zero).
    pub fn random() -> Self {
        Self(fastrand::u128(1..).to_be_bytes())
    }

    /// Parses 32 lowercase hex digits; `None` for any other input or the all-zero id.
    pub fn from_hex(hex: &[u8]) -> Option<Self> {
        decode_hex(hex).and_then(Self::from_bytes)
    }

    /// The raw bytes.
    pub const fn to_bytes(self) -> [u8; 16] {
        self.0
    }

    /// The 32 lowercase hex digits.
    pub fn to_hex(self) -> [u8; 32] {
        encode_hex(self.0)
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex::<16, 32>(f, self.0)
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

/// An 8-byte W3C span (parent) id, never all zeros. Displays as 16 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanId([u8; 8]);

impl SpanId {
    /// The id with these bytes, `None` if they are all zero (the invalid id).
    pub const fn from_bytes(bytes: [u8; 8]) -> Option<Self> {
        if u64::from_be_bytes(bytes) == 0 { None } else { Some(Self(bytes)) }
    }

    /// A random id (never zero).
    pub fn random() -> Self {
        Self(fastrand::u64(1..).to_be_bytes())
    }

    /// Parses 16 lowercase hex digits; `None` for any other input or the all-zero id.
    pub fn from_hex(hex: &[u8]) -> Option<Self> {
        decode_hex(hex).and_then(Self::from_bytes)
    }

    /// The raw bytes.
    pub const fn to_bytes(self) -> [u8; 8] {
        self.0
    }

    /// The 16 lowercase hex digits.
    pub fn to_hex(self) -> [u8; 16] {
        encode_hex(self.0)
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex::<8, 16>(f, self.0)
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpanId({self})")
    }
}

/// The `trace-flags` byte. Trace Context Level 1 defines one flag, `sampled`; the others are reserved and
/// are cleared when a context is built, as the specification requires.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TraceFlags(u8);

impl TraceFlags {
    /// No flag set: the caller did not record this trace.
    pub const NOT_SAMPLED: Self = Self(0);
    /// The `sampled` flag: the caller may have recorded this trace.
    pub const SAMPLED: Self = Self(1);

    /// Flags from the raw byte, keeping only the flags this version defines (`sampled`).
    pub const fn from_bits(bits: u8) -> Self {
        Self(bits & Self::SAMPLED.0)
    }

    /// The raw byte.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether the `sampled` flag is set.
    pub const fn is_sampled(self) -> bool {
        self.0 & Self::SAMPLED.0 != 0
    }
}

impl fmt::Debug for TraceFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceFlags({:02x})", self.0)
    }
}

/// The trace context of one span (the server span of a request, or a client call): which trace it
/// belongs to, its own span id, its parent's, the flags, and the vendor `tracestate` passed through.
///
/// The server layer makes it the thread's [`current`](Self::current) context while the handler runs
/// (with the `axum` feature, a handler can also take it as an extractor); the client layer makes its
/// outgoing `traceparent` a child of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: TraceId,
    span_id: SpanId,
    parent_span_id: Option<SpanId>,
    flags: TraceFlags,
    trace_state: Option<HeaderValue>,
}

impl TraceContext {
    /// The first span of a new trace: random trace and span ids, no parent, `sampled`.
    pub fn new_root() -> Self {
        Self {
            trace_id: TraceId::random(),
            span_id: SpanId::random(),
            parent_span_id: None,
            flags: TraceFlags::SAMPLED,
            trace_state: None,
        }
    }

    /// The first span of a new trace whose `sampled` flag the server's sampler decides.
    pub(super) fn new_root_sampled_by(sampler: super::server::Sampler) -> Self {
        let mut root = Self::new_root();
        root.flags = sampler.flags(root.trace_id);
        root
    }

    /// A new span (random span id) whose parent is the remote span described by `parent`, carrying
    /// `trace_state` along. `trace_state` is not checked: use [`from_headers`](Self::from_headers) for
    /// untrusted input.
    pub fn child_of(parent: &TraceParent, trace_state: Option<HeaderValue>) -> Self {
        Self {
            trace_id: parent.trace_id(),
            span_id: SpanId::random(),
            parent_span_id: Some(parent.parent_id()),
            flags: parent.flags(),
            trace_state,
        }
    }

    /// A new span (random span id) in the same trace whose parent is this span.
    #[must_use]
    pub fn child(&self) -> Self {
        Self {
            trace_id: self.trace_id,
            span_id: SpanId::random(),
            parent_span_id: Some(self.span_id),
            flags: self.flags,
            trace_state: self.trace_state.clone(),
        }
    }

    /// The context of a server span for a request with these headers, trusting the caller (as
    /// [`Incoming::Trust`](super::Incoming::Trust) does): a child of the caller's span when
    /// `traceparent` is valid (with `tracestate` passed through if well formed, truncated to 32
    /// members and 512 characters as the specification says, dropped when malformed), else the root
    /// of a new, sampled trace.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        match TraceParent::from_headers(headers) {
            Some(parent) => Self::child_of(&parent, parse_tracestate(&headers.get_all(TRACESTATE))),
            None => Self::new_root(),
        }
    }

    /// Writes `traceparent` (this span as the parent) and `tracestate` (removed when there is none)
    /// into `headers`, replacing any already there.
    pub fn inject(&self, headers: &mut HeaderMap) {
        headers.insert(TRACEPARENT, self.traceparent().to_header_value());
        match &self.trace_state {
            Some(state) => headers.insert(TRACESTATE, state.clone()),
            None => headers.remove(TRACESTATE),
        };
    }

    /// The `traceparent` that names this span as the parent.
    pub const fn traceparent(&self) -> TraceParent {
        TraceParent::new(self.trace_id, self.span_id, self.flags)
    }

    /// The trace id.
    pub const fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// This span's id.
    pub const fn span_id(&self) -> SpanId {
        self.span_id
    }

    /// The parent span's id; `None` for the root of a trace.
    pub const fn parent_span_id(&self) -> Option<SpanId> {
        self.parent_span_id
    }

    /// The trace flags.
    pub const fn flags(&self) -> TraceFlags {
        self.flags
    }

    /// The vendor `tracestate`, as received.
    pub const fn trace_state(&self) -> Option<&HeaderValue> {
        self.trace_state.as_ref()
    }

    /// The context of the server span whose request this thread is handling right now: set by the
    /// server layer while it polls the handler's future, `None` outside one.
    ///
    /// The client layer uses it, so a handler's outgoing calls continue its trace without passing the
    /// context by hand, as long as the call is made (the client service's `call`) from the handler's
    /// future. Work moved to another task (`tokio::spawn`, a `Buffer` worker) must carry the context
    /// itself, in the outgoing request's extensions.
    pub fn current() -> Option<Self> {
        CURRENT.with(|current| current.borrow().clone())
    }

    /// The trace id of the thread's [current](Self::current) context, without cloning the context
    /// (and its `tracestate`): what error documents and log lines need.
    pub fn current_trace_id() -> Option<TraceId> {
        CURRENT.with(|current| current.borrow().as_ref().map(Self::trace_id))
    }

    /// A child of the thread's current context, without cloning the current one first.
    pub(super) fn current_child() -> Option<Self> {
        CURRENT.with(|current| current.borrow().as_ref().map(Self::child))
    }

    #[cfg(feature = "opentelemetry")]
    pub(super) fn adopt(&mut self, trace_id: TraceId, span_id: SpanId, flags: TraceFlags) {
        if trace_id != self.trace_id {
            // A different trace (the exporter started the root span): the caller's parent and state
            // belong to another trace.
            self.parent_span_id = None;
            self.trace_state = None;
        }
        self.trace_id = trace_id;
        self.span_id = span_id;
        self.flags = flags;
    }
}

thread_local! {
    static CURRENT: RefCell<Option<TraceContext>> = const { RefCell::new(None) };
}

/// Makes a context the thread's current one until dropped, then puts the previous one back. The
/// context moves into the thread-local and back out (a swap, no clone), so nested scopes restore
/// correctly and nothing is allocated.
pub(super) struct CurrentScope<'a> {
    slot: &'a mut Option<TraceContext>,
}

impl<'a> CurrentScope<'a> {
    pub(super) fn enter(slot: &'a mut Option<TraceContext>) -> Self {
        CURRENT.with(|current| std::mem::swap(&mut *current.borrow_mut(), slot));
        Self { slot }
    }
}

impl Drop for CurrentScope<'_> {
    fn drop(&mut self) {
        // `try_with`: during thread teardown the thread-local may be gone; the context is then lost,
        // which is harmless.
        let _ = CURRENT.try_with(|current| std::mem::swap(&mut *current.borrow_mut(), self.slot));
    }
}

impl TraceContext {
    /// Runs `fut` with `context` as the thread's [current](Self::current) one while it is polled:
    /// for work spawned onto another task, which a thread's current context does not follow (the
    /// same shape as [`Deadline::scope`](crate::deadline::Deadline::scope)).
    pub fn scope<F: Future>(context: Option<Self>, fut: F) -> Scoped<F> {
        Scoped { inner: fut, context }
    }
}

/// Runs `fut` with the current context (captured now) as the current one while it is polled, so a
/// spawned task's outgoing calls continue the trace of the request that spawned it.
pub fn propagate<F: Future>(fut: F) -> Scoped<F> {
    TraceContext::scope(TraceContext::current(), fut)
}

pin_project_lite::pin_project! {
    /// A future polled with a [current](TraceContext::current) trace context; from
    /// [`TraceContext::scope`] and [`propagate`].
    pub struct Scoped<F> {
        #[pin]
        inner: F,
        context: Option<TraceContext>,
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    #[inline]
    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.project();
        let _scope = CurrentScope::enter(this.context);
        this.inner.poll(cx)
    }
}

impl<F> fmt::Debug for Scoped<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scoped").field("context", &self.context).finish_non_exhaustive()
    }
}
