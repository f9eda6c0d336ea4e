//! The standalone server: configuration from the environment (and `--flags`), logging,
//! PHP, the listener, and a clean exit on SIGTERM or Ctrl-C.

use std::process::ExitCode;

use tokio_php::config::{self, Config, Flags, ProcessEnv};
use tokio_php::{App, server};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        print!("{}", config::help_text());
        return ExitCode::SUCCESS;
    }
    let config = match Flags::parse(&args, ProcessEnv)
        .and_then(|source| Config::from_source(&source).map_err(|e| e.to_string()))
    {
        Ok(config) => config,
        Err(err) => {
            eprintln!("tokio_php: {err}");
            return ExitCode::from(2);
        }
    };
    if let Err(err) = tokio_php::logging::init(&config) {
        eprintln!("tokio_php: {err}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::error!(error = %err, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(config))
}

async fn run(config: Config) -> ExitCode {
    let listen_addr = config.listen_addr;
    let app = match App::start(config) {
        Ok(app) => app,
        Err(err) => {
            tracing::error!("cannot start: {err}");
            return ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(listen_addr).await {
        Ok(listener) => listener,
        Err(err) => {
            tracing::error!(
                "cannot listen on {listen_addr}: {err}; set LISTEN_ADDR to a free address"
            );
            app.shutdown();
            return ExitCode::from(2);
        }
    };
    match listener.local_addr() {
        Ok(addr) => tracing::info!("listening on http://{addr}"),
        Err(err) => tracing::warn!(error = %err, "listening, address unknown"),
    }
    let result = server::serve(
        listener,
        app.router(),
        server::shutdown_signal(),
        server::DEFAULT_DRAIN_TIMEOUT,
    )
    .await;
    app.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "server failed");
            ExitCode::FAILURE
        }
    }
}
