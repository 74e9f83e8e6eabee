//! transcode-worker: thin entry point; everything lives in the library.

use transcode_worker::configuration::Settings;
use transcode_worker::startup::Application;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Some(settings) = shared::server::load_settings(Settings::from_env)? else { return Ok(()) };
    let _telemetry = shared::telemetry::init("transcode-worker", &settings.telemetry)?;
    let app = Application::build(settings).await?;
    tracing::info!(port = app.port(), "transcode-worker running");
    app.run_until_stopped(shared::server::shutdown_signal()).await?;
    Ok(())
}
