//! Every setting of tokio_php: its environment variable, default, parsing and validation.
//!
//! The standalone server reads them with [`Config::from_env`] (command-line flags such as
//! `--listen-addr 127.0.0.1:9000` override the variables of the same name); a library user
//! starts from [`Config::default`] and its builder methods and never touches the
//! environment.
//!
//! Each setting is declared once, as one entry of the `settings!` table below: its field,
//! variable, default, parser, example and help line. From that entry come the `ENV_*`
//! constant, the field of [`Config`] (or of [`ServerSettings`], the listener's part), its
//! default, the code that reads it, and its row in [`SETTINGS`], which `--help` prints and
//! the tests hold docs/configuration.md to. Checks that span several settings are in
//! [`Config::validate`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

pub use crate::docroot::{Alias, InvalidAlias, SymlinkPolicy};
use crate::layers::client_ip::TrustedProxies;
use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

/// Default of [`Config::max_body_size`] ([`ENV_MAX_BODY_SIZE`]): 64 MiB.
pub const DEFAULT_MAX_BODY_SIZE: u64 = 64 * 1024 * 1024;
/// Default of [`Config::sse_timeout`] ([`ENV_SSE_TIMEOUT`]): 30 minutes.
pub const DEFAULT_SSE_TIMEOUT: Duration = Duration::from_secs(1800);
/// Default of [`ServerSettings::drain_timeout`] ([`ENV_DRAIN_TIMEOUT_SECS`]).
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// `$_SERVER['SERVER_SOFTWARE']` when [`ENV_SERVER_SOFTWARE`] is unset.
pub const DEFAULT_SERVER_SOFTWARE: &str = concat!("tokio_php/", env!("CARGO_PKG_VERSION"));
/// Error pages directory used when [`ENV_ERROR_PAGES_DIR`] is unset, if it exists.
pub const DEFAULT_ERROR_PAGES_DIR: &str = "./errors";
/// Smallest [`ENV_MAX_HEADER_SIZE`] hyper accepts.
pub const MIN_MAX_HEADER_SIZE: usize = 8 * 1024;
/// Longest timeout any `*_SECS` setting accepts: one day.
pub const MAX_SECS: u64 = 86_400;

/// One setting, as `--help` and docs/configuration.md list it: a row of [`SETTINGS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// The environment variable.
    pub env: &'static str,
    /// The default, as a user would write it; empty when the default is unset.
    pub default: &'static str,
    /// What it does and what it accepts.
    pub help: &'static str,
    /// A value a user might set, as docs/configuration.md shows it.
    pub example: &'static str,
}

// === The table ===

