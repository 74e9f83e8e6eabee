//! live-ingest: thin entry point; everything lives in the library.

use live_ingest::configuration::Settings;
use live_ingest::startup;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Some(settings) = shared::server::load_settings(Settings::from_env)? else { return Ok(()) };
    let _telemetry = shared::telemetry::init("live-ingest", &settings.telemetry)?;
    let app = startup::build(settings).await?;
    tracing::info!(port = app.port(), "live ingest listening");
    app.run_until_stopped(shared::server::shutdown_signal()).await?;
    Ok(())
}
