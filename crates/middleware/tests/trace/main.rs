//! Trace context propagation: header parsing, the server and client layers, logs, OpenTelemetry.

#![cfg(feature = "trace")]

use std::convert::Infallible;
use std::io;
use std::sync::{Arc, Mutex, OnceLock};

use http::{HeaderValue, Request, Response};
use palisade::trace::{
    ClientTraceLayer, Incoming, ServerTraceLayer, SpanId, TraceContext, TraceFlags, TraceId, TraceParent,
};
use tower::{Layer, Service, ServiceExt, service_fn};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn request(headers: &[(&str, &str)]) -> Request<()> {
    logs();
    let mut builder = Request::builder().uri("/orders/7");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(()).unwrap()
}

/// A handler that answers with the thread's current `TraceContext` (set by the server layer).
async fn echo_context(_req: Request<()>) -> Result<Response<Option<TraceContext>>, Infallible> {
    Ok(Response::new(TraceContext::current()))
}

async fn serve(layer: ServerTraceLayer, req: Request<()>) -> Response<Option<TraceContext>> {
    layer.layer(service_fn(echo_context)).oneshot(req).await.unwrap()
}

fn header<B>(res: &Response<B>, name: &str) -> Option<String> {
    res.headers().get(name).map(|v| v.to_str().unwrap().to_owned())
}

#[test]
fn traceparent_test_vectors() {
    let valid: &[(&str, &str, &str, bool)] = &[
        (TRACEPARENT, TRACE_ID, PARENT_ID, true),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", TRACE_ID, PARENT_ID, false),
        // Reserved flags are accepted (and cleared); only `sampled` is kept.
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-fe", TRACE_ID, PARENT_ID, false),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09", TRACE_ID, PARENT_ID, true),
        // Optional whitespace around the value.
        ("  00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\t", TRACE_ID, PARENT_ID, true),
        (
            "00-00000000000000000000000000000001-0000000000000001-01",
            "00000000000000000000000000000001",
            "0000000000000001",
            true,
        ),
    ];
    for &(value, trace_id, parent_id, sampled) in valid {
        let parsed = TraceParent::parse(value.as_bytes()).unwrap_or_else(|e| panic!("{value:?}: {e}"));
        assert_eq!(parsed.trace_id().to_string(), trace_id, "{value:?}");
        assert_eq!(parsed.parent_id().to_string(), parent_id, "{value:?}");
        assert_eq!(parsed.flags().is_sampled(), sampled, "{value:?}");
    }

    // Future versions: the first four fields by the version 00 rules; more only after a `-`.
    let future: &[(&str, bool)] = &[
        ("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", true),
        ("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-will-be-like", true),
        ("fe-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-", true),
        ("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01.what-the-future-will-be-like", false),
        ("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01what", false),
        ("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0", false),
        ("cc-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", false),
        ("cc-00000000000000000000000000000000-00f067aa0ba902b7-01", false),
        ("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x-abc", false),
    ];
    for &(value, ok) in future {
        let parsed = TraceParent::parse(value.as_bytes());
        assert_eq!(parsed.is_ok(), ok, "{value:?}");
        if let Ok(parsed) = parsed {
            assert_eq!(parsed.trace_id().to_string(), TRACE_ID, "{value:?}");
            // Re-emitted as version 00.
            assert!(parsed.to_string().starts_with("00-"), "{value:?}");
        }
    }

    let invalid: &[&str] = &[
        "",
        "00",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "000-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ".0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        // Version 00 is exactly 55 characters.
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-will-be-like",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-010",
        // Zero ids.
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        // Uppercase and non-hex.
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A",
        "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b.-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-.0",
        "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        // Bad lengths.
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e47366-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b77-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
        // Wrong separators.
        "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01",
        "00 4bf92f3577b34da6a3ce929d0e0e4736 00f067aa0ba902b7 01",
    ];
    for value in invalid {
        assert!(TraceParent::parse(value.as_bytes()).is_err(), "{value:?} was accepted");
    }
}