/// Declares settings, one entry each, and generates from the entries:
///
/// - `pub const ENV_*: &str`, the variable;
/// - the struct, one documented `pub` field per entry (its `#[serde]` attributes shape the
///   internal server's `/config`), and its `Default`;
/// - a private `read` that sets each field whose variable the [`Source`] has, through the
///   entry's parser, and names variable, value and what is expected when that fails;
/// - [`SETTINGS`], one row per entry, in the order written.
///
/// An entry:
///
/// ```text
/// /// What the field is.
/// field: Type {
///     env: ENV_NAME = "NAME",
///     default: "64M" => 64 * 1024 * 1024,  // as a user writes it => the value of the field
///     parse: expecting(parse_size, "a size such as 64M"),  // Fn(&str) -> Result<Type, String>
///     example: "512M",                     // as docs/configuration.md shows it
///     help: "largest request body",        // the --help line
/// }
/// ```
///
/// The parser's error is what the value should have been; `read` adds the variable and the
/// value. A test checks that every `default` parses to the value after `=>`. A struct may
/// end with `nested { field: Type }`: structs of the same table, read along with it.
macro_rules! settings {
    ($(
        $(#[$struct_attr:meta])*
        pub struct $name:ident {
            $(
                $(#[$attr:meta])*
                $field:ident: $ty:ty {
                    env: $env:ident = $var:literal,
                    default: $default:expr => $value:expr,
                    parse: $parse:expr,
                    example: $example:literal,
                    help: $help:literal $(,)?
                }
            )*
        }
        $(nested {
            $($(#[$nested_attr:meta])* $nested:ident: $nested_ty:ty),* $(,)?
        })?
    )+) => {
        $($(
            #[doc = concat!(
                "The variable `", $var, "`: ", $help, " ([`", stringify!($name), "::",
                stringify!($field), "`]).",
            )]
            pub const $env: &str = $var;
        )*)+

        $(
            $(#[$struct_attr])*
            pub struct $name {
                $(
                    $(#[$attr])*
                    #[doc = ""]
                    #[doc = concat!("Read from `", $var, "` ([`", stringify!($env), "`]).")]
                    pub $field: $ty,
                )*
                $($(
                    $(#[$nested_attr])*
                    pub $nested: $nested_ty,
                )*)?
            }

            impl Default for $name {
                fn default() -> Self {
                    Self {
                        $($field: $value,)*
                        $($($nested: <$nested_ty>::default(),)*)?
                    }
                }
            }

            impl $name {
                /// Sets every field whose variable `source` has; the others keep their value.
                fn read(&mut self, source: &impl Source) -> Result<(), ConfigError> {
                    $(
                        if let Some(value) = source.get($env) {
                            let parse = $parse;
                            self.$field = parse(value.as_str())
                                .map_err(|expected: String| invalid($env, &value, &expected))?;
                        }
                    )*
                    $($(self.$nested.read(source)?;)*)?
                    Ok(())
                }
            }
        )+

        /// Every setting the server reads, in the order `--help` shows them.
        pub const SETTINGS: &[Setting] = &[
            $($(Setting { env: $env, default: $default, help: $help, example: $example },)*)+
        ];
    };
}

settings! {
    /// The effective configuration of one server. It serializes (for the internal server's
    /// `/config`) flat, with durations in seconds and the TLS key path redacted.
    #[derive(Debug, Clone, PartialEq, Serialize)]
    pub struct Config {
        /// Address the HTTP listener binds.
        listen_addr: SocketAddr {
            env: ENV_LISTEN_ADDR = "LISTEN_ADDR",
            default: "0.0.0.0:8080" => SocketAddr::from(([0, 0, 0, 0], 8080)),
            parse: expecting(address, "an address:port such as 0.0.0.0:8080"),
            example: "127.0.0.1:8080",
            help: "address:port of the HTTP listener",
        }
        /// Directory served: PHP scripts run from it.
        document_root: PathBuf {
            env: ENV_DOCUMENT_ROOT = "DOCUMENT_ROOT",
            default: "./public" => PathBuf::from("./public"),
            parse: path,
            example: "/srv/app/public",
            help: "directory served; PHP scripts run from it",
        }
        /// PHP worker threads; 0 = one per CPU.
        php_workers: usize {
            env: ENV_PHP_WORKERS = "PHP_WORKERS",
            default: "0" => 0,
            parse: count,
            example: "8",
            help: "PHP worker threads; 0 = one per CPU (always 1 with non-thread-safe PHP)",
        }
        /// Serving processes under the supervisor; 0 = no supervisor (one process, as a
        /// library user runs it).
        processes: usize {
            env: ENV_PROCESSES = "PROCESSES",
            default: "1" => 1,
            parse: count,
            example: "2",
            help: "serving processes, each with PHP_WORKERS workers, under a supervisor that restarts one that crashes; 0 = a single process without supervisor",
        }
        /// Requests that may wait for a worker; 0 = workers × 100.
        queue_capacity: usize {
            env: ENV_QUEUE_CAPACITY = "QUEUE_CAPACITY",
            default: "0" => 0,
            parse: count,
            example: "1000",
            help: "requests waiting for a worker before 503; 0 = workers x 100",
        }
        /// Longest time a request may wait in the queue for a worker; None: as long as
        /// the request timeout allows.
        #[serde(rename = "max_wait_time_secs", serialize_with = "opt_secs")]
        max_wait_time: Option<Duration> {
            env: ENV_MAX_WAIT_TIME = "MAX_WAIT_TIME",
            default: "off" => None,
            parse: expecting(
                |v| parse_optional_duration(v).map(|d| d.filter(|d| !d.is_zero())),
                "a duration such as 500ms, 5s or 1m (plain numbers are seconds), or off",
            ),
            example: "5s",
            help: "longest wait in the queue for a PHP worker before 503 with Retry-After (500ms, 5s; off)",
        }
        /// Largest request body in bytes.
        max_body_size: u64 {
            env: ENV_MAX_BODY_SIZE = "MAX_BODY_SIZE",
            default: "64M" => DEFAULT_MAX_BODY_SIZE,
            parse: expecting(parse_size, "a size in bytes, or with K, M or G (64M)"),
            example: "512M",
            help: "largest request body (bytes, or with K, M, G); larger gets 413",
        }
        /// php.ini to load instead of PHP's search.
        php_ini: Option<PathBuf> {
            env: ENV_PHP_INI = "PHP_INI",
            default: "" => None,
            parse: some(path),
            example: "/etc/tokio_php/php.ini",
            help: "php.ini file to load instead of PHP's search (PHPRC, PHP_INI_SCAN_DIR still apply)",
        }
        /// The value of `$_SERVER['SERVER_SOFTWARE']`; None = [`DEFAULT_SERVER_SOFTWARE`].
        server_software: Option<String> {
            env: ENV_SERVER_SOFTWARE = "SERVER_SOFTWARE",
            default: "" => None,
            parse: some(expecting(
                server_software,
                "printable text such as nginx (tokio_php)",
            )),
            example: "nginx (tokio_php)",
            help: "$_SERVER['SERVER_SOFTWARE'] (a value with nginx in it makes WordPress treat the server as nginx); unset = tokio_php/VERSION",
        }
        /// Cache lifetime of static files; None sends no Cache-Control.
        #[serde(rename = "static_cache_ttl_secs", serialize_with = "opt_secs")]
        static_cache_ttl: Option<Duration> {
            env: ENV_STATIC_CACHE_TTL = "STATIC_CACHE_TTL",
            default: "1d" => Some(Duration::from_secs(86_400)),
            parse: expecting(
                parse_optional_duration,
                "a duration such as 3600, 30m, 1d, 1w, 1y, or off",
            ),
            example: "1y",
            help: "Cache-Control max-age of static files (s, m, h, d, w, y units) or off",
        }
        /// Front controller script, relative to the document root.
        index_file: Option<String> {
            env: ENV_INDEX_FILE = "INDEX_FILE",
            default: "" => None,
            parse: some(text),
            example: "index.php",
            help: "front controller (index.php): runs for every path that names no file",
        }
        /// Directories X-Sendfile may serve from; empty = the document root and the alias
        /// directories.
        sendfile_roots: Vec<PathBuf> {
            env: ENV_SENDFILE_ROOTS = "SENDFILE_ROOTS",
            default: "" => Vec::new(),
            parse: paths,
            example: "/srv/private",
            help: "directories (separated by : or ,) X-Sendfile may serve from; unset = DOCUMENT_ROOT and the ALIASES directories",
        }
        /// What symlinks below the document root and the alias directories may do.
        symlinks: SymlinkPolicy {
            env: ENV_SYMLINKS = "SYMLINKS",
            default: "follow" => SymlinkPolicy::Follow,
            parse: expecting(SymlinkPolicy::parse, "follow, if_owner or never"),
            example: "if_owner",
            help: "symlinks below DOCUMENT_ROOT and alias directories: follow (wherever they point), if_owner (only when link and target have one owner) or never",
        }
        /// URL prefixes served from other directories, as nginx's `alias`.
        #[serde(serialize_with = "alias_list")]
        aliases: Vec<Alias> {
            env: ENV_ALIASES = "ALIASES",
            default: "" => Vec::new(),
            parse: alias_entries,
            example: "/wp-content/=/var/lib/wordpress/wp-content/",
            help: "URL prefixes served from other directories, PREFIX=DIRECTORY separated by commas (nginx's alias): static files and PHP scripts",
        }
        /// Log line format.
        log_format: LogFormat {
            env: ENV_LOG_FORMAT = "LOG_FORMAT",
            default: "text" => LogFormat::Text,
            parse: expecting(LogFormat::parse, "text or json"),
            example: "json",
            help: "log format: text or json",
        }
        /// Log filter: a level or a tracing directive.
        log_level: String {
            env: ENV_LOG_LEVEL = "LOG_LEVEL",
            default: "info" => String::from("info"),
            parse: text,
            example: "tokio_php=debug,info",
            help: "log level (error, warn, info, debug, trace) or a tracing filter directive",
        }
        /// Longest wait for a response head; None: no limit.
        #[serde(rename = "request_timeout_secs", serialize_with = "opt_secs")]
        request_timeout: Option<Duration> {
            env: ENV_REQUEST_TIMEOUT = "REQUEST_TIMEOUT",
            default: "2m" => Some(Duration::from_secs(120)),
            parse: expecting(
                |v| {
                    if is_off(v) {
                        Some(None)
                    } else {
                        parse_duration(v).filter(|d| !d.is_zero()).map(Some)
                    }
                },
                "a duration such as 30s, 2m or 1h (plain numbers are seconds), or off",
            ),
            example: "30s",
            help: "longest wait for a response head before 504 and the script is stopped (30s, 2m, 1h; off)",
        }
        /// Requests per client per window; 0 = no limit.
        rate_limit: u32 {
            env: ENV_RATE_LIMIT = "RATE_LIMIT",
            default: "0" => 0,
            parse: expecting(number, "a whole number of requests; 0 = off"),
            example: "100",
            help: "requests per client IP per RATE_WINDOW before 429; 0 = no limit",
        }
        /// The rate limit's window.
        #[serde(rename = "rate_window_secs", serialize_with = "secs")]
        rate_window: Duration {
            env: ENV_RATE_WINDOW = "RATE_WINDOW",
            default: "60" => Duration::from_secs(60),
            parse: expecting(
                |v| parse_duration(v).filter(|d| !d.is_zero()),
                "a positive number of seconds, or a duration such as 30s, 1m, 1h",
            ),
            example: "1m",
            help: "the rate limit's window, in seconds (or 30s, 1m, 1h)",
        }
        /// Proxies whose forwarding headers (X-Forwarded-For, Forwarded) are believed.
        #[serde(serialize_with = "proxies")]
        trusted_proxies: TrustedProxies {
            env: ENV_TRUSTED_PROXIES = "TRUSTED_PROXIES",
            default: "" => TrustedProxies::none(),
            parse: proxy_list,
            example: "10.0.0.0/8,127.0.0.1",
            help: "comma-separated proxy IPs/CIDRs whose X-Forwarded-For / Forwarded names the client",
        }
        /// Whether responses are compressed (Brotli, zstd, gzip).
        compression: bool {
            env: ENV_COMPRESSION = "COMPRESSION",
            default: "on" => true,
            parse: switch,
            example: "off",
            help: "Brotli / zstd / gzip compression of text responses: on or off",
        }
        /// Smallest known body size compressed.
        compression_min_size: u64 {
            env: ENV_COMPRESSION_MIN_SIZE = "COMPRESSION_MIN_SIZE",
            default: "1K" => crate::layers::compression::DEFAULT_MIN_SIZE,
            parse: expecting(parse_size, "a size in bytes, or with K, M or G (1K)"),
            example: "4K",
            help: "bodies of known size below this are sent uncompressed (bytes, or with K, M)",
        }
        /// Where error pages come from, or off. The default is [`DEFAULT_ERROR_PAGES_DIR`]
        /// if it exists; naming a directory, even that one, requires it.
        #[serde(flatten)]
        error_pages_dir: ErrorPagesDir {
            env: ENV_ERROR_PAGES_DIR = "ERROR_PAGES_DIR",
            default: DEFAULT_ERROR_PAGES_DIR => ErrorPagesDir::Default,
            parse: ErrorPagesDir::parse,
            example: "/srv/errors",
            help: "directory of {status}.html error pages (the default may be missing), or off",
        }
        /// Whether each request writes an access log line.
        access_log: bool {
            env: ENV_ACCESS_LOG = "ACCESS_LOG",
            default: "0" => false,
            parse: switch,
            example: "1",
            help: "1 writes one JSON line per request to standard output",
        }
        /// Whether `X-Profile: 1` is honoured.
        profile: bool {
            env: ENV_PROFILE = "PROFILE",
            default: "0" => false,
            parse: switch,
            example: "1",
            help: "1 lets a request with X-Profile: 1 get Server-Timing and X-Profile-* headers",
        }
        /// Longest life of a server-sent events response; None: unbounded.
        #[serde(rename = "sse_timeout_secs", serialize_with = "opt_secs")]
        sse_timeout: Option<Duration> {
            env: ENV_SSE_TIMEOUT = "SSE_TIMEOUT",
            default: "30m" => Some(DEFAULT_SSE_TIMEOUT),
            parse: expecting(parse_optional_duration, "a duration such as 30m, 2h, or off"),
            example: "2h",
            help: "longest life of a text/event-stream response (instead of REQUEST_TIMEOUT), or off",
        }
        /// TLS certificate chain, PEM; with [`Config::tls_key`] the listener speaks HTTPS.
        tls_cert: Option<PathBuf> {
            env: ENV_TLS_CERT = "TLS_CERT",
            default: "" => None,
            parse: some(path),
            example: "/etc/tokio_php/cert.pem",
            help: "TLS certificate chain (PEM); set with TLS_KEY to serve HTTPS (TLS 1.3 and 1.2, ALPN h2 and http/1.1); SIGHUP reloads it",
        }
        /// TLS private key, PEM; redacted when serialized.
        #[serde(serialize_with = "redacted")]
        tls_key: Option<PathBuf> {
            env: ENV_TLS_KEY = "TLS_KEY",
            default: "" => None,
            parse: some(path),
            example: "/etc/tokio_php/key.pem",
            help: "TLS private key (PEM: PKCS#8, PKCS#1 or SEC1) for TLS_CERT",
        }
        /// Slowest request body in bytes per second; 0 = none.
        min_body_rate: u64 {
            env: ENV_MIN_BODY_RATE = "MIN_BODY_RATE",
            default: "240" => 240,
            parse: expecting(
                parse_size,
                "bytes per second, or with K or M (240, 1K); 0 for no minimum",
            ),
            example: "1K",
            help: "slowest request body in bytes per second (or with K, M); slower gets 408; 0 = no minimum",
        }
        /// Time before the body rate is enforced.
        #[serde(rename = "min_body_rate_grace_secs", serialize_with = "secs")]
        min_body_rate_grace: Duration {
            env: ENV_MIN_BODY_RATE_GRACE_SECS = "MIN_BODY_RATE_GRACE_SECS",
            default: "5" => Duration::from_secs(5),
            parse: whole_secs(0),
            example: "10",
            help: "seconds a request body may take before MIN_BODY_RATE applies",
        }
        /// Internal server address (probes, metrics, config); None = off.
        internal_addr: Option<SocketAddr> {
            env: ENV_INTERNAL_ADDR = "INTERNAL_ADDR",
            default: "" => None,
            parse: some(expecting(address, "an address:port such as 127.0.0.1:9090")),
            example: "127.0.0.1:9090",
            help: "address:port of the internal server (/livez, /readyz, /health, /metrics, /config); off when unset",
        }
        /// OPcache JIT mode; None = php.ini decides.
        opcache_jit: Option<JitMode> {
            env: ENV_OPCACHE_JIT = "OPCACHE_JIT",
            default: "" => None,
            parse: some(expecting(
                JitMode::parse,
                "off, tracing, function, or a four-digit CRTO mode such as 1255",
            )),
            example: "tracing",
            help: "OPcache JIT: off, tracing, function or a 4-digit CRTO mode; unset = php.ini decides (JIT off by default)",
        }
        /// JIT buffer size in bytes, when [`Config::opcache_jit`] switches JIT on.
        opcache_jit_buffer_size: u64 {
            env: ENV_OPCACHE_JIT_BUFFER_SIZE = "OPCACHE_JIT_BUFFER_SIZE",
            default: "64M" => 64 * 1024 * 1024,
            parse: expecting(
                |v| parse_size(v).filter(|n| *n > 0),
                "a size above 0, in bytes or with K, M or G (64M)",
            ),
            example: "128M",
            help: "memory for JIT-compiled code when OPCACHE_JIT switches JIT on",
        }
        /// Worker mode: a PHP script, relative to the document root or absolute, that boots
        /// the application once and serves requests in a loop; None = off.
        worker_script: Option<PathBuf> {
            env: ENV_WORKER_SCRIPT = "WORKER_SCRIPT",
            default: "" => None,
            parse: some(path),
            example: "../worker.php",
            help: "worker mode: PHP script (relative to DOCUMENT_ROOT, or absolute) that boots once and serves requests with tokio_handle_request(); off when unset",
        }
        /// Threads running the worker script; 0 = as many as PHP workers.
        worker_count: usize {
            env: ENV_WORKER_COUNT = "WORKER_COUNT",
            default: "0" => 0,
            parse: count,
            example: "8",
            help: "threads running WORKER_SCRIPT; 0 = as many as PHP_WORKERS",
        }
        /// Requests per worker script before a restart; 0 = no limit.
        worker_max_requests: u64 {
            env: ENV_WORKER_MAX_REQUESTS = "WORKER_MAX_REQUESTS",
            default: "0" => 0,
            parse: expecting(number, "a whole number of requests; 0 = no limit"),
            example: "1000",
            help: "requests each worker script serves before it is restarted; 0 = no limit",
        }
        /// Path prefix of the requests the worker script serves.
        worker_match: String {
            env: ENV_WORKER_MATCH = "WORKER_MATCH",
            default: "/" => String::from("/"),
            parse: expecting(
                |v| v.starts_with('/').then(|| v.to_owned()),
                "a URL path prefix starting with / (such as / or /api)",
            ),
            example: "/api",
            help: "path prefix of the requests WORKER_SCRIPT serves; others run classically (static files are always served as files)",
        }
        /// Whether PHP file changes under the document root restart the worker scripts.
        watch: bool {
            env: ENV_WATCH = "WATCH",
            default: "0" => false,
            parse: switch,
            example: "1",
            help: "1 restarts the worker scripts when a .php file under DOCUMENT_ROOT changes (development)",
        }
    }
    nested {
        /// How the listener treats its connections: timeouts, limits, draining.
        #[serde(flatten)]
        server: ServerSettings,
    }

    /// How the listener treats its connections: the part of [`Config`] that
    /// [`Server`](crate::server::Server) runs with. Its builder methods are on [`Config`]
    /// and on [`Server`](crate::server::Server).
    #[derive(Debug, Clone, PartialEq, Serialize)]
    pub struct ServerSettings {
        /// Time a new connection has to send its first request (TLS handshake included),
        /// and any request its head.
        #[serde(rename = "header_timeout_secs", serialize_with = "secs")]
        header_timeout: Duration {
            env: ENV_HEADER_TIMEOUT_SECS = "HEADER_TIMEOUT_SECS",
            default: "5" => Duration::from_secs(5),
            parse: whole_secs(1),
            example: "10",
            help: "seconds a new connection has to send its first request (TLS handshake included), and any request its headers",
        }
        /// Time a connection may sit with no request.
        #[serde(rename = "idle_timeout_secs", serialize_with = "secs")]
        idle_timeout: Duration {
            env: ENV_IDLE_TIMEOUT_SECS = "IDLE_TIMEOUT_SECS",
            default: "60" => Duration::from_secs(60),
            parse: whole_secs(1),
            example: "120",
            help: "seconds a keep-alive or HTTP/2 connection may sit with no request before it is closed",
        }
        /// Time a response write may make no progress (the client stopped reading), as
        /// nginx's `send_timeout`.
        #[serde(rename = "write_timeout_secs", serialize_with = "secs")]
        write_timeout: Duration {
            env: ENV_WRITE_TIMEOUT_SECS = "WRITE_TIMEOUT_SECS",
            default: "60" => Duration::from_secs(60),
            parse: whole_secs(1),
            example: "30",
            help: "seconds a response may wait for the client to read before the connection is closed and its script stops",
        }
        /// Largest request head (request line and headers) in bytes.
        max_header_size: usize {
            env: ENV_MAX_HEADER_SIZE = "MAX_HEADER_SIZE",
            default: "64K" => 64 * 1024,
            parse: expecting(
                size_within(MIN_MAX_HEADER_SIZE..=16 << 20),
                "a size from 8K to 16M, in bytes or with K or M",
            ),
            example: "32K",
            help: "largest request head (request line and headers; at least 8K); larger gets 431",
        }
        /// Longest request target (path and query) in bytes.
        max_uri_length: usize {
            env: ENV_MAX_URI_LENGTH = "MAX_URI_LENGTH",
            default: "8K" => 8 * 1024,
            parse: expecting(
                size_within(1..=65_534),
                "a length from 1 to 65534 bytes, or with K (8K)",
            ),
            example: "16K",
            help: "longest request target (path and query); longer gets 414",
        }
        /// Open connections served at once; 0 = no limit.
        max_connections: usize {
            env: ENV_MAX_CONNECTIONS = "MAX_CONNECTIONS",
            default: "10000" => 10_000,
            parse: count,
            example: "2000",
            help: "open connections served at once; more wait to be accepted; 0 = no limit (keep it under ulimit -n)",
        }
        /// Time in-flight requests get after a shutdown signal.
        #[serde(rename = "drain_timeout_secs", serialize_with = "secs")]
        drain_timeout: Duration {
            env: ENV_DRAIN_TIMEOUT_SECS = "DRAIN_TIMEOUT_SECS",
            default: "30" => DEFAULT_DRAIN_TIMEOUT,
            parse: whole_secs(0),
            example: "60",
            help: "seconds in-flight requests may take to finish after SIGTERM or SIGINT",
        }
    }
}

// === Value types ===

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable, for a terminal.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl LogFormat {
    fn parse(value: &str) -> Option<Self> {
        match value.to_ascii_lowercase().as_str() {
            "text" => Some(Self::Text),
            "json" => Some(Self::Json),
            _ => None,
        }
    }
}

/// What OPcache's JIT does ([`ENV_OPCACHE_JIT`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JitMode {
    /// No JIT (`opcache.jit=disable`).
    Off,
    /// Tracing JIT (`opcache.jit=tracing`): the fastest for most applications.
    Tracing,
    /// Function JIT (`opcache.jit=function`).
    Function,
    /// A four-digit CRTO number, such as 1255.
    Crto(u16),
}

impl JitMode {
    /// The value of `opcache.jit` for this mode.
    pub fn ini_value(self) -> String {
        match self {
            Self::Off => "disable".to_owned(),
            Self::Tracing => "tracing".to_owned(),
            Self::Function => "function".to_owned(),
            Self::Crto(n) => n.to_string(),
        }
    }

    fn parse(value: &str) -> Option<Self> {
        let v = value.trim().to_ascii_lowercase();
        match v.as_str() {
            "off" | "disable" | "0" => Some(Self::Off),
            "tracing" | "on" => Some(Self::Tracing),
            "function" => Some(Self::Function),
            _ if v.len() == 4 && v.bytes().all(|b| b.is_ascii_digit()) => {
                v.parse().ok().map(Self::Crto)
            }
            _ => None,
        }
    }
}

impl Serialize for JitMode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.ini_value())
    }
}

/// Where error pages come from ([`ENV_ERROR_PAGES_DIR`]). It serializes as two fields,
/// `error_pages_dir` (the directory named, or null) and `error_pages` (false when off).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ErrorPagesDir {
    /// [`DEFAULT_ERROR_PAGES_DIR`] if it exists, else none.
    #[default]
    Default,
    /// This directory, which must exist.
    Dir(PathBuf),
    /// No error pages: every PHP response reaches every client as PHP sent it, as behind
    /// nginx (`ERROR_PAGES_DIR=off`).
    Off,
}

