//! Tracing set-up, and trace-context propagation across HTTP and AMQP.
//!
//! Logs are structured JSON on stderr always. A W3C trace-context tracer is
//! installed always, so trace ids exist and propagate even with no collector;
//! spans are exported over OTLP/HTTP only when OTEL_EXPORTER_OTLP_ENDPOINT is
//! set. That keeps one upload one trace from request to `ready`, whether or not
//! anybody is collecting.
//!
//! Panics are logged the same way: [`install_panic_hook`] (run by [`init`])
//! turns each into one structured error with its location, and counts it in
//! `panics_total` ([`crate::metrics::PANICS`]), so a panic in a spawned task,
//! which would otherwise only print to stderr and vanish, shows in the logs
//! and on every service's /metrics.

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

/// Installs the global subscriber and the panic hook. Call once, from `main`.
pub fn init(service: &'static str, settings: &TelemetrySettings) -> anyhow::Result<TelemetryGuard> {
    install_panic_hook();
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
        install_panic_hook();
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = tracing_subscriber::fmt().with_env_filter(EnvFilter::new("info")).with_test_writer().try_init();
        }
    });
}

/// Logs every panic as one structured error (message, location, thread)
/// and counts it in `panics_total`, then runs the hook that was there
/// before (the default one prints a backtrace when RUST_BACKTRACE asks, and
/// keeps a failing test's message where the test harness shows it).
/// Idempotent: the first call installs it.
pub fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            crate::metrics::PANICS.inc();
            let payload = info.payload();
            let message = payload.downcast_ref::<&str>().copied().or_else(|| payload.downcast_ref::<String>().map(String::as_str)).unwrap_or("(not a string)");
            let location = info.location().map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column())).unwrap_or_else(|| "unknown".into());
            let thread = std::thread::current();
            tracing::error!(panic.message = message, panic.location = %location, thread = thread.name().unwrap_or("unnamed"), "panicked at {location}: {message}");
            previous(info);
        }));
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Log lines written by a test subscriber.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_panic_in_a_spawned_task_is_logged_with_its_location_and_counted() {
        install_panic_hook();
        let logs = Captured::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt().json().with_writer(move || writer.clone()).finish();
        let before = crate::metrics::PANICS.get();
        // A current-thread runtime runs the task on this thread, where the
        // test subscriber is the default; the panic stays inside the task.
        let joined = tracing::subscriber::with_default(subscriber, || {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            rt.block_on(async { tokio::spawn(async { panic!("boom in a spawned task") }).await })
        });
        assert!(joined.unwrap_err().is_panic());
        assert!(crate::metrics::PANICS.get() > before, "panics_total rose");
        let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.lines().find(|l| l.contains("boom in a spawned task")).expect("the panic was logged")).unwrap();
        assert_eq!(line["level"], "ERROR");
        assert_eq!(line["fields"]["panic.message"], "boom in a spawned task");
        assert!(line["fields"]["panic.location"].as_str().unwrap().starts_with("shared/src/telemetry.rs:"), "{line}");
        let page = crate::metrics::Metrics::new("any").render();
        let series = page.lines().find(|l| l.starts_with("panics_total{")).expect("every registry shows panics_total");
        assert!(series.rsplit(' ').next().unwrap().parse::<f64>().unwrap() >= 1.0, "{series}");
    }
}
