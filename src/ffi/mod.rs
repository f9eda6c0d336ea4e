//! All unsafe Rust in one place: the calls into the C SAPI shim (`php-ext/`) and the
//! callbacks the shim makes into Rust.
//!
//! The rest of the crate sees safe functions and one trait, [`SapiHandler`], that a request
//! implements to receive PHP's output, headers and log lines and to feed it the body.
#![allow(unsafe_code)]

pub(crate) mod process;

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What a running request does with PHP's side of the conversation.
pub(crate) trait SapiHandler {
    /// Body bytes from the script. Returns false when the client is gone.
    fn write(&mut self, data: &[u8]) -> bool;
    /// The script called `flush()`.
    fn flush(&mut self);
    /// One response header line, `Name: value`, in the order PHP holds them.
    fn header(&mut self, line: &[u8]);
    /// Every header has been given; the head is complete with this status and, when the
    /// script set one (`header("HTTP/1.1 404 Gone")`), this status line.
    fn send_headers(&mut self, status: i32, status_line: Option<&[u8]>);
    /// Fills `buf` with request body bytes; 0 at the end.
    fn read_post(&mut self, buf: &mut [u8]) -> usize;
    /// A line from PHP's error log.
    fn log(&mut self, level: PhpLogLevel, message: &str);
    /// The request id (`tokio_request_id()`).
    fn request_id(&self) -> &str;
    /// The worker thread's number (`tokio_worker_id()`).
    fn worker_id(&self) -> i64;
    /// The number of worker threads (`tokio_server_info()`).
    fn workers(&self) -> i64;
    /// Ends the response now and lets the script go on (`tokio_finish_request()`). True if
    /// this call ended it.
    fn finish_request(&mut self) -> bool;
    /// Pushes the request's deadline forward (`tokio_request_heartbeat()`).
    fn heartbeat(&mut self, seconds: u64) -> bool;
    /// One header line for the next informational response (`headers_send()`).
    fn informational_header(&mut self, line: &[u8]);
    /// Sends an informational response with the headers given since the last one. True if
    /// it was queued for the client.
    fn send_informational(&mut self, status: u16) -> bool;
}

/// Severity of a PHP log line (PHP passes syslog levels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PhpLogLevel {
    /// LOG_ERR and above.
    Error,
    /// LOG_WARNING.
    Warning,
    /// LOG_NOTICE and LOG_INFO.
    Notice,
    /// LOG_DEBUG.
    Debug,
}

impl PhpLogLevel {
    fn from_syslog(level: c_int) -> Self {
        match level {
            ..=3 => Self::Error,
            4 => Self::Warning,
            5 | 6 => Self::Notice,
            _ => Self::Debug,
        }
    }
}

// === the C ABI (php-ext/tokio_php.h) ===

#[repr(C)]
#[derive(Clone, Copy)]
struct TphpStr {
    ptr: *const c_char,
    len: usize,
}

#[repr(C)]
struct TphpStartupConfig {
    ini_path_override: *const c_char,
    ini_defaults: *const TphpStr,
    ini_defaults_len: usize,
    ini_entries: *const c_char,
    startup_sapi_name: *const c_char,
    opcache_path: *const c_char,
}

#[repr(C)]
struct TphpServerInfo {
    server_version: *const c_char,
    workers: i64,
}

