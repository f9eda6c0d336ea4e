//! The standalone server, as the binary runs it: the listeners, PHP, the router, the
//! internal server, and a clean exit on SIGTERM or Ctrl-C. With `PROCESSES` above 0 (the
//! default) the supervisor (docs/supervisor.md) runs serving processes that each do what
//! a single process does here.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use crate::config::{self, Config};
use crate::server::{self, Server, tls};
use crate::{App, metrics, supervisor};

/// Runs the server for `config` until a signal stops it; the process's exit code.
pub fn run(config: Config) -> ExitCode {
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
    let listeners = match Listeners::bind(&config) {
        Ok(listeners) => listeners,
        Err(code) => return ExitCode::from(code),
    };
    if config.processes > 0 {
        return ExitCode::from(supervisor::run(config, server, listeners));
    }
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return ExitCode::from(code),
    };
    ExitCode::from(runtime.block_on(async move {
        // Nobody can read HTTP metrics without the internal server: do not collect them then.
        if config.internal_addr.is_some() {
            metrics::install_recorder();
        }
        match App::start(config) {
            Ok(app) => serve(server, listeners, app).await,
            Err(err) => {
                tracing::error!("cannot start: {err}");
                2
            }
        }
    }))
}

/// The async runtime a serving process runs on.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, u8> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|err| {
            tracing::error!(error = %err, "cannot start the async runtime");
            1
        })
}

/// The listening sockets, bound before PHP starts (and, with a supervisor, before it forks:
/// every serving process accepts from the same queues).
#[derive(Debug)]
pub(crate) struct Listeners {
    main: std::net::TcpListener,
    internal: Option<std::net::TcpListener>,
}

/// Connections the kernel queues while every serving process is busy (or restarting).
const LISTEN_BACKLOG: i32 = 1024;

/// The listening descriptors a reloading master passes to its next image ("main[,internal]").
pub(crate) const ENV_INHERITED_LISTENERS: &str = "TOKIO_PHP_INHERITED_LISTENERS";

impl Listeners {
    fn bind(config: &Config) -> Result<Self, u8> {
        if let Ok(fds) = std::env::var(ENV_INHERITED_LISTENERS) {
            // A reload: the previous master image left them open (read once, here).
            return Self::inherited(&fds);
        }
        let main = bind(config.listen_addr, config::ENV_LISTEN_ADDR)?;
        let internal = match config.internal_addr {
            Some(addr) => Some(bind(addr, config::ENV_INTERNAL_ADDR)?),
            None => None,
        };
        Ok(Self { main, internal })
    }

    /// The listeners the previous master image left open for this one (a reload).
    fn inherited(fds: &str) -> Result<Self, u8> {
        let mut listeners = fds.split(',').map(|fd| {
            fd.parse::<i32>()
                .map_err(|_| std::io::Error::other(format!("{fd:?} is not a descriptor")))
                .and_then(crate::ffi::process::inherited_listener)
        });
        let main = match listeners.next() {
            Some(Ok(listener)) => listener,
            Some(Err(err)) => {
                tracing::error!(error = %err, "reload: cannot take over the listening socket");
                return Err(1);
            }
            None => return Err(1),
        };
        let internal = match listeners.next().transpose() {
            Ok(internal) => internal,
            Err(err) => {
                tracing::error!(error = %err, "reload: cannot take over the internal listener");
                return Err(1);
            }
        };
        Ok(Self { main, internal })
    }

    /// Keeps the listening sockets open across `exec` (a reload); their descriptors, in
    /// the form [`ENV_INHERITED_LISTENERS`] takes.
    pub(crate) fn keep_across_exec(&self) -> std::io::Result<String> {
        use std::os::fd::AsRawFd;
        let mut fds = Vec::new();
        for listener in std::iter::once(&self.main).chain(self.internal.as_ref()) {
            rustix::io::fcntl_setfd(listener, rustix::io::FdFlags::empty())?;
            fds.push(listener.as_raw_fd().to_string());
        }
        Ok(fds.join(","))
    }

    fn announce(&self, server: &Server) {
        match self.main.local_addr() {
            Ok(addr) => tracing::info!("listening on {}://{addr}", server.scheme()),
            Err(err) => tracing::warn!(error = %err, "listening, address unknown"),
        }
        if let Some(Ok(addr)) = self
            .internal
            .as_ref()
            .map(std::net::TcpListener::local_addr)
        {
            tracing::info!("internal server listening on http://{addr}");
        }
    }
}

/// Binds `addr` (the value of the variable `name`), or says why not.
fn bind(addr: SocketAddr, name: &str) -> Result<std::net::TcpListener, u8> {
    let listener = std::net::TcpListener::bind(addr)
        .and_then(|listener| listener.set_nonblocking(true).map(|()| listener))
        .map_err(|err| {
            tracing::error!("cannot listen on {addr}: {err}; set {name} to a free address");
            2
        })?;
    // A longer accept queue than std's 128: listen() again only resizes it.
    if let Err(err) = rustix::net::listen(&listener, LISTEN_BACKLOG) {
        tracing::debug!(error = %err, "accept queue left at its default size");
    }
    Ok(listener)
}

/// Serves `app` on `listeners` until a signal: the main listener drains first, then the
/// internal server stops and PHP shuts down. The exit code.
pub(crate) async fn serve(server: Server, listeners: Listeners, app: App) -> u8 {
    listeners.announce(&server);
    crate::scoreboard::mark_ready();
    let listener = match tokio::net::TcpListener::from_std(listeners.main) {
        Ok(listener) => listener,
        Err(err) => {
            tracing::error!(error = %err, "cannot use the listening socket");
            app.shutdown();
            return 1;
        }
    };
    tokio::spawn(tls::reload_on_sighup(server.tls_config().cloned()));

    // The internal server answers probes and metrics until the main listener has drained.
    let (internal_stop, internal_stopped) = tokio::sync::oneshot::channel::<()>();
    let internal = listeners
        .internal
        .and_then(|listener| tokio::net::TcpListener::from_std(listener).ok())
        .map(|listener| {
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
    let result = server
        .balance_accepts()
        .serve(listener, app.router(), shutdown)
        .await;
    let _ = internal_stop.send(());
    if let Some(internal) = internal {
        let _ = internal.await;
    }
    app.shutdown();
    match result {
        Ok(()) => 0,
        Err(err) => {
            tracing::error!(error = %err, "server failed");
            1
        }
    }
}