#[test]
fn traceparent_round_trips_through_its_encoding() {
    let trace_id = TraceId::from_hex(TRACE_ID.as_bytes()).unwrap();
    let span_id = SpanId::from_hex(PARENT_ID.as_bytes()).unwrap();
    let tp = TraceParent::new(trace_id, span_id, TraceFlags::SAMPLED);
    assert_eq!(&tp.encode(), TRACEPARENT.as_bytes());
    assert_eq!(tp.to_header_value(), TRACEPARENT);
    assert_eq!(TraceParent::parse(&tp.encode()), Ok(tp));
    assert_eq!(TraceId::from_bytes([0; 16]), None);
    assert_eq!(SpanId::from_bytes([0; 8]), None);
    assert_eq!(format!("{trace_id:?}"), format!("TraceId({TRACE_ID})"));
}

proptest::proptest! {
    #[test]
    fn any_nonzero_ids_round_trip(trace in 1..=u128::MAX, span in 1..=u64::MAX, flags: u8) {
        let tp = TraceParent::new(
            TraceId::from_bytes(trace.to_be_bytes()).unwrap(),
            SpanId::from_bytes(span.to_be_bytes()).unwrap(),
            TraceFlags::from_bits(flags),
        );
        let encoded = tp.encode();
        proptest::prop_assert!(encoded.iter().all(|c| !c.is_ascii_uppercase()));
        proptest::prop_assert_eq!(TraceParent::parse(&encoded), Ok(tp));
        proptest::prop_assert_eq!(tp.flags().bits(), flags & 1);
    }

    #[test]
    fn parsing_arbitrary_bytes_never_panics(
        bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..80),
    ) {
        let _ = TraceParent::parse(&bytes);
    }

    #[test]
    fn any_single_character_change_to_the_ids_is_caught_or_read_back(
        pos in 3_usize..52,
        c in proptest::char::range('!', '~'),
    ) {
        let mut value = TRACEPARENT.as_bytes().to_vec();
        value[pos] = c as u8;
        let parsed = TraceParent::parse(&value);
        let hex_ok = pos != 35 && (c.is_ascii_digit() || ('a'..='f').contains(&c));
        let sep_ok = pos == 35 && c == '-';
        proptest::prop_assert_eq!(parsed.is_ok(), hex_ok || sep_ok);
        if let Ok(parsed) = parsed {
            proptest::prop_assert_eq!(parsed.to_string().into_bytes(), value);
        }
    }
}

#[tokio::test]
async fn continues_a_valid_traceparent_with_a_new_span_and_echoes_it() {
    let res = serve(ServerTraceLayer::new(), request(&[("traceparent", TRACEPARENT)])).await;
    let ctx = res.body().clone().expect("context in the extensions");
    assert_eq!(ctx.trace_id().to_string(), TRACE_ID);
    assert_eq!(ctx.parent_span_id().unwrap().to_string(), PARENT_ID);
    assert_ne!(ctx.span_id().to_string(), PARENT_ID);
    assert!(ctx.flags().is_sampled());
    assert_eq!(header(&res, "traceparent").unwrap(), format!("00-{TRACE_ID}-{}-01", ctx.span_id()));
}

#[tokio::test]
async fn keeps_the_unsampled_flag() {
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
    let res = serve(ServerTraceLayer::new(), request(&[("traceparent", tp)])).await;
    assert!(!res.body().as_ref().unwrap().flags().is_sampled());
    assert!(header(&res, "traceparent").unwrap().ends_with("-00"));
}