#[repr(C)]
struct TphpRequest {
    method: *const c_char,
    request_uri: *const c_char,
    query_string: *const c_char,
    script_filename: *const c_char,
    content_type: *const c_char,
    content_length: i64,
    cookie: *const c_char,
    authorization: *const c_char,
    proto_num: c_int,
    headers_only: c_int,
    request_time: f64,
    server_vars: *const TphpStr,
    server_vars_len: usize,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct TphpTimings {
    startup_begin: u64,
    script_begin: u64,
    shutdown_begin: u64,
    end: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct TphpInterruptHandle {
    vm_interrupt: *mut c_void,
    timed_out: *mut c_void,
    thread: std::ffi::c_ulong,
}

#[repr(C)]
#[derive(Default)]
struct TphpScriptEnd {
    last_error_type: c_int,
    timed_out: c_int,
}

const TPHP_DONE: c_int = 0;

/// PHP's error types that end a script: E_ERROR, E_PARSE, E_CORE_ERROR, E_COMPILE_ERROR,
/// E_USER_ERROR and E_RECOVERABLE_ERROR.
const FATAL_ERROR_TYPES: c_int = 1 | 4 | 16 | 64 | 256 | 4096;

unsafe extern "C" {
    fn tphp_startup(config: *const TphpStartupConfig) -> c_int;
    fn tphp_shutdown();
    fn tphp_is_zts() -> c_int;
    fn tphp_opcache_restart_waits_for_threads() -> c_int;
    fn tphp_php_version() -> *const c_char;
    fn tphp_thread_init(interrupt: *mut TphpInterruptHandle) -> c_int;
    fn tphp_thread_shutdown();
    fn tphp_execute(
        context: *mut c_void,
        request: *const TphpRequest,
        timings: *mut TphpTimings,
        end: *mut TphpScriptEnd,
    ) -> c_int;
    fn tphp_interrupt(interrupt: *const TphpInterruptHandle);
    fn tphp_worker_run(
        worker: *mut c_void,
        boot_context: *mut c_void,
        boot: *const TphpRequest,
        end: *mut TphpScriptEnd,
    ) -> c_int;
}

// === safe wrappers ===

static STARTED: AtomicBool = AtomicBool::new(false);

/// Why PHP did not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartupError {
    /// PHP runs once per process and has already been started.
    #[error("PHP is already started in this process; build one App and share it")]
    AlreadyStarted,
    /// `php_module_startup()` failed; PHP logged why.
    #[error("PHP module start-up failed (see the PHP log lines above)")]
    ModuleStartup,
    /// A setting could not be handed to PHP.
    #[error("invalid PHP setting {0:?}: it contains a NUL byte")]
    InvalidSetting(String),
}

/// The PHP settings handed over at start-up.
pub(crate) struct StartupSettings<'a> {
    /// php.ini to load instead of PHP's search.
    pub ini_path: Option<&'a Path>,
    /// Defaults that php.ini may override.
    pub ini_defaults: &'a [(&'a str, &'a str)],
    /// php.ini-syntax text applied after php.ini.
    pub ini_entries: &'a str,
    /// The name OPcache sees while extensions start.
    pub startup_sapi_name: &'a str,
    /// opcache.so to load when php.ini has not loaded OPcache.
    pub opcache: Option<&'a Path>,
}

/// Starts PHP's engine and the SAPI, once per process, on the calling thread. That thread
/// must later call [`shutdown`].
pub(crate) fn startup(settings: &StartupSettings<'_>) -> Result<(), StartupError> {
    if STARTED.swap(true, Ordering::SeqCst) {
        return Err(StartupError::AlreadyStarted);
    }
    let cstring = |s: &str| CString::new(s).map_err(|_| StartupError::InvalidSetting(s.to_owned()));
    let ini_path = match settings.ini_path {
        Some(p) => Some(cstring(&p.to_string_lossy())?),
        None => None,
    };
    let ini_entries = cstring(settings.ini_entries)?;
    let sapi_name = cstring(settings.startup_sapi_name)?;
    let opcache = match settings.opcache {
        Some(p) => Some(cstring(&p.to_string_lossy())?),
        None => None,
    };
    let defaults: Vec<TphpStr> = settings
        .ini_defaults
        .iter()
        .flat_map(|(k, v)| [str_arg(k.as_bytes()), str_arg(v.as_bytes())])
        .collect();
    let config = TphpStartupConfig {
        ini_path_override: ini_path.as_ref().map_or(std::ptr::null(), |p| p.as_ptr()),
        ini_defaults: defaults.as_ptr(),
        ini_defaults_len: settings.ini_defaults.len(),
        ini_entries: ini_entries.as_ptr(),
        startup_sapi_name: sapi_name.as_ptr(),
        opcache_path: opcache.as_ref().map_or(std::ptr::null(), |p| p.as_ptr()),
    };
    // SAFETY: every pointer in `config` points into locals that outlive the call; the shim
    // copies what it keeps (ini_entries) and forgets the rest when tphp_startup returns.
    let rc = unsafe { tphp_startup(&config) };
    if rc == 0 {
        Ok(())
    } else {
        Err(StartupError::ModuleStartup)
    }
}

/// Shuts PHP down. Call on the thread that called [`startup`], after every worker thread
/// has ended.
pub(crate) fn shutdown() {
    // SAFETY: called once, on the start-up thread, when no request runs (the caller's
    // contract); the shim tolerates no other state.
    unsafe { tphp_shutdown() }
}

/// Whether the linked PHP is thread-safe (ZTS).
pub(crate) fn is_zts() -> bool {
    // SAFETY: a pure function of how the shim was compiled.
    unsafe { tphp_is_zts() != 0 }
}

/// Whether OPcache, when loaded, restarts its shared memory only once no worker thread
/// runs a request (`Some(false)`: a PHP built without
/// `scripts/php-patches/opcache-zts-restart.patch`, where `opcache_reset()` or a full cache
/// can crash a threaded server). None when OPcache is not loaded. PHP must be started.
pub(crate) fn opcache_restart_waits_for_threads() -> Option<bool> {
    // SAFETY: called after startup() succeeded (App does); the shim only reads PHP's
    // extension list and looks a symbol up.
    match unsafe { tphp_opcache_restart_waits_for_threads() } {
        -1 => None,
        n => Some(n == 1),
    }
}

