/*
 * tokio_php's SAPI module: thin glue between PHP's embed API and Rust.
 *
 * Each callback forwards to one tphp_rust_* function with the request's opaque context
 * (SG(server_context)); the decisions are made in Rust. zend_try lives here, around the
 * calls into PHP, so PHP's longjmp never crosses a Rust frame.
 */
#include "tokio_php.h"

#include <php.h>
#include <php_main.h>
#include <php_variables.h>
#include <SAPI.h>
#include <ext/standard/info.h>

#ifdef ZTS
ZEND_TSRMLS_CACHE_DEFINE()
#endif

#define TOKIO_PHP_SAPI_NAME "tokio_php"

/* Borrowed from the caller of tphp_startup() while it runs. */
static const tphp_startup_config *startup_config = NULL;
/* The request this worker thread is running, borrowed from tphp_execute()'s caller. */
ZEND_TLS const tphp_request *current_request = NULL; /* ZEND_TLS includes static */

/* === the tokio_php extension === */

static PHP_MINIT_FUNCTION(tokio_php)
{
    /* OPcache checks the SAPI name once, while extensions start; show it a name it
     * knows. tphp_startup() restores the real one before any request runs. */
    if (startup_config && startup_config->startup_sapi_name) {
        sapi_module.name = (char *) startup_config->startup_sapi_name;
    }
    return SUCCESS;
}

static PHP_MINFO_FUNCTION(tokio_php)
{
    php_info_print_table_start();
    php_info_print_table_row(2, "tokio_php SAPI", "enabled");
    php_info_print_table_end();
}

static zend_module_entry tokio_php_module_entry = {
    STANDARD_MODULE_HEADER,
    "tokio_php",
    NULL,
    PHP_MINIT(tokio_php),
    NULL,
    NULL,
    NULL,
    PHP_MINFO(tokio_php),
    "0.1.0",
    STANDARD_MODULE_PROPERTIES,
};

/* === SAPI callbacks === */

static int tphp_sapi_startup(sapi_module_struct *module)
{
    return php_module_startup(module, &tokio_php_module_entry);
}

static int tphp_sapi_deactivate(void)
{
    return SUCCESS;
}

static size_t tphp_ub_write(const char *str, size_t len)
{
    void *context = SG(server_context);
    if (context && !tphp_rust_write(context, str, len)) {
        /* The client is gone: php-fpm's behaviour, which may end the script here. */
        php_handle_aborted_connection();
    }
    return len;
}

static void tphp_flush(void *context)
{
    if (context) {
        tphp_rust_flush(context);
    }
}

static int tphp_send_headers(sapi_headers_struct *headers)
{
    void *context = SG(server_context);
    if (!context) {
        return SAPI_HEADER_SENT_SUCCESSFULLY;
    }
    zend_llist_position pos;
    sapi_header_struct *h = zend_llist_get_first_ex(&headers->headers, &pos);
    while (h) {
        tphp_rust_header(context, h->header, h->header_len);
        h = zend_llist_get_next_ex(&headers->headers, &pos);
    }
    tphp_rust_send_headers(context, headers->http_response_code);
    return SAPI_HEADER_SENT_SUCCESSFULLY;
}

static size_t tphp_read_post(char *buf, size_t len)
{
    void *context = SG(server_context);
    return context ? tphp_rust_read_post(context, buf, len) : 0;
}

static char *tphp_read_cookies(void)
{
    /* PHP copies this and never frees it; Rust owns it for the request. */
    return current_request ? (char *) current_request->cookie : NULL;
}

static void tphp_register_server_variables(zval *track_vars_array)
{
    const tphp_request *r = current_request;
    if (!r) {
        return;
    }
    for (size_t i = 0; i < r->server_vars_len; i++) {
        /* Rust lays each name and value out NUL-terminated (see src/php/request.rs). */
        const char *name = r->server_vars[2 * i].ptr;
        char *value = (char *) r->server_vars[2 * i + 1].ptr;
        size_t value_len = r->server_vars[2 * i + 1].len;
        size_t new_len = value_len;
        if (!sapi_module.input_filter ||
            sapi_module.input_filter(PARSE_SERVER, name, &value, value_len, &new_len)) {
            php_register_variable_safe(name, value, new_len, track_vars_array);
        }
    }
}

static void tphp_log_message(const char *message, int syslog_level)
{
    tphp_rust_log(SG(server_context), message, strlen(message), syslog_level);
}

static zend_result tphp_get_request_time(double *request_time)
{
    if (!current_request) {
        return FAILURE;
    }
    *request_time = current_request->request_time;
    return SUCCESS;
}