#[tokio::test]
async fn starts_a_new_trace_when_traceparent_is_absent_invalid_or_duplicated() {
    let duplicated = Request::builder()
        .header("traceparent", TRACEPARENT)
        .header("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        .body(())
        .unwrap();
    let cases = [
        request(&[]),
        request(&[
            ("traceparent", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
            ("tracestate", "a=1"),
        ]),
        request(&[("traceparent", "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")]),
        duplicated,
    ];
    let mut trace_ids = Vec::new();
    for req in cases {
        let res = serve(ServerTraceLayer::new(), req).await;
        let ctx = res.body().clone().unwrap();
        assert_ne!(ctx.trace_id().to_string(), TRACE_ID);
        assert_eq!(ctx.parent_span_id(), None);
        assert_eq!(ctx.trace_state(), None, "tracestate is discarded with an invalid traceparent");
        assert!(ctx.flags().is_sampled());
        let echoed = header(&res, "traceparent").unwrap();
        assert_eq!(TraceParent::parse(echoed.as_bytes()).unwrap(), ctx.traceparent());
        trace_ids.push(ctx.trace_id());
    }
    trace_ids.sort_by_key(|id| id.to_bytes());
    trace_ids.dedup();
    assert_eq!(trace_ids.len(), 4, "each new trace has its own random id");
}

async fn tracestate_of(lines: &[&str]) -> Option<HeaderValue> {
    let mut headers = vec![("traceparent", TRACEPARENT)];
    headers.extend(lines.iter().map(|line| ("tracestate", *line)));
    let res = serve(ServerTraceLayer::new(), request(&headers)).await;
    let ctx = res.body().clone().unwrap();
    assert_eq!(ctx.trace_id().to_string(), TRACE_ID, "a bad tracestate never fails the traceparent");
    ctx.trace_state().cloned()
}

#[tokio::test]
async fn passes_a_well_formed_tracestate_through() {
    let state = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7, tenant@vendor=x y";
    assert_eq!(tracestate_of(&[state]).await.unwrap(), state);
    // Several lines are one list.
    assert_eq!(
        tracestate_of(&["congo=t61rcWkgMzE", "rojo=00f067aa0ba902b7"]).await.unwrap(),
        "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
    );
    // Exactly 32 members is within bounds.
    let members: Vec<String> = (0..32).map(|i| format!("k{i}=v")).collect();
    assert!(tracestate_of(&[&members.join(",")]).await.is_some());
    // Exactly 512 characters is within bounds.
    let exact = format!("a={},b={}", "x".repeat(254), "y".repeat(253));
    assert_eq!(exact.len(), 512);
    assert!(tracestate_of(&[&exact]).await.is_some());
}

#[tokio::test]
async fn drops_a_malformed_tracestate() {
    let cases: &[&[&str]] = &[
        &["Congo=t61"],                       // uppercase key
        &["congo"],                           // no value
        &["congo="],                          // empty value
        &["congo=a=b"],                       // `=` in value
        &["1congo=x"],                        // simple key starts with a digit
        &["t@system-too-long=x"],             // system id over 14 characters
        &[&format!("a={}", "x".repeat(257))], // value over 256 characters
        &["congo=1,congo=2"],                 // duplicate key
        &["congo=1", "congo=2"],
        &["  ,  "],
    ];
    for lines in cases {
        assert_eq!(tracestate_of(lines).await, None, "{lines:?}");
    }
}

#[tokio::test]
async fn truncates_an_oversized_tracestate_as_the_specification_says() {
    // Over 32 members: the first 32 are kept, on one line or two.
    let members: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
    let first_32 = members[..32].join(",");
    assert_eq!(tracestate_of(&[&members.join(",")]).await.unwrap(), first_32.as_str());
    let two_lines = [members[..20].join(","), members[20..].join(",")];
    assert_eq!(tracestate_of(&[&two_lines[0], &two_lines[1]]).await.unwrap(), first_32.as_str());

    // Over 512 characters: members over 128 characters go first, from the end...
    let big = |key: &str, n: usize| format!("{key}={}", "x".repeat(n));
    let (a, b, c, d) = (big("a", 200), big("b", 100), big("c", 200), big("d", 100));
    let list = [a.as_str(), &b, &c, &d].join(",");
    assert_eq!(list.len(), 611);
    let expected = [a.as_str(), &b, &d].join(",");
    assert_eq!(tracestate_of(&[&list]).await.unwrap(), expected.as_str(), "c, the last large one, goes");

    // ... then any member from the end.
    let small: Vec<String> = (0..6).map(|i| big(&format!("s{i}"), 100)).collect();
    let list = small.join(",");
    assert_eq!(list.len(), 6 * 103 + 5);
    assert_eq!(tracestate_of(&[&list]).await.unwrap(), small[..4].join(",").as_str());

    // The length counts the commas between members; 513 loses its last member.
    let too_long = format!("a={},b={}", "x".repeat(254), "y".repeat(254));
    assert_eq!(too_long.len(), 513);
    assert_eq!(tracestate_of(&[&too_long]).await.unwrap(), format!("a={}", "x".repeat(254)).as_str());
}

#[tokio::test]
async fn by_default_the_callers_sampled_flag_and_tracestate_are_trusted() {
    let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
    let req = request(&[("traceparent", unsampled), ("tracestate", "congo=t61")]);
    let ctx = serve(ServerTraceLayer::new(), req).await.into_body().unwrap();
    assert!(!ctx.flags().is_sampled());
    assert_eq!(ctx.trace_state().unwrap(), "congo=t61");
}

#[tokio::test]
async fn at_the_edge_the_trace_id_is_kept_but_sampling_and_tracestate_are_ours() {
    let edge =
        |ratio| ServerTraceLayer::builder().incoming(Incoming::Edge).sample_ratio(ratio).build().unwrap();
    for flags in ["00", "01"] {
        let tp = format!("00-{TRACE_ID}-{PARENT_ID}-{flags}");
        for (ratio, sampled) in [(0.0, false), (1.0, true)] {
            let req = request(&[("traceparent", &tp), ("tracestate", "congo=t61")]);
            let res = serve(edge(ratio), req).await;
            let ctx = res.body().clone().unwrap();
            assert_eq!(ctx.trace_id().to_string(), TRACE_ID, "kept for correlation");
            assert_eq!(ctx.parent_span_id().unwrap().to_string(), PARENT_ID);
            assert_eq!(ctx.flags().is_sampled(), sampled, "caller said {flags}, ratio {ratio}");
            assert_eq!(ctx.trace_state(), None, "the caller's tracestate is not passed on");
        }
    }
}

#[tokio::test]
async fn at_the_edge_a_caller_cannot_pick_trace_ids_that_are_always_sampled() {
    // With a 25 % ratio, an id whose low bits are 0 would always be sampled if the decision came from
    // the caller's id. At the edge it is a draw: about a quarter of the requests are sampled.
    let edge = ServerTraceLayer::builder().incoming(Incoming::Edge).sample_ratio(0.25).build().unwrap();
    let tp = "00-4bf92f3577b34da60000000000000000-00f067aa0ba902b7-01";
    let mut sampled = 0;
    for _ in 0..4000 {
        let ctx = serve(edge, request(&[("traceparent", tp)])).await.into_body().unwrap();
        assert_eq!(ctx.trace_id().to_string(), "4bf92f3577b34da60000000000000000");
        sampled += usize::from(ctx.flags().is_sampled());
    }
    assert!((850..=1150).contains(&sampled), "{sampled} of 4000");
}

#[tokio::test]
async fn restart_ignores_the_callers_context() {
    let layer = ServerTraceLayer::builder().incoming(Incoming::Restart).build().unwrap();
    let req = request(&[("traceparent", TRACEPARENT), ("tracestate", "congo=t61")]);
    let ctx = serve(layer, req).await.into_body().unwrap();
    assert_ne!(ctx.trace_id().to_string(), TRACE_ID);
    assert_eq!(ctx.parent_span_id(), None);
    assert_eq!(ctx.trace_state(), None);
}

#[tokio::test]
async fn new_traces_are_sampled_at_the_ratio_decided_from_the_trace_id() {
    let layer = ServerTraceLayer::builder().sample_ratio(0.25).build().unwrap();
    let mut sampled = 0;
    let n = 4000;
    for _ in 0..n {
        let ctx = serve(layer, request(&[])).await.into_body().unwrap();
        // The decision is TraceIdRatioBased's: the trace id's low 64 bits, shifted once, below
        // ratio × 2⁶³.
        let low = u128::from_be_bytes(ctx.trace_id().to_bytes()) as u64;
        assert_eq!(ctx.flags().is_sampled(), (low >> 1) < (1u64 << 61), "{:?}", ctx.trace_id());
        sampled += usize::from(ctx.flags().is_sampled());
    }
    // Random ids: 1000 expected, and 4 standard deviations (27) either side is far from flaky.
    assert!((850..=1150).contains(&sampled), "{sampled} of {n}");
    assert!(ServerTraceLayer::builder().sample_ratio(-0.1).build().is_err());
    assert!(ServerTraceLayer::builder().sample_ratio(f64::NAN).build().is_err());
}

#[tokio::test]
async fn echo_can_be_turned_off() {
    let res = serve(
        ServerTraceLayer::builder().echo_traceparent(false).build().unwrap(),
        request(&[("traceparent", TRACEPARENT)]),
    )
    .await;
    assert_eq!(header(&res, "traceparent"), None);
    assert!(res.body().is_some());
}

/// Makes `subscriber` this thread's default (used by the OpenTelemetry tests).
#[cfg(feature = "opentelemetry")]
fn set_default(
    subscriber: impl tracing::Subscriber + Send + Sync + 'static,
) -> tracing::subscriber::DefaultGuard {
    let guard = tracing::subscriber::set_default(subscriber);
    tracing::callsite::rebuild_interest_cache();
    guard
}

/// What the process-wide `fmt` subscriber (INFO) wrote, shared by the tests; each test finds its own
/// lines by their message.
///
/// Global rather than per test: `tracing` caches each callsite's interest across threads, and a span
/// first hit by a parallel test with no subscriber of its own could stay disabled in a test that has one.
/// [`request`] installs it, so it is in place before any test hits a callsite.
fn logs() -> &'static Logs {
    static LOGS: OnceLock<Logs> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only global subscriber");
        logs
    })
}