/// The linked PHP's version, such as `8.2.32`.
pub(crate) fn php_version() -> &'static str {
    // SAFETY: PHP_VERSION is a static NUL-terminated string literal in the shim.
    let version = unsafe { CStr::from_ptr(tphp_php_version()) };
    version.to_str().unwrap_or("unknown")
}

/// PHP's per-thread state, alive for as long as the guard: create one on each worker
/// thread before its first request and drop it on that thread when it ends.
pub(crate) struct ThreadGuard {
    interrupter: Interrupter,
    // Not Send: the TSRM context belongs to the thread that made it.
    _not_send: std::marker::PhantomData<*const ()>,
}

impl ThreadGuard {
    /// Allocates this thread's PHP context. PHP must be started.
    pub(crate) fn new() -> Self {
        let mut handle = TphpInterruptHandle {
            vm_interrupt: std::ptr::null_mut(),
            timed_out: std::ptr::null_mut(),
            thread: 0,
        };
        // SAFETY: PHP is started (the pool starts workers only after startup()); the
        // context is freed by Drop on this same thread, since the guard is not Send.
        // `handle` is a valid out-parameter for the call.
        let fs_error = unsafe { tphp_thread_init(&mut handle) };
        if fs_error != 0 {
            tracing::warn!(
                errno = fs_error,
                "unshare(CLONE_FS) failed: umask() in one PHP request changes it for the others"
            );
        }
        Self {
            interrupter: Interrupter(Arc::new(Mutex::new(Some(RawInterrupt(handle))))),
            _not_send: std::marker::PhantomData,
        }
    }

    /// A handle that stops whatever script this thread runs; usable from any thread, and
    /// harmless once this guard is gone.
    pub(crate) fn interrupter(&self) -> Interrupter {
        self.interrupter.clone()
    }

    /// Runs one request on this thread, feeding PHP's callbacks to `handler`. With
    /// `timings`, the phases of the request are measured into it.
    pub(crate) fn execute(
        &self,
        request: &ExecRequest<'_>,
        handler: &mut dyn SapiHandler,
        timings: Option<&mut ExecTimings>,
    ) -> ExecOutcome {
        let (raw, _vars) = raw_request(request);
        let mut handler: *mut dyn SapiHandler = handler;
        let context = (&mut handler as *mut *mut dyn SapiHandler).cast::<c_void>();
        let mut stamps = TphpTimings::default();
        let stamps_ptr = if timings.is_some() {
            &mut stamps as *mut TphpTimings
        } else {
            std::ptr::null_mut()
        };
        let mut end = TphpScriptEnd::default();
        // SAFETY: `raw` and what it points to (request, `_vars`) outlive the call; `context`
        // points to `handler`, which nothing else touches until tphp_execute returns, and
        // the shim clears its copies of both before returning. `stamps_ptr` is NULL or
        // points to `stamps`, and `end` is a live local, both only written by the shim.
        // This thread owns a PHP context (self exists on it).
        let rc = unsafe { tphp_execute(context, &raw, stamps_ptr, &mut end) };
        if let Some(timings) = timings {
            *timings = ExecTimings::from_stamps(&stamps);
        }
        outcome(rc, &end)
    }

    /// Runs a worker script on this thread: `boot` is the script's own request (its output
    /// and log lines go to `boot_handler`), and each `tokio_handle_request()` call in it
    /// takes the next request from `host`. Returns when the script ends.
    pub(crate) fn run_worker<H: WorkerHost>(
        &self,
        boot: &ExecRequest<'_>,
        boot_handler: &mut dyn SapiHandler,
        host: &mut H,
    ) -> ExecOutcome {
        let (raw, _vars) = raw_request(boot);
        let mut boot_handler: *mut dyn SapiHandler = boot_handler;
        let boot_context = (&mut boot_handler as *mut *mut dyn SapiHandler).cast::<c_void>();
        let mut driver = Driver { host, active: None };
        let mut driving: *mut dyn Driving = &mut driver;
        let worker = (&mut driving as *mut *mut dyn Driving).cast::<c_void>();
        let mut end = TphpScriptEnd::default();
        // SAFETY: as in `execute`: `raw`, `_vars`, `boot_handler` and `driver` outlive the
        // call and are only reached through the pointers given, by this thread, during it;
        // the shim forgets them before returning. This thread owns a PHP context.
        let rc = unsafe { tphp_worker_run(worker, boot_context, &raw, &mut end) };
        let outcome = outcome(rc, &end);
        // The shim ends a request the script died in; should it not have, end it here.
        if driver.active.is_some() {
            let end = match outcome {
                ExecOutcome::Done(end) => end,
                ExecOutcome::StartupFailed => ScriptEnd::default(),
            };
            driver.end(end);
        }
        outcome
    }
}

