//! Structured logging setup and the Prometheus metrics registry.

pub mod metrics;

pub use metrics::Metrics;

/// Installs the tracing subscriber: `RUST_LOG` filters (default `info`), logs go to stderr so
/// that `serve` keeps stdout for its `key: value` lines. `SWITCHYARD_LOG_FORMAT=json` gives
/// JSON lines.
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let json = std::env::var("SWITCHYARD_LOG_FORMAT").is_ok_and(|v| v == "json");
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