/// A `fmt` subscriber writer into a shared buffer.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Logs {
    /// The one line whose message is `message`.
    fn line(&self, message: &str) -> String {
        let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
        let mut lines = text.lines().filter(|line| line.ends_with(&format!(": {message}")));
        let line = lines.next().unwrap_or_else(|| panic!("no line {message:?} in {text}")).to_owned();
        assert_eq!(lines.next(), None, "{message:?} logged more than once");
        line
    }
}

/// A handler that logs `message`.
fn logging_handler(
    message: &'static str,
) -> impl Service<Request<()>, Response = Response<()>, Error = Infallible, Future: Send> + Clone {
    service_fn(move |_req: Request<()>| async move {
        tracing::info!("{message}");
        Ok(Response::new(()))
    })
}

#[tokio::test]
async fn handler_log_lines_carry_the_trace_id() {
    let svc = ServerTraceLayer::new().layer(logging_handler("reserving stock"));
    svc.oneshot(request(&[("traceparent", TRACEPARENT)])).await.unwrap();

    let line = logs().line("reserving stock");
    // The span's fields, in any order (with `opentelemetry`, `otel.kind` comes first).
    let fields = line.split_once("http_request{").and_then(|(_, rest)| rest.split_once('}')).map(|(f, _)| f);
    let trace_id = format!("trace_id={TRACE_ID}");
    assert!(fields.is_some_and(|f| f.split(' ').any(|field| field == trace_id)), "{line}");
    assert!(!line.contains("/orders/7"), "the default span carries only the ids: {line}");
}