fn outcome(rc: c_int, end: &TphpScriptEnd) -> ExecOutcome {
    if rc == TPHP_DONE {
        ExecOutcome::Done(ScriptEnd::from_raw(end))
    } else {
        ExecOutcome::StartupFailed
    }
}

/// The shim's form of a request, and the `$_SERVER` table its `server_vars` points into
/// (heap memory: keep the Vec alive, unmoved or moved, while the shim uses the request).
fn raw_request(request: &ExecRequest<'_>) -> (TphpRequest, Vec<TphpStr>) {
    let vars: Vec<TphpStr> = request
        .server_vars
        .entries
        .iter()
        .flat_map(|&(name, value)| {
            [
                request.server_vars.slice(name),
                request.server_vars.slice(value),
            ]
        })
        .map(str_arg)
        .collect();
    let raw = TphpRequest {
        method: request.method.as_ptr(),
        request_uri: request.request_uri.as_ptr(),
        query_string: request.query_string.as_ptr(),
        script_filename: request.script_filename.as_ptr(),
        content_type: opt_ptr(request.content_type),
        content_length: request
            .content_length
            .map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX)),
        cookie: opt_ptr(request.cookie),
        authorization: opt_ptr(request.authorization),
        proto_num: request.proto_num,
        headers_only: c_int::from(request.headers_only),
        request_time: request.request_time,
        server_vars: vars.as_ptr(),
        server_vars_len: request.server_vars.entries.len(),
    };
    (raw, vars)
}

// === worker mode ===

/// Where a worker script's `tokio_handle_request()` gets its requests.
pub(crate) trait WorkerHost {
    /// One request taken for the script.
    type Job: WorkerJob;
    /// Blocks until the next request; None makes `tokio_handle_request()` return false.
    fn next(&mut self) -> Option<Self::Job>;
    /// `job` has ended: PHP sent its output and headers and reset its state.
    fn end(&mut self, job: Self::Job, end: ScriptEnd);
}

/// One request a worker script handles.
pub(crate) trait WorkerJob {
    /// The request as PHP sees it; must return the same data for the job's whole life.
    fn request(&self) -> ExecRequest<'_>;
    /// Where PHP's output, headers and log lines go.
    fn handler(&mut self) -> &mut (dyn SapiHandler + 'static);
}

/// The request a worker script is handling, in the form the shim holds it.
struct Active<J> {
    /// Owned; made by Box::into_raw, freed by `Driver::end`.
    job: *mut J,
    raw: Box<TphpRequest>,
    _vars: Vec<TphpStr>,
    handler: Box<*mut dyn SapiHandler>,
}

/// The object-safe face of [`Driver`] the C callbacks reach through the worker pointer.
trait Driving {
    /// The next request's shim form and handler context, valid until `end`.
    fn next(&mut self) -> Option<(*const TphpRequest, *mut c_void)>;
    fn end(&mut self, end: ScriptEnd);
}

struct Driver<'h, H: WorkerHost> {
    host: &'h mut H,
    active: Option<Active<H::Job>>,
}

impl<H: WorkerHost> Driving for Driver<'_, H> {
    fn next(&mut self) -> Option<(*const TphpRequest, *mut c_void)> {
        if self.active.is_some() {
            // The shim ends each request before asking for the next; never leave one open.
            self.end(ScriptEnd::default());
        }
        let job = Box::into_raw(Box::new(self.host.next()?));
        // SAFETY: `job` was just made from a Box and is only freed in `end`; the request's
        // strings live in the job and do not move while it lives.
        let (raw, vars) = raw_request(&unsafe { &*job }.request());
        // SAFETY: as above; the handler lives in the job, on the heap.
        let handler: *mut dyn SapiHandler = unsafe { &mut *job }.handler();
        let mut active = Active {
            job,
            raw: Box::new(raw),
            _vars: vars,
            handler: Box::new(handler),
        };
        let request = &*active.raw as *const TphpRequest;
        let context = (&mut *active.handler as *mut *mut dyn SapiHandler).cast::<c_void>();
        self.active = Some(active);
        Some((request, context))
    }

    fn end(&mut self, end: ScriptEnd) {
        if let Some(active) = self.active.take() {
            let Active {
                job,
                raw,
                _vars,
                handler,
            } = active;
            drop((raw, _vars, handler));
            // SAFETY: made by Box::into_raw in `next` and freed only here, once; the shim
            // no longer holds the request or its context.
            let job = unsafe { Box::from_raw(job) };
            self.host.end(*job, end);
        }
    }
}

