/*
 * The narrow C ABI between tokio_php (Rust) and PHP's embed SAPI.
 *
 *   tphp_*       implemented here in C, called by Rust (src/ffi.rs);
 *   tphp_rust_*  implemented in Rust (src/ffi.rs), called by the SAPI callbacks.
 *
 * Every pointer handed across stays owned by the side that made it; no function here
 * frees memory it did not allocate. The C side holds no policy: it forwards.
 */
#ifndef TOKIO_PHP_H
#define TOKIO_PHP_H

#include <stddef.h>
#include <stdint.h>

/* A byte string that is not NUL-terminated. Borrowed for the length of the call. */
typedef struct {
    const char *ptr;
    size_t len;
} tphp_str;

/* Process-wide start-up settings, borrowed for the length of tphp_startup(). */
typedef struct {
    /* php.ini file to use instead of the search (NULL: PHPRC and the usual places). */
    const char *ini_path_override;
    /* key/value pairs applied before php.ini is read, so php.ini overrides them. */
    const tphp_str *ini_defaults;
    size_t ini_defaults_len; /* number of pairs, so the array holds twice as many */
    /* php.ini-syntax text applied after php.ini (NULL for none); copied. */
    const char *ini_entries;
    /* The SAPI name OPcache is shown during start-up (it only starts under known names). */
    const char *startup_sapi_name;
    /* opcache.so to load unless php.ini already loaded it (NULL: do not load). */
    const char *opcache_path;
} tphp_startup_config;

/* One request, borrowed for the length of tphp_execute(). Strings are NUL-terminated. */
typedef struct {
    const char *method;
    const char *request_uri;
    const char *query_string;   /* without '?'; "" when absent */
    const char *script_filename;
    const char *content_type;   /* NULL when absent */
    int64_t content_length;     /* -1 when there is no body */
    const char *cookie;         /* all Cookie headers joined with "; ", NULL when absent */
    const char *authorization;  /* the Authorization header, NULL when absent */
    int proto_num;              /* 1000, 1001 or 2000 */
    int headers_only;           /* HEAD */
    double request_time;        /* seconds since the epoch when the request arrived */
    /* $_SERVER entries as name/value pairs: server_vars[2i] = name, [2i+1] = value. */
    const tphp_str *server_vars;
    size_t server_vars_len;     /* number of pairs */
} tphp_request;

/* Facts about the server for tokio_server_info(); strings borrowed for the call. */
typedef struct {
    const char *server_version;
    int64_t workers;
} tphp_server_info;
/* When the phases of one request began and ended, in CLOCK_MONOTONIC nanoseconds, filled by
 * tphp_execute() when the caller asks for them (profiling). A phase that did not run stays 0. */
typedef struct {
    uint64_t startup_begin;  /* before php_request_startup() */
    uint64_t script_begin;   /* after it succeeded, before php_execute_script() */
    uint64_t shutdown_begin; /* after the script ended (normally, by exit() or a fatal error) */
    uint64_t end;            /* after php_request_shutdown() */
} tphp_timings;

/* Where one worker thread's executor keeps its "stop at the next opcode" flags
 * (EG(vm_interrupt), EG(timed_out)), and the thread, to wake it from a blocking call.
 * Filled by tphp_thread_init(); valid on any thread until that worker calls
 * tphp_thread_shutdown(). */
typedef struct {
    void *vm_interrupt;   /* zend_atomic_bool * */
    void *timed_out;      /* zend_atomic_bool * */
    unsigned long thread; /* pthread_t */
} tphp_interrupt_handle;

/* How the script ended, filled in by tphp_execute() before the request shuts down. */
typedef struct {
    int last_error_type;        /* PG(last_error_type): E_ERROR etc., 0 when none */
    int timed_out;              /* 1 when max_execution_time fired */
} tphp_script_end;

/* What happened to a request, as tphp_execute() reports it. */
enum {
    TPHP_DONE = 0,             /* the script ran (it may have failed; the status says how) */
    TPHP_STARTUP_FAILED = 1,   /* php_request_startup() failed; nothing was sent */
};

