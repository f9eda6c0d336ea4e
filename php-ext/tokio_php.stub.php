<?php

/**
 * Functions tokio_php adds to PHP. This file is for IDEs and static analysers (PhpStorm,
 * Psalm, PHPStan); the real functions are built into the server's SAPI
 * (php-ext/tokio_php_sapi.c), and tests/php_api.rs checks that they match these signatures.
 *
 * @generate-class-entries
 */

/** The id of the current request (the X-Request-ID the client sent, or one the server made). */
function tokio_request_id(): string {}

/** The number of the worker thread serving the current request, from 0. */
function tokio_worker_id(): int {}

/**
 * Facts about the server: server, server_version, workers, php_version, zts, sapi.
 *
 * @return array{server: string, server_version: string, workers: int, php_version: string, zts: bool, sapi: string}
 */
function tokio_server_info(): array {}

/**
 * Sends the complete response to the client now; the script goes on running. Output after
 * this call is discarded. Also available as fastcgi_finish_request().
 *
 * @return bool true if this call ended the response, false if it had already ended
 */
function tokio_finish_request(): bool {}

/**
 * Pushes the current request's REQUEST_TIMEOUT deadline forward by $seconds (0: by the
 * whole REQUEST_TIMEOUT again), for long work that is making progress.
 *
 * @return bool false when no timeout applies to this request
 */
function tokio_request_heartbeat(int $seconds = 0): bool {}

/**
 * Sends an informational response now (103 Early Hints by default) carrying the Link
 * headers set so far; the final response follows later.
 *
 * @return int the status sent, or 0 when it could not be sent (headers already sent, or
 *             a connection that cannot carry informational responses, such as HTTP/2)
 */
function headers_send(int $status = 103): int {}


/**
 * Worker mode (WORKER_SCRIPT): waits for the next request, gives the script its
 * superglobals, output and headers, calls $handler, sends the response and resets the
 * request's state. Also available as frankenphp_handle_request().
 *
 * @return bool false when the worker script must leave its loop (the server is shutting
 *              down, WORKER_MAX_REQUESTS was reached, or WATCH saw a change)
 */
function tokio_handle_request(callable $handler): bool {}