impl Drop for ThreadGuard {
    fn drop(&mut self) {
        // Forget the flags' addresses first: they die with the context.
        self.interrupter.forget();
        // SAFETY: the context was made on this thread by new() (the guard is not Send).
        unsafe { tphp_thread_shutdown() }
    }
}

/// The addresses of one worker thread's executor flags.
struct RawInterrupt(TphpInterruptHandle);

// SAFETY: the pointers are to atomics (zend_atomic_bool) that any thread may store to; they
// are only used while the owning ThreadGuard lives (Interrupter::forget runs in its Drop,
// under the same mutex as every use).
unsafe impl Send for RawInterrupt {}

/// Stops the script running on one worker thread, as if it hit `max_execution_time`. It
/// stops *whatever* that thread runs at the moment: the caller makes sure it is still the
/// request it means (the pool checks that under its own lock).
#[derive(Clone)]
pub(crate) struct Interrupter(Arc<Mutex<Option<RawInterrupt>>>);

impl Interrupter {
    /// Raises the interrupt; the script stops at its next opcode. A script blocked in a
    /// system call (`sleep()`, a socket read, `stream_select()`) is woken by a signal, so
    /// the call returns early and the next opcode comes.
    pub(crate) fn interrupt(&self) {
        let guard = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(raw) = guard.as_ref() {
            // SAFETY: the handle was filled by tphp_thread_init for a thread whose context
            // and whose OS thread are still alive: ThreadGuard::drop, which runs on that
            // thread, clears it (under this lock) before freeing the context.
            unsafe { tphp_interrupt(&raw.0) };
        }
    }

    fn forget(&self) {
        let mut guard = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *guard = None;
    }
}

impl std::fmt::Debug for Interrupter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interrupter").finish_non_exhaustive()
    }
}

/// How long each phase of one request took on the worker (profiling).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ExecTimings {
    /// `php_request_startup()`.
    pub startup: Duration,
    /// The script, until it ended, exited or failed (None if startup failed).
    pub script: Option<Duration>,
    /// `php_request_shutdown()`.
    pub shutdown: Duration,
}

impl ExecTimings {
    fn from_stamps(t: &TphpTimings) -> Self {
        let between = |a: u64, b: u64| Duration::from_nanos(b.saturating_sub(a));
        let script_begin = (t.script_begin != 0).then_some(t.script_begin);
        Self {
            startup: between(t.startup_begin, script_begin.unwrap_or(t.shutdown_begin)),
            script: script_begin.map(|s| between(s, t.shutdown_begin)),
            shutdown: between(t.shutdown_begin, t.end),
        }
    }
}

/// How a script that ran ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct ScriptEnd {
    /// It ended in a fatal error (an uncaught exception, memory or time exhausted, …);
    /// PHP answered 500 unless output had already been sent.
    pub fatal: bool,
    /// `max_execution_time` ended it (also counted as fatal).
    pub timed_out: bool,
}

impl ScriptEnd {
    fn from_raw(end: &TphpScriptEnd) -> Self {
        Self {
            fatal: end.last_error_type & FATAL_ERROR_TYPES != 0,
            timed_out: end.timed_out != 0,
        }
    }
}

/// How a request ended, from the shim's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExecOutcome {
    /// The script ran; PHP sent the head (its status tells success from failure).
    Done(ScriptEnd),
    /// PHP could not start the request; nothing was sent.
    StartupFailed,
}

/// One request in the form the shim takes.
pub(crate) struct ExecRequest<'a> {
    pub method: &'a CStr,
    pub request_uri: &'a CStr,
    pub query_string: &'a CStr,
    pub script_filename: &'a CStr,
    pub content_type: Option<&'a CStr>,
    pub content_length: Option<u64>,
    pub cookie: Option<&'a CStr>,
    pub authorization: Option<&'a CStr>,
    pub proto_num: i32,
    pub headers_only: bool,
    pub request_time: f64,
    pub server_vars: &'a ServerVars,
}

/// `$_SERVER` entries laid out as PHP wants them: every name and value NUL-terminated in
/// one buffer (names must not contain NUL; such entries are skipped).
#[derive(Debug, Default, Clone)]
pub struct ServerVars {
    buf: Vec<u8>,
    /// (start, len) of name and value, each followed by a NUL in `buf`.
    entries: Vec<((usize, usize), (usize, usize))>,
}

