//! The OpenTelemetry bridge, with `tracing-opentelemetry`'s no-op tracer (no exporter, no network).

use std::borrow::Cow;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use http::{Request, Response};
use opentelemetry::KeyValue;
use opentelemetry::trace::{self as otel, TraceContextExt as _};
use palisade::trace::{ServerTraceLayer, TraceContext, TraceParent};
use tower::{Layer, ServiceExt, service_fn};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;

use super::{PARENT_ID, TRACE_ID, TRACEPARENT, request};

#[tokio::test]
async fn the_request_span_has_the_callers_span_as_opentelemetry_parent() {
    let subscriber = tracing_subscriber::registry().with(tracing_opentelemetry::layer());
    let _guard = super::set_default(subscriber);

    let svc = ServerTraceLayer::new().layer(service_fn(|_req: Request<()>| async {
        // The no-op tracer's span carries its parent's span context: the caller's.
        let cx = tracing::Span::current().context();
        let parent = cx.span().span_context().clone();
        Ok::<_, Infallible>(Response::new(parent))
    }));
    let res =
        svc.oneshot(request(&[("traceparent", TRACEPARENT), ("tracestate", "congo=t61")])).await.unwrap();
    let parent = res.body();
    assert!(parent.is_remote());
    assert_eq!(parent.trace_id().to_string(), TRACE_ID);
    assert_eq!(parent.span_id().to_string(), PARENT_ID);
    assert!(parent.is_sampled());
    assert_eq!(parent.trace_state().get("congo"), Some("t61"));
    // Nothing was exported, so palisade keeps its own ids.
    assert!(res.headers()["traceparent"].to_str().unwrap().starts_with(&format!("00-{TRACE_ID}-")));
}

/// A tracer that assigns its own ids (like an exporting SDK tracer) and remembers every span it built,
/// with its parent.
#[derive(Clone, Default)]
struct IdTracer {
    built: Arc<Mutex<Vec<Built>>>,
}

#[derive(Clone, Debug)]
struct Built {
    name: String,
    parent: Option<otel::SpanId>,
    context: otel::SpanContext,
}

const OTEL_ROOT_TRACE: u128 = 0xabcd_ef01_2345_6789_abcd_ef01_2345_6789;

impl otel::Tracer for IdTracer {
    type Span = IdSpan;

    fn build_with_context(&self, builder: otel::SpanBuilder, parent_cx: &opentelemetry::Context) -> IdSpan {
        let mut built = self.built.lock().unwrap();
        let parent = parent_cx.span().span_context().clone();
        let trace_id =
            if parent.is_valid() { parent.trace_id() } else { otel::TraceId::from(OTEL_ROOT_TRACE) };
        let span_id = otel::SpanId::from(0x5000 + built.len() as u64);
        let context = otel::SpanContext::new(
            trace_id,
            span_id,
            otel::TraceFlags::SAMPLED,
            false,
            otel::TraceState::default(),
        );
        built.push(Built {
            name: builder.name.to_string(),
            parent: parent.is_valid().then(|| parent.span_id()),
            context: context.clone(),
        });
        IdSpan(context)
    }
}

#[derive(Debug)]
struct IdSpan(otel::SpanContext);

impl otel::Span for IdSpan {
    fn add_event_with_timestamp<T: Into<Cow<'static, str>>>(
        &mut self,
        _: T,
        _: SystemTime,
        _: Vec<KeyValue>,
    ) {
    }
    fn span_context(&self) -> &otel::SpanContext {
        &self.0
    }
    fn is_recording(&self) -> bool {
        true
    }
    fn set_attribute(&mut self, _: KeyValue) {}
    fn set_status(&mut self, _: otel::Status) {}
    fn update_name<T: Into<Cow<'static, str>>>(&mut self, _: T) {}
    fn add_link(&mut self, _: otel::SpanContext, _: Vec<KeyValue>) {}
    fn end_with_timestamp(&mut self, _: SystemTime) {}
}

impl IdTracer {
    fn span(&self, name: &str) -> Built {
        self.built.lock().unwrap().iter().find(|b| b.name == name).cloned().expect(name)
    }
}

#[tokio::test]
async fn ids_follow_the_exported_spans() {
    let tracer = IdTracer::default();
    let subscriber =
        tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(tracer.clone()));
    let _guard = super::set_default(subscriber);

    let req = request(&[("traceparent", TRACEPARENT)]);
    let (res, outgoing) = super::serve_calling_downstream(req).await;

    let server = tracer.span("http_request");
    assert_eq!(server.parent.unwrap().to_string(), PARENT_ID, "the caller's span is the exported parent");
    assert_eq!(server.context.trace_id().to_string(), TRACE_ID);
    let echoed = TraceParent::parse(res.headers()["traceparent"].as_bytes()).unwrap();
    assert_eq!(
        echoed.parent_id().to_string(),
        server.context.span_id().to_string(),
        "echo names the exported span"
    );

    let client = tracer.span("http_client_request");
    assert_eq!(client.parent, Some(server.context.span_id()));
    let sent = TraceParent::parse(outgoing.headers()["traceparent"].as_bytes()).unwrap();
    assert_eq!(sent.trace_id().to_string(), TRACE_ID);
    assert_eq!(sent.parent_id().to_string(), client.context.span_id().to_string());
}

#[tokio::test]
async fn a_new_trace_takes_the_exporters_ids() {
    let tracer = IdTracer::default();
    let subscriber =
        tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(tracer.clone()));
    let _guard = super::set_default(subscriber);

    let svc = ServerTraceLayer::new().layer(service_fn(|_req: Request<()>| async move {
        Ok::<_, Infallible>(Response::new(TraceContext::current()))
    }));
    let res = svc.oneshot(request(&[])).await.unwrap();
    let server = tracer.span("http_request");
    assert_eq!(server.parent, None);
    let ctx = res.body().clone().unwrap();
    assert_eq!(ctx.trace_id().to_bytes(), OTEL_ROOT_TRACE.to_be_bytes());
    assert_eq!(ctx.span_id().to_bytes(), server.context.span_id().to_bytes());
    assert_eq!(res.headers()["traceparent"], ctx.traceparent().to_string());
}