#[tokio::test]
async fn the_access_log_writes_one_event_per_answer_in_the_request_trace() {
    let svc = ServerTraceLayer::builder().access_log(tracing::Level::INFO).build().unwrap().layer(
        service_fn(|_req: Request<()>| async {
            let mut res = Response::new(());
            *res.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
            Ok::<_, Infallible>(res)
        }),
    );
    svc.oneshot(request(&[("traceparent", TRACEPARENT)])).await.unwrap();

    let text = String::from_utf8(logs().0.lock().unwrap().clone()).unwrap();
    let mut lines = text.lines().filter(|line| line.contains(": request method="));
    let line = lines.next().unwrap_or_else(|| panic!("no access-log line in {text}"));
    assert_eq!(lines.next(), None, "one event per request");
    assert!(line.contains(" INFO "), "{line}");
    assert!(line.contains(&format!("trace_id={TRACE_ID}")), "{line}");
    for field in ["method=\"GET\"", "route=\"-\"", "status=503", "duration_ms="] {
        assert!(line.contains(field), "{field} missing: {line}");
    }
}

#[tokio::test]
async fn span_details_add_the_span_id_method_and_path() {
    let svc = ServerTraceLayer::builder()
        .span_details(true)
        .build()
        .unwrap()
        .layer(logging_handler("releasing stock"));
    let res = svc.oneshot(request(&[("traceparent", TRACEPARENT)])).await.unwrap();
    let span_id = &header(&res, "traceparent").unwrap()[36..52];

    let line = logs().line("releasing stock");
    assert!(line.contains(&format!("trace_id={TRACE_ID}")), "{line}");
    assert!(line.contains(&format!("span_id={span_id}")), "{line}");
    assert!(line.contains("http_request{"), "{line}");
    assert!(line.contains("/orders/7"), "{line}");
}