static void tphp_ini_defaults(HashTable *configuration_hash)
{
    if (!startup_config) {
        return;
    }
    for (size_t i = 0; i < startup_config->ini_defaults_len; i++) {
        const tphp_str *key = &startup_config->ini_defaults[2 * i];
        const tphp_str *value = &startup_config->ini_defaults[2 * i + 1];
        zval tmp;
        ZVAL_NEW_STR(&tmp, zend_string_init(value->ptr, value->len, 1));
        zend_hash_str_update(configuration_hash, key->ptr, key->len, &tmp);
    }
}

static sapi_module_struct tphp_sapi_module = {
    .name = TOKIO_PHP_SAPI_NAME,
    .pretty_name = "tokio_php",
    .startup = tphp_sapi_startup,
    .shutdown = php_module_shutdown_wrapper,
    .activate = NULL,
    .deactivate = tphp_sapi_deactivate,
    .ub_write = tphp_ub_write,
    .flush = tphp_flush,
    .send_headers = tphp_send_headers,
    .read_post = tphp_read_post,
    .read_cookies = tphp_read_cookies,
    .register_server_variables = tphp_register_server_variables,
    .log_message = tphp_log_message,
    .get_request_time = tphp_get_request_time,
    .ini_defaults = tphp_ini_defaults,
    /* A server does not read php.ini from whatever directory it was started in. */
    .php_ini_ignore_cwd = 1,
};

/* === called by Rust === */

int tphp_is_zts(void)
{
#ifdef ZTS
    return 1;
#else
    return 0;
#endif
}

const char *tphp_php_version(void)
{
    return PHP_VERSION;
}

int tphp_startup(const tphp_startup_config *config)
{
#ifdef ZTS
    php_tsrm_startup();
    ZEND_TSRMLS_CACHE_UPDATE();
#endif
    startup_config = config;
    sapi_startup(&tphp_sapi_module);
    /* sapi_startup() clears ini_entries; php_module_startup() copies the struct again. */
    tphp_sapi_module.php_ini_path_override = (char *) config->ini_path_override;
    tphp_sapi_module.ini_entries = config->ini_entries ? strdup(config->ini_entries) : NULL;
    int ok = tphp_sapi_module.startup(&tphp_sapi_module) == SUCCESS;
    sapi_module.name = TOKIO_PHP_SAPI_NAME;
    startup_config = NULL;
    return ok ? 0 : -1;
}

void tphp_shutdown(void)
{
    php_module_shutdown();
    sapi_shutdown();
#ifdef ZTS
    tsrm_shutdown();
#endif
    free((void *) tphp_sapi_module.ini_entries);
    tphp_sapi_module.ini_entries = NULL;
}

void tphp_thread_init(void)
{
#ifdef ZTS
    (void) ts_resource(0);
    ZEND_TSRMLS_CACHE_UPDATE();
#endif
}

void tphp_thread_shutdown(void)
{
#ifdef ZTS
    ts_free_thread();
#endif
}

int tphp_execute(void *context, const tphp_request *r, tphp_script_end *end)
{
    int result = TPHP_DONE;
    end->last_error_type = 0;
    end->timed_out = 0;

    current_request = r;
    SG(server_context) = context;
    SG(request_info).request_method = r->method;
    SG(request_info).request_uri = (char *) r->request_uri;
    SG(request_info).query_string = (char *) r->query_string;
    SG(request_info).path_translated = (char *) r->script_filename;
    SG(request_info).content_type = r->content_type;
    SG(request_info).content_length = r->content_length < 0 ? 0 : r->content_length;
    SG(request_info).proto_num = r->proto_num;
    SG(request_info).headers_only = r->headers_only;
    SG(sapi_headers).http_response_code = 200;

    zend_first_try {
        if (r->authorization) {
            php_handle_auth_data(r->authorization);
        }
        if (php_request_startup() == FAILURE) {
            result = TPHP_STARTUP_FAILED;
        } else {
            zend_file_handle file_handle;
            zend_stream_init_filename(&file_handle, r->script_filename);
            php_execute_script(&file_handle);
            zend_destroy_file_handle(&file_handle);
        }
    } zend_end_try();

    if (result == TPHP_DONE) {
        /* Read before php_request_shutdown() clears them. */
        /* The type outlives its request; the message is cleared at each shutdown. */
        end->last_error_type = PG(last_error_message) ? PG(last_error_type) : 0;
        end->timed_out = (PG(connection_status) & PHP_CONNECTION_TIMEOUT) != 0;
        php_request_shutdown(NULL);
    }

    SG(server_context) = NULL;
    SG(request_info).request_method = NULL;
    SG(request_info).request_uri = NULL;
    SG(request_info).query_string = NULL;
    SG(request_info).path_translated = NULL;
    SG(request_info).content_type = NULL;
    current_request = NULL;
    return result;
}
