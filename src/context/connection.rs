//! What the server tells about the connection a request came on: its addresses
//! ([`ConnectionInfo`]) and its share of the PHP pool ([`ConnectionShare`]).
//!
//! Each connection's share of the PHP pool: at most as many of one connection's requests
//! are queued or running at once as the pool has workers, so one HTTP/2 connection with 200
//! streams cannot fill the queue and leave every other client a 503. Its other requests
//! wait for their turn on the connection itself (holding no worker and no queue place, and
//! still under `REQUEST_TIMEOUT`); the bounded queue and its 503 stay for real overload.
//!
//! The server puts a [`ConnectionShare`] on every request of a connection. A request that
//! carries none (a host application's own server) takes its place in the queue directly.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Where a request came from and arrived: the connection's facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// The client's address (REMOTE_ADDR, REMOTE_PORT).
    pub remote: SocketAddr,
    /// The address the server accepted on (SERVER_ADDR, SERVER_PORT).
    pub local: SocketAddr,
    /// Whether the connection is TLS (HTTPS=on).
    pub tls: bool,
}

/// Request extension: the connection the request came on, shared by all its requests.
#[derive(Debug, Clone, Default)]
pub struct ConnectionShare(Arc<OnceLock<Arc<Semaphore>>>);

/// A place for one request of a connection in the pool; dropped when its job ends.
#[derive(Debug)]
pub struct Admission {
    _permit: Option<OwnedSemaphorePermit>,
}

impl ConnectionShare {
    /// A share for a new connection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Waits until fewer than `workers` of this connection's requests are in the pool.
    pub async fn admit(&self, workers: usize) -> Admission {
        let slots = self
            .0
            .get_or_init(|| Arc::new(Semaphore::new(workers.max(1))));
        // The semaphore is never closed, so acquiring cannot fail; should it, the request
        // goes without a place rather than not at all.
        Admission {
            _permit: Arc::clone(slots).acquire_owned().await.ok(),
        }
    }

    /// Requests of this connection in the pool now.
    #[cfg(test)]
    fn in_pool(&self, workers: usize) -> usize {
        self.0
            .get()
            .map_or(0, |slots| workers.saturating_sub(slots.available_permits()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_connection_gets_as_many_places_as_there_are_workers() {
        let share = ConnectionShare::new();
        let a = share.admit(2).await;
        let _b = share.admit(2).await;
        assert_eq!(share.in_pool(2), 2);
        let third = tokio::spawn({
            let share = share.clone();
            async move { share.admit(2).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(
            !third.is_finished(),
            "a third request waits on its connection"
        );
        drop(a);
        let _c = third.await.unwrap();
        // Another connection has its own places.
        let other = ConnectionShare::new();
        let _d = other.admit(2).await;
        assert_eq!(other.in_pool(2), 1);
    }
}