#[tokio::test]
async fn span_level_is_configurable() {
    let svc = ServerTraceLayer::builder()
        .level(tracing::Level::DEBUG)
        .build()
        .unwrap()
        .layer(logging_handler("charging the card"));
    let res = svc.oneshot(request(&[("traceparent", TRACEPARENT)])).await.unwrap();

    // The DEBUG span is filtered out by the INFO subscriber; propagation still works.
    let line = logs().line("charging the card");
    assert!(!line.contains("trace_id="), "{line}");
    assert!(header(&res, "traceparent").unwrap().starts_with(&format!("00-{TRACE_ID}-")));
}

type MockClient = tower_test::mock::Mock<Request<()>, Response<()>>;

/// Serves `req` with a handler that makes one call through the client trace layer, threading nothing
/// by hand; returns the server's response and the request the downstream received.
async fn serve_calling_downstream(req: Request<()>) -> (Response<()>, Request<()>) {
    let (mock, mut downstream) = tower_test::mock::pair::<Request<()>, Response<()>>();
    let client = ClientTraceLayer::new().layer(mock);
    let server = ServerTraceLayer::new().layer(service_fn(move |_req: Request<()>| {
        let client: palisade::trace::ClientTrace<MockClient> = client.clone();
        async move {
            let out = Request::builder().uri("http://inventory/v1/stock/sku-1").body(()).unwrap();
            client.oneshot(out).await.unwrap();
            Ok::<_, Infallible>(Response::new(()))
        }
    }));
    let respond = async {
        let (outgoing, send) = downstream.next_request().await.unwrap();
        send.send_response(Response::new(()));
        outgoing
    };
    let (res, outgoing) = tokio::join!(server.oneshot(req), respond);
    (res.unwrap(), outgoing)
}

#[tokio::test]
async fn a_handler_client_call_continues_the_incoming_trace() {
    let req = request(&[("traceparent", TRACEPARENT), ("tracestate", "congo=t61")]);
    let (res, outgoing) = serve_calling_downstream(req).await;
    let server_span = TraceParent::parse(res.headers()["traceparent"].as_bytes()).unwrap().parent_id();

    // The outgoing traceparent names a new client span in the incoming trace...
    let sent = TraceParent::parse(outgoing.headers()["traceparent"].as_bytes()).unwrap();
    assert_eq!(sent.trace_id().to_string(), TRACE_ID);
    assert_ne!(sent.parent_id(), server_span);
    assert_ne!(sent.parent_id().to_string(), PARENT_ID);
    assert!(sent.flags().is_sampled());
    assert_eq!(outgoing.headers()["tracestate"], "congo=t61");
    // ...whose parent is the server span (the client span's context rides in the extensions).
    let client_ctx = outgoing.extensions().get::<TraceContext>().unwrap();
    assert_eq!(client_ctx.span_id(), sent.parent_id());
    assert_eq!(client_ctx.parent_span_id(), Some(server_span));
    assert_eq!(TraceContext::current(), None, "restored once the server future is done");
}