impl ServerVars {
    /// An empty set with room for about `entries` variables.
    pub fn with_capacity(entries: usize) -> Self {
        Self {
            buf: Vec::with_capacity(entries * 32),
            entries: Vec::with_capacity(entries),
        }
    }

    /// Adds `name = value`. A name with a NUL byte is ignored; a value is cut at its first
    /// NUL byte (PHP would do the same).
    pub fn push(&mut self, name: &[u8], value: &[u8]) {
        if name.is_empty() || name.contains(&0) {
            return;
        }
        let value = value.split(|b| *b == 0).next().unwrap_or_default();
        let name_at = self.push_terminated(name);
        let value_at = self.push_terminated(value);
        self.entries.push((name_at, value_at));
    }

    /// Adds `name = value` with the name built from parts (`HTTP_` + header name).
    pub fn push_with(&mut self, name: impl FnOnce(&mut Vec<u8>), value: &[u8]) {
        let mut tmp = Vec::with_capacity(48);
        name(&mut tmp);
        self.push(&tmp, value);
    }

    /// The value of `name`, if set (the last one wins, as in PHP).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.entries
            .iter()
            .rev()
            .find(|(n, _)| self.slice(*n) == name.as_bytes())
            .map(|(_, v)| self.slice(*v))
    }

    /// Every (name, value) pair in order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.entries
            .iter()
            .map(|(n, v)| (self.slice(*n), self.slice(*v)))
    }

    fn push_terminated(&mut self, bytes: &[u8]) -> (usize, usize) {
        let start = self.buf.len();
        self.buf.extend_from_slice(bytes);
        self.buf.push(0);
        (start, bytes.len())
    }

    fn slice(&self, (start, len): (usize, usize)) -> &[u8] {
        &self.buf[start..start + len]
    }
}

fn str_arg(bytes: &[u8]) -> TphpStr {
    TphpStr {
        ptr: bytes.as_ptr().cast(),
        len: bytes.len(),
    }
}

fn opt_ptr(s: Option<&CStr>) -> *const c_char {
    s.map_or(std::ptr::null(), CStr::as_ptr)
}

// === callbacks from C ===

/// Defines an `extern "C"` function the shim calls: panics are caught (unwinding into C is
/// undefined behaviour) and answered with the stated fallback.
macro_rules! ffi_callback {
    ($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty, fallback $fallback:expr, $body:block) => {
        $(#[$doc])*
        #[unsafe(no_mangle)]
        extern "C" fn $name($($arg: $ty),*) -> $ret {
            match catch_unwind(AssertUnwindSafe(|| -> $ret { $body })) {
                Ok(value) => value,
                Err(_) => {
                    tracing::error!(callback = stringify!($name), "panic in a PHP callback; answered with its fallback");
                    $fallback
                }
            }
        }
    };
}

/// The handler behind a context pointer given to the shim, or None for NULL.
///
/// # Safety
/// `context` must be NULL or a pointer made in [`ThreadGuard::execute`] or
/// [`ThreadGuard::run_worker`] (a `*mut *mut dyn SapiHandler`), while it is valid.
unsafe fn handler<'a>(context: *mut c_void) -> Option<&'a mut dyn SapiHandler> {
    if context.is_null() {
        return None;
    }
    // SAFETY: per this function's contract, `context` points to a live pointer to a
    // handler that only this callback uses while it runs.
    Some(unsafe { &mut **context.cast::<*mut dyn SapiHandler>() })
}

/// The worker-mode driver behind a worker pointer given to tphp_worker_run.
///
/// # Safety
/// `worker` must be NULL or the pointer made in [`ThreadGuard::run_worker`], during it.
unsafe fn driver<'a>(worker: *mut c_void) -> Option<&'a mut dyn Driving> {
    if worker.is_null() {
        return None;
    }
    // SAFETY: per this function's contract, `worker` points to a live pointer to the
    // driver, used by one callback at a time on the worker's thread.
    Some(unsafe { &mut **worker.cast::<*mut dyn Driving>() })
}

ffi_callback! {
    /// `tokio_handle_request()` waits here for its next request.
    fn tphp_rust_worker_next(worker: *mut c_void, request: *mut *const TphpRequest, context: *mut *mut c_void) -> c_int, fallback 0, {
        if request.is_null() || context.is_null() {
            return 0;
        }
        // SAFETY: the shim passes the pointer tphp_worker_run was given.
        let Some(driver) = (unsafe { driver(worker) }) else {
            return 0;
        };
        match driver.next() {
            Some((r, c)) => {
                // SAFETY: both out-pointers were checked non-null and point to the shim's
                // locals.
                unsafe {
                    *request = r;
                    *context = c;
                }
                1
            }
            None => 0,
        }
    }
}

ffi_callback! {
    /// The request `tokio_handle_request()` took has ended.
    fn tphp_rust_worker_end(worker: *mut c_void, end: *const TphpScriptEnd) -> (), fallback (), {
        // SAFETY: `end` is NULL or the shim's local, valid for the call.
        let end = unsafe { end.as_ref() }.map(ScriptEnd::from_raw).unwrap_or_default();
        // SAFETY: the shim passes the pointer tphp_worker_run was given.
        if let Some(driver) = unsafe { driver(worker) } {
            driver.end(end);
        }
    }
}

/// # Safety
/// `ptr` must be NULL or valid for reads of `len` bytes for the returned lifetime.
unsafe fn bytes<'a>(ptr: *const c_char, len: usize) -> &'a [u8] {
    if ptr.is_null() || len == 0 {
        return &[];
    }
    // SAFETY: per this function's contract.
    unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) }
}