impl ErrorPagesDir {
    fn parse(value: &str) -> Result<Self, String> {
        Ok(if value.eq_ignore_ascii_case("off") {
            Self::Off
        } else {
            Self::Dir(PathBuf::from(value))
        })
    }
}

impl Serialize for ErrorPagesDir {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (dir, on) = match self {
            Self::Default => (None, true),
            Self::Dir(dir) => (Some(dir), true),
            Self::Off => (None, false),
        };
        let mut fields = serializer.serialize_struct("ErrorPagesDir", 2)?;
        fields.serialize_field("error_pages_dir", &dir)?;
        fields.serialize_field("error_pages", &on)?;
        fields.end()
    }
}

/// A setting that has a value the server cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {name}={value:?}: expected {expected}")]
pub struct ConfigError {
    /// The environment variable.
    pub name: &'static str,
    /// The value given.
    pub value: String,
    /// What is accepted.
    pub expected: String,
}

fn secs<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(value.as_secs())
}

/// Seconds as a number (fractions for sub-second values), or null when off.
fn opt_secs<S: Serializer>(value: &Option<Duration>, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(d) => serializer.serialize_f64(d.as_secs_f64()),
        None => serializer.serialize_none(),
    }
}

fn proxies<S: Serializer>(value: &TrustedProxies, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(value.nets().iter().map(ToString::to_string))
}

