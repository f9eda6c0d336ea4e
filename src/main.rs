//! The standalone server: configuration from the environment (and `--flags`), logging,
//! PHP, the listener, and a clean exit on SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_php::config::{self, Config, Flags, ProcessEnv};
use tokio_php::server::{self, Server, tls};
use tokio_php::{App, metrics};

/// The server's own allocations (requests, headers, futures: some 25 per request) go to
/// mimalloc, which is faster than glibc's malloc for these small, short-lived, cross-thread
/// blocks. PHP keeps its own allocator (the Zend memory manager); a Rust application that
/// embeds the library chooses its own.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    let internal_addr = config.internal_addr;
    // TLS files are checked before PHP starts, so a bad certificate stops startup at once.
    if let Err(err) = config.validate() {
        tracing::error!("cannot start: {err}");
        return ExitCode::from(2);
    }
    let server = match Server::from_config(&config) {
        Ok(server) => server,
        Err(err) => {
            tracing::error!("cannot start: {err}");
            return ExitCode::from(2);
        }
    };
    // Nobody can read HTTP metrics without the internal server: do not collect them then.
    if internal_addr.is_some() {
        metrics::install_recorder();
    }
    let app = match App::start(config) {
        Ok(app) => app,
        Err(err) => {
            tracing::error!("cannot start: {err}");
            return ExitCode::from(2);
        }
    };
    let listener = match bind(listen_addr, config::ENV_LISTEN_ADDR).await {
        Ok(listener) => listener,
        Err(code) => {
            app.shutdown();
            return code;
        }
    };
    let internal_listener = match internal_addr {
        Some(addr) => match bind(addr, config::ENV_INTERNAL_ADDR).await {
            Ok(listener) => Some(listener),
            Err(code) => {
                app.shutdown();
                return code;
            }
        },
        None => None,
    };
    match listener.local_addr() {
        Ok(addr) => tracing::info!("listening on {}://{addr}", server.scheme()),
        Err(err) => tracing::warn!(error = %err, "listening, address unknown"),
    }

    tokio::spawn(tls::reload_on_sighup(server.tls_config().cloned()));

    // The internal server answers probes and metrics until the main listener has drained.
    let (internal_stop, internal_stopped) = tokio::sync::oneshot::channel::<()>();
    let internal = internal_listener.map(|listener| {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!("internal server listening on http://{addr}");
        }
        let router = app.internal_router();
        tokio::spawn(async move {
            Server::default()
                .drain_timeout(Duration::from_secs(1))
                .serve(listener, router, async {
                    let _ = internal_stopped.await;
                })
                .await
        })
    });

    let lifecycle = app.lifecycle().clone();
    let shutdown = async move {
        let signal = server::next_signal().await;
        tracing::info!(
            ?signal,
            "shutting down: draining in-flight requests (a second signal exits at once)"
        );
        lifecycle.start_draining();
        tokio::spawn(async {
            let signal = server::next_signal().await;
            tracing::warn!(?signal, "second signal: exiting at once without draining");
            std::process::exit(i32::from(signal.exit_code()));
        });
    };
    let result = server.serve(listener, app.router(), shutdown).await;
    let _ = internal_stop.send(());
    if let Some(internal) = internal {
        let _ = internal.await;
    }
    app.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "server failed");
            ExitCode::FAILURE
        }
    }
}

/// Binds `addr` (the value of the variable `name`), or says why not.
async fn bind(addr: SocketAddr, name: &str) -> Result<TcpListener, ExitCode> {
    TcpListener::bind(addr).await.map_err(|err| {
        tracing::error!("cannot listen on {addr}: {err}; set {name} to a free address");
        ExitCode::from(2)
    })
}