/* --- called by Rust --- */
int tphp_startup(const tphp_startup_config *config);
void tphp_shutdown(void);
int tphp_is_zts(void);
const char *tphp_php_version(void);
/* Whether OPcache's shared-memory restarts wait for every thread (1), or may rewind memory
 * other threads still run (0: a PHP without scripts/php-patches/opcache-zts-restart.patch);
 * -1 when OPcache is not loaded. Call after tphp_startup(). */
int tphp_opcache_restart_waits_for_threads(void);
/* Sets up this thread's PHP context and fills `interrupt` (may be NULL) with its flags.
 * The thread also gets a filesystem context (umask, cwd) of its own; returns 0, or the
 * errno of that unshare(CLONE_FS) when it failed (the thread then shares the process's). */
int tphp_thread_init(tphp_interrupt_handle *interrupt);
void tphp_thread_shutdown(void);
/* Runs one request; fills `timings` when it is not NULL, and `end` (never NULL). */
int tphp_execute(void *context, const tphp_request *request, tphp_timings *timings,
                 tphp_script_end *end);
/* Worker mode: runs the worker script `boot->script_filename` once as a request whose output
 * and log lines go to `boot_context` (a handler like tphp_execute's context), with `boot`'s
 * $_SERVER. While it runs, tokio_handle_request() takes requests from `worker` through
 * tphp_rust_worker_next / tphp_rust_worker_end. Returns like tphp_execute(); `end`
 * describes how the script itself ended. */
int tphp_worker_run(void *worker, void *boot_context, const tphp_request *boot,
                    tphp_script_end *end);
/* Makes the script running on that worker stop at its next opcode with "Maximum execution
 * time exceeded", exactly as PHP's own timer does (zend_timeout_handler), and wakes the
 * thread from a blocking call (sleep(), a socket read, select()) with a signal whose
 * handler does nothing, so the call returns early (EINTR) and the next opcode comes. Safe
 * from any thread; the caller makes sure the worker still runs the request it means to
 * stop (and that the thread is alive). */
void tphp_interrupt(const tphp_interrupt_handle *interrupt);

/* --- called by C, implemented in Rust; `context` is the one given to tphp_execute --- */
/* Body bytes. Returns 0 when the client is gone (PHP then treats the connection as aborted). */
int tphp_rust_write(void *context, const char *data, size_t len);
void tphp_rust_flush(void *context);
/* One response header line as PHP holds it ("Name: value"). */
void tphp_rust_header(void *context, const char *line, size_t len);
/* All headers given: the response head is complete. `status_line` is the status line a
 * script set with header("HTTP/1.1 404 Gone") (NULL when none), for its reason phrase. */
void tphp_rust_send_headers(void *context, int status, const char *status_line,
                            size_t status_line_len);
/* Fills up to `len` bytes of the request body; 0 at the end. */
size_t tphp_rust_read_post(void *context, char *buf, size_t len);
/* A message from PHP's error log; `context` is NULL outside a request. */
void tphp_rust_log(void *context, const char *message, size_t len, int syslog_level);

/* --- worker mode, called by tokio_handle_request(); `worker` is tphp_worker_run's --- */
/* Blocks until the next request. Returns 1 with *request and *context set (both valid until
 * tphp_rust_worker_end), or 0 when the loop must end (shutdown, restart, max requests). */
int tphp_rust_worker_next(void *worker, const tphp_request **request, void **context);
/* The request from the last tphp_rust_worker_next has ended: its output and headers were
 * sent and its PHP state was reset. `end` says how its handler ended. */
void tphp_rust_worker_end(void *worker, const tphp_script_end *end);

/* --- the PHP functions of the tokio_php extension, answered by Rust --- */
/* The request id; *ptr stays valid until the request ends. */
void tphp_rust_request_id(void *context, const char **ptr, size_t *len);
int64_t tphp_rust_worker_id(void *context);
void tphp_rust_server_info(void *context, tphp_server_info *info);
/* Ends the response now (headers were sent, buffers flushed). 1 if this call ended it. */
int tphp_rust_finish_request(void *context);
/* Pushes the request's deadline forward (0: by the full timeout). 1 if a deadline moved. */
int tphp_rust_heartbeat(void *context, int64_t seconds);
/* One header line of an informational (1xx) response, then the status to send it with.
 * tphp_rust_send_informational returns 1 when the response was queued for the client. */
void tphp_rust_informational_header(void *context, const char *line, size_t len);
int tphp_rust_send_informational(void *context, int status);

#endif