ffi_callback! {
    /// `ub_write`: returns 0 when the client is gone.
    fn tphp_rust_write(context: *mut c_void, data: *const c_char, len: usize) -> c_int, fallback 1, {
        // SAFETY: the shim passes the context of the running request and PHP's buffer.
        let (handler, data) = unsafe { (handler(context), bytes(data, len)) };
        match handler {
            Some(h) => c_int::from(h.write(data)),
            None => 1,
        }
    }
}

ffi_callback! {
    /// `flush`.
    fn tphp_rust_flush(context: *mut c_void) -> (), fallback (), {
        // SAFETY: the shim passes the context of the running request.
        if let Some(h) = unsafe { handler(context) } {
            h.flush();
        }
    }
}

ffi_callback! {
    /// One header line from `send_headers`.
    fn tphp_rust_header(context: *mut c_void, line: *const c_char, len: usize) -> (), fallback (), {
        // SAFETY: the shim passes the context and a header PHP holds for the call.
        let (handler, line) = unsafe { (handler(context), bytes(line, len)) };
        if let Some(h) = handler {
            h.header(line);
        }
    }
}

ffi_callback! {
    /// End of `send_headers`.
    fn tphp_rust_send_headers(context: *mut c_void, status: c_int, status_line: *const c_char, status_line_len: usize) -> (), fallback (), {
        // SAFETY: the shim passes the context of the running request, and PHP's status line
        // (NULL or `status_line_len` bytes) for the call.
        let (handler, line) = unsafe { (handler(context), bytes(status_line, status_line_len)) };
        if let Some(h) = handler {
            let line = (!status_line.is_null()).then_some(line);
            h.send_headers(status, line);
        }
    }
}

ffi_callback! {
    /// `read_post`.
    fn tphp_rust_read_post(context: *mut c_void, buf: *mut c_char, len: usize) -> usize, fallback 0, {
        if buf.is_null() || len == 0 {
            return 0;
        }
        // SAFETY: PHP hands a writable buffer of `len` bytes for the call.
        let buf = unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), len) };
        // SAFETY: the shim passes the context of the running request.
        match unsafe { handler(context) } {
            Some(h) => h.read_post(buf).min(len),
            None => 0,
        }
    }
}

ffi_callback! {
    /// `log_message`: with a request it goes to that request's handler, else to the log.
    fn tphp_rust_log(context: *mut c_void, message: *const c_char, len: usize, level: c_int) -> (), fallback (), {
        // SAFETY: the shim passes a message of `len` bytes.
        let text = String::from_utf8_lossy(unsafe { bytes(message, len) });
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        let level = PhpLogLevel::from_syslog(level);
        // SAFETY: the context is NULL outside a request, else the running request's.
        match unsafe { handler(context) } {
            Some(h) => h.log(level, text),
            None => log_php(level, text, None),
        }
    }
}

ffi_callback! {
    /// `tokio_request_id()`: points `*ptr`/`*len` at the id, valid until the request ends.
    fn tphp_rust_request_id(context: *mut c_void, ptr: *mut *const c_char, len: *mut usize) -> (), fallback (), {
        if ptr.is_null() || len.is_null() {
            return;
        }
        // SAFETY: the shim passes the context of the running request.
        if let Some(h) = unsafe { handler(context) } {
            let id = h.request_id();
            // SAFETY: both out-pointers were checked non-null and point to the shim's locals;
            // the id lives in the request's handler until the request ends.
            unsafe {
                *ptr = id.as_ptr().cast();
                *len = id.len();
            }
        }
    }
}

ffi_callback! {
    /// `tokio_worker_id()`.
    fn tphp_rust_worker_id(context: *mut c_void) -> i64, fallback -1, {
        // SAFETY: the shim passes the context of the running request.
        unsafe { handler(context) }.map_or(-1, |h| h.worker_id())
    }
}

