//! Tracing set-up, and trace-context propagation across HTTP and AMQP.
//!
//! Logs are structured JSON on stderr always. A W3C trace-context tracer is
//! installed always, so trace ids exist and propagate even with no collector;
//! spans are exported over OTLP/HTTP only when OTEL_EXPORTER_OTLP_ENDPOINT is
//! set. That keeps one upload one trace from request to `ready`, whether or not
//! anybody is collecting.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use crate::configuration::Env;

#[derive(Debug, Clone, Default)]
pub struct TelemetrySettings {
    pub log_filter: String,
    pub otlp_endpoint: Option<String>,
}

impl TelemetrySettings {
    pub fn from_env(env: &mut Env) -> Self {
        Self {
            log_filter: env.optional("RUST_LOG", "info", "log filter (tracing EnvFilter syntax)"),
            otlp_endpoint: env.maybe("OTEL_EXPORTER_OTLP_ENDPOINT", "OTLP/HTTP collector URL; unset means no span export"),
        }
    }
}

/// Keeps the tracer provider alive; dropping it flushes pending spans.
pub struct TelemetryGuard(Option<SdkTracerProvider>);

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = p.shutdown();
        }
    }
}

/// Installs the global subscriber. Call once, from `main`.
pub fn init(service: &'static str, settings: &TelemetrySettings) -> anyhow::Result<TelemetryGuard> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let resource = opentelemetry_sdk::Resource::builder().with_service_name(service).build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    if let Some(endpoint) = &settings.otlp_endpoint {
        use opentelemetry_otlp::WithExportConfig;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
            .build()?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer(service));
    let filter = EnvFilter::try_new(&settings.log_filter).unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().json().with_current_span(true).with_writer(std::io::stderr))
        .with(otel)
        .try_init()?;
    Ok(TelemetryGuard(Some(provider)))
}

/// For tests: logs only when TEST_LOG is set, so parallel test output stays readable.
pub fn init_for_tests() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = tracing_subscriber::fmt().with_env_filter(EnvFilter::new("info")).with_test_writer().try_init();
        }
    });
}

/// The current span's trace id as hex, or None outside a sampled trace.
pub fn current_trace_id() -> Option<String> {
    use opentelemetry::trace::TraceContextExt;
    let cx = Span::current().context();
    let id = cx.span().span_context().trace_id();
    (id != opentelemetry::trace::TraceId::INVALID).then(|| id.to_string())
}

/// Writes the current span's context into a carrier (HTTP headers, AMQP headers).
pub fn inject_current(carrier: &mut dyn Injector) {
    TraceContextPropagator::new().inject_context(&Span::current().context(), carrier);
}

/// Makes `span` a child of the context found in a carrier, if any.
pub fn adopt_parent(span: &Span, carrier: &dyn Extractor) {
    let cx = TraceContextPropagator::new().extract(carrier);
    span.set_parent(cx);
}

/// Adapter: HTTP headers as a propagation carrier.
pub use opentelemetry_http::{HeaderExtractor, HeaderInjector};