fn alias_list<S: Serializer>(value: &[Alias], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(value.iter().map(ToString::to_string))
}

fn redacted<S: Serializer>(value: &Option<PathBuf>, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(_) => serializer.serialize_str("[redacted]"),
        None => serializer.serialize_none(),
    }
}
/// Where settings are read from: the process environment, or a map in tests.
pub trait Source {
    /// The raw value of `name`, if set and not empty.
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment, read only.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Source for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl Source for HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).filter(|v| !v.is_empty()).cloned()
    }
}

/// Command-line flags layered over another source: `--php-workers 4` or `--php-workers=4`
/// sets `PHP_WORKERS`.
#[derive(Debug, Clone)]
pub struct Flags<S> {
    flags: HashMap<String, String>,
    fallback: S,
}

impl<S: Source> Flags<S> {
    /// Parses `args` (without the program name). Unknown flags are an error naming them.
    pub fn parse(args: &[String], fallback: S) -> Result<Self, String> {
        let mut flags = HashMap::new();
        let mut iter = args.iter();
        while let Some(arg) = iter.next() {
            let Some(flag) = arg.strip_prefix("--") else {
                return Err(format!("unexpected argument {arg:?}; see --help"));
            };
            let (name, value) = match flag.split_once('=') {
                Some((name, value)) => (name.to_owned(), value.to_owned()),
                None => match iter.next() {
                    Some(value) => (flag.to_owned(), value.clone()),
                    None => return Err(format!("--{flag} needs a value; see --help")),
                },
            };
            let env = name.replace('-', "_").to_ascii_uppercase();
            if !SETTINGS.iter().any(|s| s.env == env) {
                return Err(format!("unknown flag --{name}; see --help"));
            }
            flags.insert(env, value);
        }
        Ok(Self { flags, fallback })
    }
}

impl<S: Source> Source for Flags<S> {
    fn get(&self, name: &str) -> Option<String> {
        match self.flags.get(name) {
            Some(value) => Some(value.clone()).filter(|v| !v.is_empty()),
            None => self.fallback.get(name),
        }
    }
}

// === impl Config ===