ffi_callback! {
    /// `tokio_server_info()`.
    fn tphp_rust_server_info(context: *mut c_void, info: *mut TphpServerInfo) -> (), fallback (), {
        if info.is_null() {
            return;
        }
        const VERSION: &CStr =
            match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
                Ok(version) => version,
                Err(_) => c"unknown",
            };
        // SAFETY: the shim passes the context of the running request (or NULL).
        let workers = unsafe { handler(context) }.map_or(0, |h| h.workers());
        // SAFETY: `info` was checked non-null and points to the shim's local struct.
        unsafe {
            (*info).server_version = VERSION.as_ptr();
            (*info).workers = workers;
        }
    }
}

ffi_callback! {
    /// `tokio_finish_request()` / `fastcgi_finish_request()`.
    fn tphp_rust_finish_request(context: *mut c_void) -> c_int, fallback 0, {
        // SAFETY: the shim passes the context of the running request.
        unsafe { handler(context) }.map_or(0, |h| c_int::from(h.finish_request()))
    }
}

ffi_callback! {
    /// `tokio_request_heartbeat()`.
    fn tphp_rust_heartbeat(context: *mut c_void, seconds: i64) -> c_int, fallback 0, {
        let seconds = u64::try_from(seconds).unwrap_or(0);
        // SAFETY: the shim passes the context of the running request.
        unsafe { handler(context) }.map_or(0, |h| c_int::from(h.heartbeat(seconds)))
    }
}

ffi_callback! {
    /// One header of a `headers_send()` informational response.
    fn tphp_rust_informational_header(context: *mut c_void, line: *const c_char, len: usize) -> (), fallback (), {
        // SAFETY: the shim passes the context and a header PHP holds for the call.
        let (handler, line) = unsafe { (handler(context), bytes(line, len)) };
        if let Some(h) = handler {
            h.informational_header(line);
        }
    }
}

ffi_callback! {
    /// End of a `headers_send()` informational response.
    fn tphp_rust_send_informational(context: *mut c_void, status: c_int) -> c_int, fallback 0, {
        let status = u16::try_from(status).unwrap_or(0);
        // SAFETY: the shim passes the context of the running request.
        unsafe { handler(context) }.map_or(0, |h| c_int::from(h.send_informational(status)))
    }
}

/// Writes one PHP log line through tracing, tagged with `request` when there is one.
pub(crate) fn log_php(level: PhpLogLevel, message: &str, request: Option<&str>) {
    let request = request.unwrap_or("-");
    match level {
        PhpLogLevel::Error => tracing::error!(target: "php", request, "{message}"),
        PhpLogLevel::Warning => tracing::warn!(target: "php", request, "{message}"),
        PhpLogLevel::Notice => tracing::info!(target: "php", request, "{message}"),
        PhpLogLevel::Debug => tracing::debug!(target: "php", request, "{message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_vars_are_nul_terminated_and_last_wins() {
        let mut vars = ServerVars::default();
        vars.push(b"A", b"1");
        vars.push(b"B\0C", b"x");
        vars.push(b"A", b"2\0hidden");
        assert_eq!(vars.get("A"), Some(&b"2"[..]));
        assert_eq!(vars.get("B"), None);
        assert_eq!(vars.iter().count(), 2);
        for &(name, value) in &vars.entries {
            assert_eq!(vars.buf[name.0 + name.1], 0);
            assert_eq!(vars.buf[value.0 + value.1], 0);
        }
    }

    #[test]
    fn timings_are_the_gaps_between_stamps() {
        let t = ExecTimings::from_stamps(&TphpTimings {
            startup_begin: 1_000,
            script_begin: 3_000,
            shutdown_begin: 10_000,
            end: 10_500,
        });
        assert_eq!(t.startup, Duration::from_nanos(2_000));
        assert_eq!(t.script, Some(Duration::from_nanos(7_000)));
        assert_eq!(t.shutdown, Duration::from_nanos(500));
        let failed = ExecTimings::from_stamps(&TphpTimings {
            startup_begin: 1_000,
            script_begin: 0,
            shutdown_begin: 4_000,
            end: 4_000,
        });
        assert_eq!(failed.startup, Duration::from_nanos(3_000));
        assert_eq!(failed.script, None);
    }

    #[test]
    fn syslog_levels_map_to_severities() {
        assert_eq!(PhpLogLevel::from_syslog(3), PhpLogLevel::Error);
        assert_eq!(PhpLogLevel::from_syslog(4), PhpLogLevel::Warning);
        assert_eq!(PhpLogLevel::from_syslog(5), PhpLogLevel::Notice);
        assert_eq!(PhpLogLevel::from_syslog(7), PhpLogLevel::Debug);
    }
}
