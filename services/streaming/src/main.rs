//! streaming (origin): thin entry point; everything lives in the library.

use streaming::configuration::Settings;
use streaming::startup;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Some(settings) = shared::server::load_settings(Settings::from_env)? else { return Ok(()) };
    let _telemetry = shared::telemetry::init("streaming", &settings.telemetry)?;
    let app = startup::build(settings).await?;
    tracing::info!(port = app.port(), "streaming origin listening");
    app.run_until_stopped(shared::server::shutdown_signal()).await?;
    Ok(())
}
