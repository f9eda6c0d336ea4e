//! The request contract: what the server, the layers and the PHP service tell each other
//! about one request, as extensions on the `http::Request` or the response. A leaf: it
//! depends on no other part of the crate but the path types of `docroot` (which file a URL
//! path names), and [`crate::server`], [`crate::layers`] and the PHP service depend on it
//! instead of on each other.
//!
//! | Extension | Put on by | Read by |
//! |---|---|---|
//! | [`ConnectionInfo`] (request) | the server, per connection | client IP, access log, PHP (`REMOTE_ADDR`, `HTTPS`) |
//! | [`ConnectionShare`] (request) | the server, per connection | the PHP service (fair admission) |
//! | [`RequestId`], [`TraceContext`] (request) | the request-id layer | access log, PHP (`REQUEST_ID`) |
//! | [`Deadline`] (request) | the request-timeout layer | the PHP job (stops the script), heartbeats |
//! | [`CollectTimings`] (request), [`PhpTimings`] (response) | the timing layer, the PHP job | the timing layer (`Server-Timing`) |
//! | [`ResolvedPath`] (request) | the front controller | the PHP service (skips resolving again) |

mod connection;
mod deadline;
mod request_id;
mod timings;

pub use crate::docroot::{PathResolver, Resolution, ScriptMatch, StaticFile};
pub use connection::{Admission, ConnectionInfo, ConnectionShare};
pub use deadline::Deadline;
pub use request_id::{MAX_REQUEST_ID_LEN, RequestId, TRACEPARENT, TraceContext, X_REQUEST_ID};
pub use timings::{CollectTimings, PhpTimings};

/// Request extension: how the request path was resolved, when a layer in front (the front
/// controller) has already decided; the PHP service then uses it instead of resolving again.
#[derive(Debug, Clone)]
pub struct ResolvedPath(pub Resolution);
