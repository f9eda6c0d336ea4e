//! Accept balancing between serving processes (`PROCESSES` > 1).
//!
//! Every serving process accepts from the same listening socket, and the kernel wakes each
//! of them for a new connection: the first to call accept() takes it, whether or not its
//! PHP workers are free. A connection stays with the process that accepted it, so one
//! process could hold most of the keep-alive connections and queue their requests while
//! another idles (seen with one PHP worker per process: 11 of 16 connections on one of
//! four processes).
//!
//! So a process that holds more open connections than another ready process leaves a
//! pending connection to the others for [`DEFER`], and takes it only if it is still
//! waiting then: the least loaded process accepts first, and none waits on a process that
//! stopped accepting. The counts are on the [scoreboard](crate::scoreboard).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::net::{TcpListener, TcpStream};

use crate::ffi::process;
use crate::scoreboard;

/// How long a busier process leaves a pending connection to the less loaded ones.
const DEFER: Duration = Duration::from_millis(2);

/// A listening socket that accepts either at once or, between serving processes, by
/// load.
pub(super) enum Listener {
    /// A single process (or no supervisor): accept at once.
    Direct(TcpListener),
    /// One of several serving processes on a shared socket.
    Balanced(AsyncFd<std::net::TcpListener>),
}

impl Listener {
    /// Balances `listener` when `balance` is asked for and there are other serving
    /// processes to balance with.
    pub(super) fn new(listener: TcpListener, balance: bool) -> io::Result<Self> {
        if !(balance && scoreboard::serving_processes() > 1) {
            return Ok(Self::Direct(listener));
        }
        Ok(Self::Balanced(process::readiness_listener(
            listener.into_std()?,
        )?))
    }

    /// The next connection, and the client's address.
    pub(super) async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let listener = match self {
            Self::Direct(listener) => return listener.accept().await,
            Self::Balanced(listener) => listener,
        };
        loop {
            let mut ready = listener.readable().await?;
            if scoreboard::another_process_holds_fewer_connections() {
                tokio::time::sleep(DEFER).await;
            }
            // Still pending, or taken by another process meanwhile (then wait again).
            if let Ok(accepted) = ready.try_io(|socket| socket.get_ref().accept()) {
                let (stream, remote) = accepted?;
                stream.set_nonblocking(true)?;
                return Ok((TcpStream::from_std(stream)?, remote));
            }
        }
    }

    /// The address the socket listens on.
    pub(super) fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Self::Direct(listener) => listener.local_addr(),
            Self::Balanced(listener) => listener.get_ref().local_addr(),
        }
    }
}
