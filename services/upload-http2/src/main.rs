//! upload-http2: thin entry point; everything lives in the library.

use upload_http2::configuration::Settings;
use upload_http2::startup;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Some(settings) = shared::server::load_settings(Settings::from_env)? else { return Ok(()) };
    let _telemetry = shared::telemetry::init("upload-http2", &settings.telemetry)?;
    let app = startup::build(settings).await?;
    tracing::info!(port = app.port(), "upload-http2 listening");
    app.run_until_stopped(shared::server::shutdown_signal()).await?;
    Ok(())
}
