//! Log output through tracing: readable text on a terminal, or JSON lines.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::{Config, LogFormat};

/// Installs the global subscriber for `config`. Does nothing when one is already installed
/// (a host application's own logging wins).
pub fn init(config: &Config) -> Result<(), String> {
    let filter = EnvFilter::try_new(&config.log_level).map_err(|err| {
        format!(
            "invalid {}={:?}: expected a level (error, warn, info, debug, trace) or a tracing directive: {err}",
            crate::config::ENV_LOG_LEVEL,
            config.log_level
        )
    })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match config.log_format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    let _ = result;
    Ok(())
}