#[tokio::test]
async fn a_client_call_outside_a_server_span_starts_a_trace() {
    let (mut client, mut downstream) =
        tower_test::mock::spawn_layer::<Request<()>, Response<()>, _>(ClientTraceLayer::new());
    assert!(client.poll_ready().is_ready());
    logs();
    let mut req = Request::new(());
    req.headers_mut().insert("tracestate", HeaderValue::from_static("stale=1"));
    let _res = client.call(req);
    let (outgoing, _send) = downstream.next_request().await.unwrap();
    let sent = TraceParent::parse(outgoing.headers()["traceparent"].as_bytes()).unwrap();
    let ctx = outgoing.extensions().get::<TraceContext>().unwrap();
    assert_eq!(
        (ctx.trace_id(), ctx.span_id(), ctx.parent_span_id()),
        (sent.trace_id(), sent.parent_id(), None)
    );
    assert!(outgoing.headers().get("tracestate").is_none(), "a stale tracestate is not sent");
}

#[tokio::test]
async fn a_context_in_the_request_extensions_wins() {
    let (mut client, mut downstream) =
        tower_test::mock::spawn_layer::<Request<()>, Response<()>, _>(ClientTraceLayer::new());
    let parent = TraceContext::new_root();
    logs();
    let mut req = Request::new(());
    req.extensions_mut().insert(parent.clone());
    assert!(client.poll_ready().is_ready());
    let _res = client.call(req);
    let (outgoing, _send) = downstream.next_request().await.unwrap();
    let sent = TraceParent::parse(outgoing.headers()["traceparent"].as_bytes()).unwrap();
    assert_eq!(sent.trace_id(), parent.trace_id());
    assert_ne!(sent.parent_id(), parent.span_id());
    assert_eq!(outgoing.extensions().get::<TraceContext>().unwrap().parent_span_id(), Some(parent.span_id()));
}

#[tokio::test]
async fn current_is_set_only_while_the_handler_is_polled() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen_in_handler = seen.clone();
    let svc = ServerTraceLayer::new().layer(service_fn(move |_req: Request<()>| {
        let seen = seen_in_handler.clone();
        let in_call = TraceContext::current(); // the service's `call` runs inside the scope too
        async move {
            seen.lock().unwrap().push(TraceContext::current());
            tokio::task::yield_now().await; // a second poll sees it again
            seen.lock().unwrap().push(TraceContext::current());
            assert_eq!(TraceContext::current(), in_call);
            assert_eq!(TraceContext::current_trace_id(), in_call.map(|ctx| ctx.trace_id()));
            Ok::<_, Infallible>(Response::new(()))
        }
    }));
    assert_eq!(TraceContext::current(), None);
    svc.oneshot(request(&[("traceparent", TRACEPARENT)])).await.unwrap();
    assert_eq!(TraceContext::current(), None);
    assert_eq!(TraceContext::current_trace_id(), None);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|ctx| ctx.as_ref().unwrap().trace_id().to_string() == TRACE_ID));
}

#[tokio::test]
async fn nested_servers_restore_the_outer_context() {
    let inner = ServerTraceLayer::new().layer(service_fn(echo_context));
    let outer = ServerTraceLayer::new().layer(service_fn(move |_req: Request<()>| {
        let inner = inner.clone();
        async move {
            let before = TraceContext::current().unwrap();
            // A request of another trace handled in-process, from within this handler.
            inner.oneshot(request(&[])).await.unwrap();
            assert_eq!(TraceContext::current().unwrap(), before);
            Ok::<_, Infallible>(Response::new(Some(before)))
        }
    }));
    let res = outer.oneshot(request(&[("traceparent", TRACEPARENT)])).await.unwrap();
    assert_eq!(res.body().as_ref().unwrap().trace_id().to_string(), TRACE_ID);
}