impl Config {
    /// Reads every setting from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_source(&ProcessEnv)
    }

    /// Reads every setting from `source`; unset ones keep their defaults.
    pub fn from_source(source: &impl Source) -> Result<Self, ConfigError> {
        let mut config = Self::default();
        config.read(source)?;
        Ok(config)
    }

    /// Sets the listener address.
    pub fn listen_addr(mut self, addr: SocketAddr) -> Self {
        self.listen_addr = addr;
        self
    }

    /// Sets the document root.
    pub fn document_root(mut self, dir: impl Into<PathBuf>) -> Self {
        self.document_root = dir.into();
        self
    }

    /// Sets the number of PHP worker threads (0 = one per CPU).
    pub fn php_workers(mut self, workers: usize) -> Self {
        self.php_workers = workers;
        self
    }

    /// Sets how many serving processes the standalone server forks (0: one process, no
    /// supervisor). A library user's own process model is not affected.
    pub fn processes(mut self, processes: usize) -> Self {
        self.processes = processes;
        self
    }

    /// Sets the longest wait for a worker before 503 (None: no limit but the request's).
    pub fn max_wait_time(mut self, limit: Option<Duration>) -> Self {
        self.max_wait_time = limit;
        self
    }

    /// Sets how many requests may wait for a worker (0 = workers × 100).
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity;
        self
    }

    /// Sets the largest accepted request body, in bytes.
    pub fn max_body_size(mut self, bytes: u64) -> Self {
        self.max_body_size = bytes;
        self
    }

    /// Sets a php.ini file to load instead of PHP's own search.
    pub fn php_ini(mut self, path: impl Into<PathBuf>) -> Self {
        self.php_ini = Some(path.into());
        self
    }

    /// Sets how long clients may cache static files (None: no Cache-Control).
    pub fn static_cache_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.static_cache_ttl = ttl;
        self
    }

    /// Sets `$_SERVER['SERVER_SOFTWARE']` (default [`DEFAULT_SERVER_SOFTWARE`]).
    pub fn server_software(mut self, value: impl Into<String>) -> Self {
        self.server_software = Some(value.into());
        self
    }

    /// Sends every request that names no file to `script` (relative to the document root),
    /// as nginx's `try_files $uri $uri/ /index.php?$query_string` does.
    pub fn index_file(mut self, script: impl Into<String>) -> Self {
        self.index_file = Some(script.into());
        self
    }

    /// Sets what symlinks below the document root and the alias directories may do.
    pub fn symlinks(mut self, policy: SymlinkPolicy) -> Self {
        self.symlinks = policy;
        self
    }

    /// Serves each alias's URL prefix from its directory, as nginx's `alias`.
    pub fn aliases(mut self, aliases: impl IntoIterator<Item = Alias>) -> Self {
        self.aliases = aliases.into_iter().collect();
        self
    }

    /// Sets the longest wait for a response head (None: no limit).
    pub fn request_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Limits each client to `limit` requests per `window` (0 = no limit).
    pub fn rate_limit(mut self, limit: u32, window: Duration) -> Self {
        self.rate_limit = limit;
        self.rate_window = window;
        self
    }

    /// Sets the proxies whose forwarding headers are believed.
    pub fn trusted_proxies(mut self, trusted: TrustedProxies) -> Self {
        self.trusted_proxies = trusted;
        self
    }

    /// Turns compression on or off.
    pub fn compression(mut self, on: bool) -> Self {
        self.compression = on;
        self
    }

    /// Sets the smallest known body size that is compressed.
    pub fn compression_min_size(mut self, bytes: u64) -> Self {
        self.compression_min_size = bytes;
        self
    }

    /// Sets the error pages directory (it must exist).
    pub fn error_pages_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.error_pages_dir = ErrorPagesDir::Dir(dir.into());
        self
    }

    /// Shows no error pages: PHP's responses go to every client as PHP sent them.
    pub fn no_error_pages(mut self) -> Self {
        self.error_pages_dir = ErrorPagesDir::Off;
        self
    }

    /// Turns the access log on or off.
    pub fn access_log(mut self, on: bool) -> Self {
        self.access_log = on;
        self
    }

    /// Turns profiling on request (`X-Profile: 1`) on or off.
    pub fn profile(mut self, on: bool) -> Self {
        self.profile = on;
        self
    }

    /// Serves HTTPS with the PEM certificate chain `cert` and private key `key`.
    pub fn tls(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.tls_cert = Some(cert.into());
        self.tls_key = Some(key.into());
        self
    }

    /// Sets the slowest accepted request body (bytes per second, 0 = none) and the time
    /// a body may take before that rate is enforced.
    pub fn min_body_rate(mut self, bytes_per_second: u64, grace: Duration) -> Self {
        self.min_body_rate = bytes_per_second;
        self.min_body_rate_grace = grace;
        self
    }

    /// Turns the internal server (probes, metrics, config) on at `addr`.
    pub fn internal_addr(mut self, addr: SocketAddr) -> Self {
        self.internal_addr = Some(addr);
        self
    }

    /// Sets OPcache's JIT mode, overriding php.ini.
    pub fn opcache_jit(mut self, mode: JitMode) -> Self {
        self.opcache_jit = Some(mode);
        self
    }

    /// Turns worker mode on: `script` (relative to the document root, or absolute) boots
    /// once per worker thread and serves requests with `tokio_handle_request()`.
    pub fn worker_script(mut self, script: impl Into<PathBuf>) -> Self {
        self.worker_script = Some(script.into());
        self
    }

    /// Sets the worker-mode threads (0 = as many as PHP workers).
    pub fn worker_count(mut self, count: usize) -> Self {
        self.worker_count = count;
        self
    }

    /// Restarts each worker script after `requests` requests (0 = never).
    pub fn worker_max_requests(mut self, requests: u64) -> Self {
        self.worker_max_requests = requests;
        self
    }

    /// Sends only paths under `prefix` to the worker script; others run classically.
    pub fn worker_match(mut self, prefix: impl Into<String>) -> Self {
        self.worker_match = prefix.into();
        self
    }

    /// Restarts the worker scripts when a PHP file under the document root changes.
    pub fn watch(mut self, on: bool) -> Self {
        self.watch = on;
        self
    }

    /// Sets the time a connection has to send its first request, and any request head.
    pub fn header_timeout(mut self, timeout: Duration) -> Self {
        self.server.header_timeout = timeout;
        self
    }

    /// Sets the time a connection may sit with no request before it is closed.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.server.idle_timeout = timeout;
        self
    }

    /// Sets the time a response may wait for its client to read before the connection
    /// is closed.
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.server.write_timeout = timeout;
        self
    }

    /// Sets the largest request head, in bytes (at least 8 KiB).
    pub fn max_header_size(mut self, bytes: usize) -> Self {
        self.server.max_header_size = bytes;
        self
    }

    /// Sets the longest request target (path and query), in bytes.
    pub fn max_uri_length(mut self, bytes: usize) -> Self {
        self.server.max_uri_length = bytes;
        self
    }

    /// Sets how many connections are served at once (0 = no limit).
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.server.max_connections = connections;
        self
    }

    /// Sets the time in-flight requests get to finish after a shutdown signal.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.server.drain_timeout = timeout;
        self
    }

    /// The worker script's path: as given when absolute, else under the document root.
    pub fn worker_script_path(&self) -> Option<PathBuf> {
        self.worker_script.as_ref().map(|script| {
            if script.is_absolute() {
                script.clone()
            } else {
                self.document_root.join(script)
            }
        })
    }

    /// The error pages directory to load, and whether it may be missing (the default);
    /// None when error pages are off.
    pub fn effective_error_pages_dir(&self) -> Option<(PathBuf, bool)> {
        match &self.error_pages_dir {
            ErrorPagesDir::Default => Some((PathBuf::from(DEFAULT_ERROR_PAGES_DIR), true)),
            ErrorPagesDir::Dir(dir) => Some((dir.clone(), false)),
            ErrorPagesDir::Off => None,
        }
    }

    /// The configuration as JSON, as the internal server's `/config` shows it: durations
    /// in seconds, the TLS key path redacted.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_else(|err| {
            serde_json::json!({ "error": format!("the configuration cannot be shown as JSON: {err}") })
        })
    }

    /// Checks what parsing alone cannot: that the paths exist, that TLS has both its
    /// files, that limits are in range. Call once at startup.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.document_root.is_dir() {
            return Err(invalid(
                ENV_DOCUMENT_ROOT,
                &self.document_root.display().to_string(),
                "an existing directory",
            ));
        }
        if let Some(index) = &self.index_file {
            let path = self.document_root.join(index.trim_start_matches('/'));
            if !index.ends_with(".php") || !path.is_file() {
                return Err(invalid(
                    ENV_INDEX_FILE,
                    index,
                    &format!(
                        "a .php file under DOCUMENT_ROOT ({} not found)",
                        path.display()
                    ),
                ));
            }
        }
        for root in &self.sendfile_roots {
            if !root.is_dir() {
                return Err(invalid(
                    ENV_SENDFILE_ROOTS,
                    &root.display().to_string(),
                    "existing directories separated by : or ,",
                ));
            }
        }
        for alias in &self.aliases {
            if !alias.dir().is_dir() {
                return Err(invalid(
                    ENV_ALIASES,
                    &alias.to_string(),
                    "PREFIX=DIRECTORY entries whose directories exist",
                ));
            }
        }
        if let Some(ini) = &self.php_ini
            && !ini.is_file()
        {
            return Err(invalid(
                ENV_PHP_INI,
                &ini.display().to_string(),
                "an existing php.ini file",
            ));
        }
        if let ErrorPagesDir::Dir(dir) = &self.error_pages_dir
            && !dir.is_dir()
        {
            return Err(invalid(
                ENV_ERROR_PAGES_DIR,
                &dir.display().to_string(),
                "an existing directory of {status}.html files",
            ));
        }
        if self.rate_limit > 0 && (self.rate_window / self.rate_limit).is_zero() {
            return Err(invalid(
                ENV_RATE_WINDOW,
                &format!("{:?}", self.rate_window),
                &format!("a window long enough for {} requests", self.rate_limit),
            ));
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => {
                return Err(invalid(
                    ENV_TLS_KEY,
                    "",
                    "a PEM private key file: TLS_CERT is set, and TLS needs both TLS_CERT and TLS_KEY (or neither)",
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    ENV_TLS_CERT,
                    "",
                    "a PEM certificate file: TLS_KEY is set, and TLS needs both TLS_CERT and TLS_KEY (or neither)",
                ));
            }
            _ => {}
        }
        for (name, path) in [(ENV_TLS_CERT, &self.tls_cert), (ENV_TLS_KEY, &self.tls_key)] {
            if let Some(path) = path
                && !path.is_file()
            {
                return Err(invalid(
                    name,
                    &path.display().to_string(),
                    "an existing PEM file (see tls/README.md for a development certificate)",
                ));
            }
        }
        if self.server.max_header_size < MIN_MAX_HEADER_SIZE {
            return Err(invalid(
                ENV_MAX_HEADER_SIZE,
                &self.server.max_header_size.to_string(),
                "at least 8K",
            ));
        }
        if let Some(path) = self.worker_script_path()
            && !path.is_file()
        {
            return Err(invalid(
                ENV_WORKER_SCRIPT,
                &self
                    .worker_script
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                &format!(
                    "an existing PHP file, relative to DOCUMENT_ROOT or absolute ({} not found)",
                    path.display()
                ),
            ));
        }
        if !self.worker_match.starts_with('/') {
            return Err(invalid(
                ENV_WORKER_MATCH,
                &self.worker_match,
                "a URL path prefix starting with /",
            ));
        }
        for (name, value) in [
            (ENV_HEADER_TIMEOUT_SECS, self.server.header_timeout),
            (ENV_IDLE_TIMEOUT_SECS, self.server.idle_timeout),
            (ENV_WRITE_TIMEOUT_SECS, self.server.write_timeout),
        ] {
            if value.is_zero() {
                return Err(invalid(name, "0", "at least 1 second"));
            }
        }
        Ok(())
    }

    /// `$_SERVER['SERVER_SOFTWARE']`: the one set, else [`DEFAULT_SERVER_SOFTWARE`].
    pub fn effective_server_software(&self) -> &str {
        self.server_software
            .as_deref()
            .unwrap_or(DEFAULT_SERVER_SOFTWARE)
    }

    /// Whether the listener serves HTTPS.
    pub fn tls_enabled(&self) -> bool {
        self.tls_cert.is_some() && self.tls_key.is_some()
    }

    /// The worker count after resolving 0 to the number of CPUs.
    pub fn effective_workers(&self) -> usize {
        match self.php_workers {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        }
    }

    /// The queue capacity after resolving 0 to workers × 100, for `workers` workers.
    pub fn effective_queue_capacity(&self, workers: usize) -> usize {
        match self.queue_capacity {
            0 => workers.saturating_mul(100),
            n => n,
        }
    }
}

