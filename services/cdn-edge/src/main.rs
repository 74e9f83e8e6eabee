//! cdn-edge: thin entry point; everything lives in the library.

use cdn_edge::configuration::Settings;
use cdn_edge::startup;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Some(settings) = shared::server::load_settings(Settings::from_env)? else { return Ok(()) };
    let _telemetry = shared::telemetry::init("cdn-edge", &settings.telemetry)?;
    let app = startup::build(settings).await?;
    tracing::info!(port = app.port(), "cdn-edge listening");
    app.run_until_stopped(shared::server::shutdown_signal()).await?;
    Ok(())
}