#[test]
fn services_expose_their_inner_service() {
    let mut svc = ServerTraceLayer::default().layer(7_u8);
    *svc.get_mut() += 1;
    assert_eq!(*svc.get_ref(), 8);
    assert_eq!(svc.into_inner(), 8);
    let client = ClientTraceLayer::default().layer(1_u8);
    assert_eq!(client.into_inner(), 1);
}

#[cfg(feature = "opentelemetry")]
mod opentelemetry_bridge;

#[cfg(feature = "axum")]
#[tokio::test]
async fn axum_handlers_read_the_context_and_spans_carry_the_route() {
    use axum::Router;
    use axum::routing::get;

    async fn get_order(context: TraceContext) -> String {
        tracing::info!("loading the order");
        context.trace_id().to_string()
    }

    let app = Router::new()
        .route("/orders/{id}", get(get_order))
        .layer(ServerTraceLayer::builder().span_details(true).build().unwrap());
    let req = Request::builder()
        .uri("/orders/7")
        .header("traceparent", TRACEPARENT)
        .body(axum::body::Body::empty())
        .unwrap();
    logs();
    let res = app.oneshot(req).await.unwrap();
    assert!(header(&res, "traceparent").unwrap().starts_with(&format!("00-{TRACE_ID}-")));
    let body = http_body_util::BodyExt::collect(res.into_body()).await.unwrap().to_bytes();
    assert_eq!(body, TRACE_ID);
    let line = logs().line("loading the order");
    assert!(line.contains("http.route=\"/orders/{id}\""), "{line}");
    assert!(line.contains(&format!("trace_id={TRACE_ID}")), "{line}");
}

#[cfg(feature = "axum")]
#[tokio::test]
async fn the_axum_extractor_without_the_server_layer_is_a_500_problem_and_optional_is_none() {
    use axum::Router;
    use axum::routing::get;

    async fn required(context: TraceContext) -> String {
        context.trace_id().to_string()
    }
    async fn optional(context: Option<TraceContext>) -> String {
        format!("{}", context.is_some())
    }

    let app = Router::new().route("/required", get(required)).route("/optional", get(optional));
    let get_uri = |uri: &str| Request::get(uri).body(axum::body::Body::empty()).unwrap();
    let res = app.clone().oneshot(get_uri("/required")).await.unwrap();
    assert_eq!(res.status(), 500);
    assert_eq!(header(&res, "content-type").as_deref(), Some("application/problem+json"));
    let res = app.clone().oneshot(get_uri("/optional")).await.unwrap();
    let body = http_body_util::BodyExt::collect(res.into_body()).await.unwrap().to_bytes();
    assert_eq!(body, "false");

    let traced = app.layer(ServerTraceLayer::new());
    let res = traced.oneshot(get_uri("/optional")).await.unwrap();
    let body = http_body_util::BodyExt::collect(res.into_body()).await.unwrap().to_bytes();
    assert_eq!(body, "true");
}

#[tokio::test]
async fn a_spawned_task_continues_the_trace_only_when_the_context_is_propagated() {
    let context = TraceContext::new_root();
    let trace_id = context.trace_id();
    let (propagated, lost) = TraceContext::scope(Some(context), async {
        let propagated = tokio::spawn(palisade::trace::propagate(async { TraceContext::current_trace_id() }));
        let lost = tokio::spawn(async { TraceContext::current_trace_id() });
        (propagated.await.unwrap(), lost.await.unwrap())
    })
    .await;
    assert_eq!(propagated, Some(trace_id));
    assert_eq!(lost, None, "a thread's current context does not follow a spawned task by itself");
    assert_eq!(TraceContext::current_trace_id(), None, "the scope ends with its future");
}