/// The text `--help` prints: usage and every setting with its default.
pub fn help_text() -> String {
    let mut out = String::from(
        "tokio_php: a PHP application server\n\n\
         Usage: tokio_php [--NAME VALUE]...\n\n\
         Every setting is an environment variable; the flag --lower-case-name overrides it.\n\n",
    );
    for s in SETTINGS {
        let default = if s.default.is_empty() {
            "unset"
        } else {
            s.default
        };
        out.push_str(&format!(
            "  {:<22} {}\n  {:<22} default: {}\n",
            s.env, s.help, "", default
        ));
    }
    out
}

fn invalid(name: &'static str, value: &str, expected: &str) -> ConfigError {
    ConfigError {
        name,
        value: value.to_owned(),
        expected: expected.to_owned(),
    }
}

// === Parsers of the table ===
//
// Each turns a value into a field's type, or says what it expected; the table's `read` adds
// the variable and the value to make the ConfigError.

/// The value of `parse`, or an error saying `expected`.
fn expecting<T>(
    parse: impl Fn(&str) -> Option<T>,
    expected: &'static str,
) -> impl Fn(&str) -> Result<T, String> {
    move |value: &str| parse(value).ok_or_else(|| expected.to_owned())
}

/// `parse` for a field that is None when its variable is unset.
fn some<T>(
    parse: impl Fn(&str) -> Result<T, String>,
) -> impl Fn(&str) -> Result<Option<T>, String> {
    move |value: &str| parse(value).map(Some)
}

fn text(value: &str) -> Result<String, String> {
    Ok(value.to_owned())
}

fn path(value: &str) -> Result<PathBuf, String> {
    Ok(PathBuf::from(value))
}

/// Paths separated by `:` or `,`.
fn paths(value: &str) -> Result<Vec<PathBuf>, String> {
    Ok(value
        .split([':', ','])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .collect())
}

/// Text PHP can be given as it is: not empty, no control characters.
fn server_software(value: &str) -> Option<String> {
    let value = value.trim();
    (!value.is_empty() && !value.chars().any(char::is_control)).then(|| value.to_owned())
}

/// [`Alias::parse_list`], its complaint in the message.
fn alias_entries(value: &str) -> Result<Vec<Alias>, String> {
    Alias::parse_list(value)
        .map_err(|err| format!("PREFIX=DIRECTORY entries separated by commas ({err})"))
}

fn address(value: &str) -> Option<SocketAddr> {
    value.parse().ok()
}

/// A whole number, spaces around it allowed.
fn number<T: FromStr>(value: &str) -> Option<T> {
    value.trim().parse().ok()
}

/// A size ([`parse_size`]) within `range`.
fn size_within(range: RangeInclusive<usize>) -> impl Fn(&str) -> Option<usize> {
    move |value: &str| {
        parse_size(value)
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| range.contains(n))
    }
}

fn count(value: &str) -> Result<usize, String> {
    value
        .trim()
        .parse::<usize>()
        .ok()
        .filter(|n| *n <= 1_000_000)
        .ok_or_else(|| "a whole number from 0 to 1000000".to_owned())
}

fn switch(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "on" | "true" | "yes" => Ok(true),
        "0" | "off" | "false" | "no" => Ok(false),
        _ => Err("1, on, true, yes or 0, off, false, no".to_owned()),
    }
}

/// Whole seconds from `min` to [`MAX_SECS`].
fn whole_secs(min: u64) -> impl Fn(&str) -> Result<Duration, String> {
    move |value: &str| {
        value
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|n| (min..=MAX_SECS).contains(n))
            .map(Duration::from_secs)
            .ok_or_else(|| format!("whole seconds from {min} to {MAX_SECS}"))
    }
}

fn proxy_list(value: &str) -> Result<TrustedProxies, String> {
    value
        .parse()
        .map_err(|reason: String| format!("comma-separated IP addresses or CIDR blocks ({reason})"))
}

/// [`parse_duration`], or `off` (also `0`, `false`, `no`, `none`) for None.
pub fn parse_optional_duration(value: &str) -> Option<Option<Duration>> {
    if is_off(value) {
        return Some(None);
    }
    parse_duration(value).map(Some)
}

fn is_off(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "off" | "0" | "none" | "false" | "no"
    )
}

/// Parses `90` (seconds), `500ms`, `30s`, `2m`, `1h`, `1d`, `2w`, `1y`, and decimals such
/// as `1.5s`.
pub fn parse_duration(value: &str) -> Option<Duration> {
    let v = value.trim().to_ascii_lowercase();
    let (number, unit) = match v.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => v.split_at(i),
        None => (v.as_str(), "s"),
    };
    let seconds_per_unit = match unit.trim() {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        "w" => 604_800.0,
        "y" => 31_536_000.0,
        _ => return None,
    };
    let number: f64 = number.parse().ok()?;
    Duration::try_from_secs_f64(number * seconds_per_unit).ok()
}

/// Parses `1048576`, `512K`, `64M`, `2G` (powers of 1024; a trailing `B` or `iB` is fine).
pub fn parse_size(value: &str) -> Option<u64> {
    let v = value.trim().to_ascii_uppercase();
    let v = v
        .strip_suffix("IB")
        .or_else(|| v.strip_suffix('B'))
        .unwrap_or(&v);
    let (digits, multiplier) = match v.chars().last()? {
        'K' => (&v[..v.len() - 1], 1u64 << 10),
        'M' => (&v[..v.len() - 1], 1 << 20),
        'G' => (&v[..v.len() - 1], 1 << 30),
        _ => (v, 1),
    };
    digits.trim().parse::<u64>().ok()?.checked_mul(multiplier)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_when_nothing_is_set() {
        let config = Config::from_source(&source(&[])).unwrap();
        assert_eq!(config.listen_addr.to_string(), "0.0.0.0:8080");
        assert_eq!(config.document_root, PathBuf::from("./public"));
        assert_eq!(config.max_body_size, 64 << 20);
        assert_eq!(config.log_format, LogFormat::Text);
        assert_eq!(config.request_timeout, Some(Duration::from_secs(120)));
        assert_eq!(config.rate_limit, 0);
        assert_eq!(config.rate_window, Duration::from_secs(60));
        assert!(config.trusted_proxies.is_empty());
        assert!(config.compression);
        assert_eq!(config.compression_min_size, 1024);
        assert_eq!(
            config.effective_error_pages_dir(),
            Some((PathBuf::from("./errors"), true))
        );
        assert!(!config.access_log);
        assert!(!config.profile);
    }

    #[test]
    fn reads_the_feature_layer_variables() {
        let config = Config::from_source(&source(&[
            ("REQUEST_TIMEOUT", "90s"),
            ("RATE_LIMIT", "100"),
            ("RATE_WINDOW", "1m"),
            ("TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1"),
            ("COMPRESSION", "off"),
            ("COMPRESSION_MIN_SIZE", "2K"),
            ("ERROR_PAGES_DIR", "/srv/errors"),
            ("ACCESS_LOG", "1"),
            ("PROFILE", "on"),
        ]))
        .unwrap();
        assert_eq!(config.request_timeout, Some(Duration::from_secs(90)));
        assert_eq!(config.rate_limit, 100);
        assert_eq!(config.rate_window, Duration::from_secs(60));
        assert_eq!(config.trusted_proxies.nets().len(), 2);
        assert!(!config.compression);
        assert_eq!(config.compression_min_size, 2048);
        assert_eq!(
            config.effective_error_pages_dir(),
            Some((PathBuf::from("/srv/errors"), false))
        );
        let no_pages = Config::from_source(&source(&[("ERROR_PAGES_DIR", "off")])).unwrap();
        assert_eq!(no_pages.effective_error_pages_dir(), None);
        assert!(config.access_log);
        assert!(config.profile);
        let off = Config::from_source(&source(&[("REQUEST_TIMEOUT", "off")])).unwrap();
        assert_eq!(off.request_timeout, None);
        let plain = Config::from_source(&source(&[("RATE_WINDOW", "30")])).unwrap();
        assert_eq!(plain.rate_window, Duration::from_secs(30));
    }

    #[test]
    fn bad_feature_values_name_the_variable() {
        for (name, value) in [
            ("REQUEST_TIMEOUT", "soon"),
            ("REQUEST_TIMEOUT", "5x"),
            ("RATE_LIMIT", "-1"),
            ("RATE_WINDOW", "0"),
            ("TRUSTED_PROXIES", "10.0.0.0/8, proxy.local"),
            ("COMPRESSION", "maybe"),
            ("COMPRESSION_MIN_SIZE", "lots"),
            ("ACCESS_LOG", "2"),
            ("PROFILE", "y"),
            ("SYMLINKS", "off"),
            ("ALIASES", "wp-content=/x"),
        ] {
            let err = Config::from_source(&source(&[(name, value)])).unwrap_err();
            assert_eq!(err.name, name, "{value}");
            assert!(err.to_string().contains(value), "{err}");
        }
        let err = Config::default()
            .error_pages_dir("/definitely/not/here")
            .validate()
            .unwrap_err();
        assert_eq!(err.name, "ERROR_PAGES_DIR");
        let err = Config::from_source(&source(&[("ALIASES", "/x=/definitely/not/here")]))
            .unwrap()
            .document_root(std::env::temp_dir())
            .validate()
            .unwrap_err();
        assert_eq!(err.name, "ALIASES");
        assert!(err.to_string().contains("/x=/definitely/not/here"), "{err}");
    }

    #[test]
    fn server_software_is_plain_text_or_the_default() {
        assert_eq!(
            Config::default().effective_server_software(),
            DEFAULT_SERVER_SOFTWARE
        );
        let config = Config::from_source(&source(&[("SERVER_SOFTWARE", " nginx (x) ")])).unwrap();
        assert_eq!(config.effective_server_software(), "nginx (x)");
        let err = Config::from_source(&source(&[("SERVER_SOFTWARE", "a\nb")])).unwrap_err();
        assert_eq!(err.name, "SERVER_SOFTWARE");
    }

    #[test]
    fn durations_parse_with_decimals_and_units() {
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration(" 2M "), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration(""), None);
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration("1d"), Some(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("1x"), None);
        assert_eq!(parse_duration("1 2s"), None);
        assert_eq!(parse_duration("-1s"), None);
    }

    #[test]
    fn reads_every_variable() {
        let config = Config::from_source(&source(&[
            ("LISTEN_ADDR", "127.0.0.1:9000"),
            ("DOCUMENT_ROOT", "/srv/app"),
            ("PHP_WORKERS", "3"),
            ("QUEUE_CAPACITY", "7"),
            ("MAX_BODY_SIZE", "2M"),
            ("PHP_INI", "/etc/php.ini"),
            ("SENDFILE_ROOTS", "/srv/files:/var/private, /tmp"),
            ("LOG_FORMAT", "JSON"),
            ("LOG_LEVEL", "debug"),
        ]))
        .unwrap();
        assert_eq!(config.listen_addr.port(), 9000);
        assert_eq!(config.php_workers, 3);
        assert_eq!(config.queue_capacity, 7);
        assert_eq!(config.max_body_size, 2 << 20);
        assert_eq!(config.php_ini, Some(PathBuf::from("/etc/php.ini")));
        assert_eq!(
            config.sendfile_roots,
            ["/srv/files", "/var/private", "/tmp"].map(PathBuf::from)
        );
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(config.log_level, "debug");
    }

    #[test]
    fn a_bad_value_names_variable_value_and_what_is_accepted() {
        let err = Config::from_source(&source(&[("PHP_WORKERS", "many")])).unwrap_err();
        assert_eq!(err.name, "PHP_WORKERS");
        assert_eq!(err.value, "many");
        let text = err.to_string();
        assert!(
            text.contains("PHP_WORKERS") && text.contains("many") && text.contains("whole number")
        );
        assert!(Config::from_source(&source(&[("LISTEN_ADDR", "localhost")])).is_err());
        assert!(Config::from_source(&source(&[("MAX_BODY_SIZE", "big")])).is_err());
        assert!(Config::from_source(&source(&[("LOG_FORMAT", "xml")])).is_err());
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("10"), Some(10));
        assert_eq!(parse_size("512k"), Some(512 << 10));
        assert_eq!(parse_size("64M"), Some(64 << 20));
        assert_eq!(parse_size("1GiB"), Some(1 << 30));
        assert_eq!(parse_size("1MB"), Some(1 << 20));
        assert_eq!(parse_size(""), None);
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size("99999999999999999999G"), None);
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Some(Duration::from_secs(1800)));
        assert_eq!(parse_duration("1d"), Some(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("2w"), Some(Duration::from_secs(1_209_600)));
        assert_eq!(parse_duration("1y"), Some(Duration::from_secs(31_536_000)));
        assert_eq!(parse_duration("1x"), None);
        assert_eq!(parse_duration("m"), None);
        assert_eq!(parse_optional_duration("off"), Some(None));
        let config = Config::from_source(&source(&[("STATIC_CACHE_TTL", "off")])).unwrap();
        assert_eq!(config.static_cache_ttl, None);
        let config = Config::from_source(&source(&[("STATIC_CACHE_TTL", "1h")])).unwrap();
        assert_eq!(config.static_cache_ttl, Some(Duration::from_secs(3600)));
        assert!(Config::from_source(&source(&[("STATIC_CACHE_TTL", "soon")])).is_err());
    }

    #[test]
    fn a_missing_front_controller_stops_startup() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::default()
            .document_root(dir.path())
            .index_file("index.php");
        let err = config.validate().unwrap_err();
        assert_eq!(err.name, "INDEX_FILE");
        std::fs::write(dir.path().join("index.php"), "<?php").unwrap();
        assert!(config.validate().is_ok());
    }

    #[test]
    fn flags_override_the_environment() {
        let env = source(&[("PHP_WORKERS", "2"), ("LOG_LEVEL", "warn")]);
        let args: Vec<String> = ["--php-workers", "5", "--listen-addr=127.0.0.1:1"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let flags = Flags::parse(&args, env).unwrap();
        let config = Config::from_source(&flags).unwrap();
        assert_eq!(config.php_workers, 5);
        assert_eq!(config.listen_addr.port(), 1);
        assert_eq!(config.log_level, "warn");
        assert!(Flags::parse(&["--nope=1".to_owned()], ProcessEnv).is_err());
        assert!(Flags::parse(&["--php-workers".to_owned()], ProcessEnv).is_err());
    }

    #[test]
    fn reads_the_operations_variables() {
        let config = Config::from_source(&source(&[
            ("TLS_CERT", "/tls/cert.pem"),
            ("TLS_KEY", "/tls/key.pem"),
            ("HEADER_TIMEOUT_SECS", "7"),
            ("IDLE_TIMEOUT_SECS", "90"),
            ("WRITE_TIMEOUT_SECS", "15"),
            ("MIN_BODY_RATE", "1K"),
            ("MIN_BODY_RATE_GRACE_SECS", "0"),
            ("MAX_HEADER_SIZE", "32K"),
            ("MAX_URI_LENGTH", "2048"),
            ("MAX_CONNECTIONS", "0"),
            ("INTERNAL_ADDR", "127.0.0.1:9090"),
            ("DRAIN_TIMEOUT_SECS", "0"),
            ("OPCACHE_JIT", "Function"),
            ("OPCACHE_JIT_BUFFER_SIZE", "32M"),
        ]))
        .unwrap();
        assert!(config.tls_enabled());
        assert_eq!(config.server.header_timeout, Duration::from_secs(7));
        assert_eq!(config.server.idle_timeout, Duration::from_secs(90));
        assert_eq!(config.server.write_timeout, Duration::from_secs(15));
        assert_eq!(config.min_body_rate, 1024);
        assert_eq!(config.min_body_rate_grace, Duration::ZERO);
        assert_eq!(config.server.max_header_size, 32 << 10);
        assert_eq!(config.server.max_uri_length, 2048);
        assert_eq!(config.server.max_connections, 0);
        assert_eq!(config.internal_addr.unwrap().port(), 9090);
        assert_eq!(config.server.drain_timeout, Duration::ZERO);
        assert_eq!(config.opcache_jit, Some(JitMode::Function));
        assert_eq!(config.opcache_jit_buffer_size, 32 << 20);

        let defaults = Config::default();
        assert_eq!(defaults.server.header_timeout, Duration::from_secs(5));
        assert_eq!(defaults.server.idle_timeout, Duration::from_secs(60));
        assert_eq!(defaults.server.write_timeout, Duration::from_secs(60));
        assert_eq!(defaults.server.drain_timeout, Duration::from_secs(30));
        assert_eq!(defaults.internal_addr, None);
        assert_eq!(defaults.opcache_jit, None);
    }

    #[test]
    fn bad_operations_values_name_the_variable() {
        for (name, value) in [
            ("HEADER_TIMEOUT_SECS", "0"),
            ("IDLE_TIMEOUT_SECS", "soon"),
            ("DRAIN_TIMEOUT_SECS", "-1"),
            ("MAX_HEADER_SIZE", "1K"),
            ("MAX_URI_LENGTH", "1M"),
            ("MAX_CONNECTIONS", "many"),
            ("INTERNAL_ADDR", "localhost"),
            ("OPCACHE_JIT", "fast"),
            ("OPCACHE_JIT_BUFFER_SIZE", "0"),
            ("MIN_BODY_RATE", "quick"),
        ] {
            let err = Config::from_source(&source(&[(name, value)])).unwrap_err();
            assert_eq!(err.name, name);
            assert!(err.to_string().contains(value), "{err}");
        }
        assert_eq!(JitMode::parse("1255"), Some(JitMode::Crto(1255)));
        assert_eq!(JitMode::parse("off"), Some(JitMode::Off));
        assert_eq!(JitMode::parse("12555"), None);
    }

    #[test]
    fn tls_needs_both_files() {
        let root = std::env::temp_dir();
        let only_cert = Config::default()
            .document_root(&root)
            .tls("/nope/cert.pem", "/nope/key.pem");
        let err = only_cert.validate().unwrap_err();
        assert_eq!(err.name, "TLS_CERT");
        assert!(err.to_string().contains("/nope/cert.pem"));

        let mut half = Config::default().document_root(&root);
        half.tls_cert = Some(PathBuf::from("/tls/cert.pem"));
        let err = half.validate().unwrap_err();
        assert_eq!(err.name, "TLS_KEY");
        assert!(err.to_string().contains("TLS_CERT is set"), "{err}");

        let mut half = Config::default().document_root(&root);
        half.tls_key = Some(PathBuf::from("/tls/key.pem"));
        assert_eq!(half.validate().unwrap_err().name, "TLS_CERT");
    }

    #[test]
    fn the_json_view_redacts_the_key_and_shows_seconds() {
        let config = Config::default()
            .tls("/tls/cert.pem", "/secret/key.pem")
            .opcache_jit(JitMode::Tracing);
        let json = config.to_json();
        assert_eq!(json["tls_key"], "[redacted]");
        assert_eq!(json["tls_cert"], "/tls/cert.pem");
        assert_eq!(json["header_timeout_secs"], 5);
        assert_eq!(json["drain_timeout_secs"], 30);
        assert_eq!(json["opcache_jit"], "tracing");
        assert_eq!(json["log_format"], "text");
        assert!(!json.to_string().contains("/secret/key.pem"));
        assert_eq!(
            Config::default().to_json()["tls_key"],
            serde_json::Value::Null
        );
        let json = Config::default()
            .symlinks(SymlinkPolicy::IfOwner)
            .aliases([Alias::new("/wp-content/", "/var/lib/wordpress/wp-content").unwrap()])
            .to_json();
        assert_eq!(json["symlinks"], "if_owner");
        assert_eq!(
            json["aliases"],
            serde_json::json!(["/wp-content=/var/lib/wordpress/wp-content"])
        );
    }

    #[test]
    fn the_documented_defaults_are_the_defaults() {
        assert_eq!(
            Config::from_source(&source(&[])).unwrap(),
            Config::default()
        );
        // ERROR_PAGES_DIR's default is ./errors *if it exists*: naming it makes it required.
        let named = |s: &Setting| match s.env {
            ENV_ERROR_PAGES_DIR => Config::default().error_pages_dir(DEFAULT_ERROR_PAGES_DIR),
            _ => Config::default(),
        };
        for s in SETTINGS {
            let config = Config::from_source(&source(&[(s.env, s.default)]));
            assert_eq!(config, Ok(named(s)), "{}={:?}", s.env, s.default);
        }
        let every: Vec<_> = SETTINGS.iter().map(|s| (s.env, s.default)).collect();
        let expected = Config::default().error_pages_dir(DEFAULT_ERROR_PAGES_DIR);
        assert_eq!(Config::from_source(&source(&every)).unwrap(), expected);
    }

    #[test]
    fn every_example_parses() {
        for s in SETTINGS {
            let config = Config::from_source(&source(&[(s.env, s.example)]));
            assert!(config.is_ok(), "{}={:?}: {config:?}", s.env, s.example);
        }
    }

    #[test]
    fn help_lists_every_setting_with_its_default() {
        let help = help_text();
        for s in SETTINGS {
            assert!(help.contains(s.env), "{} missing from --help", s.env);
        }
        assert!(help.contains("0.0.0.0:8080"));
    }
}
