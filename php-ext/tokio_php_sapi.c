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
#include <zend_extensions.h>
#include <zend_exceptions.h>
#include <php_output.h>
#include <ext/standard/head.h>
#include <ext/standard/info.h>
#include <ext/standard/basic_functions.h>
#if defined(HAVE_PHP_SESSION) && !defined(COMPILE_DL_SESSION)
#include <ext/session/php_session.h>
#define TPHP_SESSION_HANDLER_KEPT 1
#endif
#include <dlfcn.h>
#include <errno.h>
#include <locale.h>
#include <langinfo.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <time.h>

#ifdef ZTS
ZEND_TSRMLS_CACHE_DEFINE()
#endif

#define TOKIO_PHP_SAPI_NAME "tokio_php"

/* Borrowed from the caller of tphp_startup() while it runs. */
static const tphp_startup_config *startup_config = NULL;
/* The request this worker thread is running, borrowed from tphp_execute()'s caller. */
ZEND_TLS const tphp_request *current_request = NULL; /* ZEND_TLS includes static */

/* Worker mode: what this thread's worker script runs with (all zero outside worker mode). */
typedef struct {
    void *worker;             /* Rust's handle for tphp_rust_worker_next / _end */
    void *boot_context;       /* the handler of the script's own (idle) request */
    const tphp_request *boot; /* the script's own request: its $_SERVER between requests */
    int in_request;           /* a request from tphp_rust_worker_next is being handled */
    int idle_request;         /* the script's own request state is active */
} tphp_worker_state;
ZEND_TLS tphp_worker_state worker_state;

static void tphp_worker_request_startup(const tphp_request *r, void *context);
static void tphp_worker_request_shutdown(void);

/* === the tokio_php extension: PHP functions (signatures in tokio_php.stub.php) === */

ZEND_BEGIN_ARG_WITH_RETURN_TYPE_INFO_EX(arginfo_tokio_request_id, 0, 0, IS_STRING, 0)
ZEND_END_ARG_INFO()

ZEND_BEGIN_ARG_WITH_RETURN_TYPE_INFO_EX(arginfo_tokio_worker_id, 0, 0, IS_LONG, 0)
ZEND_END_ARG_INFO()

ZEND_BEGIN_ARG_WITH_RETURN_TYPE_INFO_EX(arginfo_tokio_server_info, 0, 0, IS_ARRAY, 0)
ZEND_END_ARG_INFO()

ZEND_BEGIN_ARG_WITH_RETURN_TYPE_INFO_EX(arginfo_tokio_finish_request, 0, 0, _IS_BOOL, 0)
ZEND_END_ARG_INFO()

ZEND_BEGIN_ARG_WITH_RETURN_TYPE_INFO_EX(arginfo_tokio_request_heartbeat, 0, 0, _IS_BOOL, 0)
    ZEND_ARG_TYPE_INFO_WITH_DEFAULT_VALUE(0, seconds, IS_LONG, 0, "0")
ZEND_END_ARG_INFO()

ZEND_BEGIN_ARG_WITH_RETURN_TYPE_INFO_EX(arginfo_headers_send, 0, 0, IS_LONG, 0)
    ZEND_ARG_TYPE_INFO_WITH_DEFAULT_VALUE(0, status, IS_LONG, 0, "103")
ZEND_END_ARG_INFO()

ZEND_BEGIN_ARG_WITH_RETURN_TYPE_INFO_EX(arginfo_tokio_handle_request, 0, 1, _IS_BOOL, 0)
    ZEND_ARG_TYPE_INFO(0, handler, IS_CALLABLE, 0)
ZEND_END_ARG_INFO()

PHP_FUNCTION(tokio_request_id)
{
    ZEND_PARSE_PARAMETERS_NONE();
    const char *ptr = NULL;
    size_t len = 0;
    if (SG(server_context)) {
        tphp_rust_request_id(SG(server_context), &ptr, &len);
    }
    RETURN_STRINGL(ptr ? ptr : "", ptr ? len : 0);
}

PHP_FUNCTION(tokio_worker_id)
{
    ZEND_PARSE_PARAMETERS_NONE();
    RETURN_LONG(SG(server_context) ? tphp_rust_worker_id(SG(server_context)) : -1);
}

PHP_FUNCTION(tokio_server_info)
{
    ZEND_PARSE_PARAMETERS_NONE();
    tphp_server_info info = {0};
    tphp_rust_server_info(SG(server_context), &info);
    array_init(return_value);
    add_assoc_string(return_value, "server", "tokio_php");
    add_assoc_string(return_value, "server_version", info.server_version ? (char *) info.server_version : "");
    add_assoc_long(return_value, "workers", (zend_long) info.workers);
    add_assoc_string(return_value, "php_version", PHP_VERSION);
    add_assoc_bool(return_value, "zts", tphp_is_zts());
    add_assoc_string(return_value, "sapi", (char *) sapi_module.name);
}

PHP_FUNCTION(tokio_finish_request)
{
    ZEND_PARSE_PARAMETERS_NONE();
    void *context = SG(server_context);
    if (!context) {
        RETURN_FALSE;
    }
    /* As php-fpm's fastcgi_finish_request(): flush every buffer, send the headers, end. */
    php_output_end_all();
    php_header();
    RETURN_BOOL(tphp_rust_finish_request(context));
}

PHP_FUNCTION(tokio_request_heartbeat)
{
    zend_long seconds = 0;
    ZEND_PARSE_PARAMETERS_START(0, 1)
        Z_PARAM_OPTIONAL
        Z_PARAM_LONG(seconds)
    ZEND_PARSE_PARAMETERS_END();
    if (seconds < 0) {
        zend_argument_value_error(1, "must be greater than or equal to 0");
        RETURN_THROWS();
    }
    RETURN_BOOL(SG(server_context) && tphp_rust_heartbeat(SG(server_context), (int64_t) seconds));
}

PHP_FUNCTION(headers_send)
{
    zend_long status = 103;
    ZEND_PARSE_PARAMETERS_START(0, 1)
        Z_PARAM_OPTIONAL
        Z_PARAM_LONG(status)
    ZEND_PARSE_PARAMETERS_END();
    void *context = SG(server_context);
    if (status < 100 || status > 199 || status == 101) {
        /* 101 Switching Protocols would hand the connection to a protocol nobody speaks. */
        zend_argument_value_error(1, "must be an informational status (100-199) other than 101");
        RETURN_THROWS();
    }
    if (!context || SG(headers_sent)) {
        RETURN_LONG(0);
    }
    zend_llist_position pos;
    sapi_header_struct *h = zend_llist_get_first_ex(&SG(sapi_headers).headers, &pos);
    while (h) {
        tphp_rust_informational_header(context, h->header, h->header_len);
        h = zend_llist_get_next_ex(&SG(sapi_headers).headers, &pos);
    }
    RETURN_LONG(tphp_rust_send_informational(context, (int) status) ? status : 0);
}

/* Worker mode: waits for a request, runs $handler with that request's superglobals and
 * output, ends the request, returns true; false when the worker must leave its loop. */
PHP_FUNCTION(tokio_handle_request)
{
    zend_fcall_info fci;
    zend_fcall_info_cache fcc;
    ZEND_PARSE_PARAMETERS_START(1, 1)
        Z_PARAM_FUNC(fci, fcc)
    ZEND_PARSE_PARAMETERS_END();

    if (!worker_state.worker) {
        zend_throw_error(NULL, "%s() works only in a worker script (WORKER_SCRIPT)",
                         get_active_function_name());
        RETURN_THROWS();
    }
    if (worker_state.in_request) {
        zend_throw_error(NULL, "%s() cannot be called while a request is being handled",
                         get_active_function_name());
        RETURN_THROWS();
    }
    /* The script's own request (its boot, or the code between two requests) ends first. */
    if (worker_state.idle_request) {
        tphp_worker_request_shutdown();
        worker_state.idle_request = 0;
    }
    const tphp_request *r = NULL;
    void *context = NULL;
    if (!tphp_rust_worker_next(worker_state.worker, &r, &context) || !r || !context) {
        /* php_request_shutdown(), when the script ends, expects a request to be active. */
        tphp_worker_request_startup(worker_state.boot, worker_state.boot_context);
        worker_state.idle_request = 1;
        RETURN_FALSE;
    }
    worker_state.in_request = 1;
    tphp_worker_request_startup(r, context);

    /* A fatal error in the handler longjmps to tphp_worker_run()'s zend_try (C frames only):
     * the script ends and Rust restarts it. */
    zval retval;
    ZVAL_UNDEF(&retval);
    fci.retval = &retval;
    if (zend_call_function(&fci, &fcc) == SUCCESS) {
        zval_ptr_dtor(&retval);
    }
    zend_object *exiting = NULL;
    if (EG(exception)) {
        if (zend_is_unwind_exit(EG(exception)) || zend_is_graceful_exit(EG(exception))) {
            /* exit(): end this request, then let the exit end the script. */
            exiting = EG(exception);
            EG(exception) = NULL;
        } else {
            /* "PHP Fatal error: Uncaught …" and a 500, as for a classic script; the
             * application's state is intact, so the loop goes on. */
            zend_exception_error(EG(exception), E_ERROR);
        }
    }
    tphp_script_end end;
    end.last_error_type = PG(last_error_message) ? PG(last_error_type) : 0;
    end.timed_out = (PG(connection_status) & PHP_CONNECTION_TIMEOUT) != 0;
    tphp_worker_request_shutdown();
    worker_state.in_request = 0;
    tphp_rust_worker_end(worker_state.worker, &end);

    tphp_worker_request_startup(worker_state.boot, worker_state.boot_context);
    worker_state.idle_request = 1;
    if (exiting) {
        EG(exception) = exiting;
        RETURN_FALSE;
    }
    RETURN_TRUE;
}

static const zend_function_entry tokio_php_functions[] = {
    PHP_FE(tokio_request_id, arginfo_tokio_request_id)
    PHP_FE(tokio_worker_id, arginfo_tokio_worker_id)
    PHP_FE(tokio_server_info, arginfo_tokio_server_info)
    PHP_FE(tokio_finish_request, arginfo_tokio_finish_request)
    PHP_FE(tokio_request_heartbeat, arginfo_tokio_request_heartbeat)
    PHP_FE(headers_send, arginfo_headers_send)
    PHP_FE(tokio_handle_request, arginfo_tokio_handle_request)
    PHP_FE_END
};

/* Symfony's and Laravel's terminate phase call fastcgi_finish_request() when it exists. */
static const zend_function_entry fastcgi_alias_functions[] = {
    ZEND_RAW_FENTRY("fastcgi_finish_request", PHP_FN(tokio_finish_request), arginfo_tokio_finish_request, 0)
    PHP_FE_END
};

/* Symfony Runtime's and Laravel Octane's FrankenPHP runners call frankenphp_handle_request(). */
static const zend_function_entry frankenphp_alias_functions[] = {
    ZEND_RAW_FENTRY("frankenphp_handle_request", PHP_FN(tokio_handle_request), arginfo_tokio_handle_request, 0)
    PHP_FE_END
};
/* === putenv() without touching the process environment ===
 *
 * PHP's putenv() calls setenv(3), which races with every other thread reading the
 * environment (other PHP workers, Rust). tokio_php keeps a request's putenv() values in a
 * per-thread table instead: getenv() sees them (getenv() itself is replaced too, so that
 * getenv() with no argument and getenv($name, true) see them as under php-fpm; extensions
 * that call sapi_getenv() see them through the SAPI's getenv callback), other threads and
 * requests do not, and they are dropped at the end of the request, which is when php-fpm
 * restores the environment too. */

ZEND_TLS HashTable *request_env = NULL; /* emalloc'd for the current request, or NULL */

PHP_FUNCTION(tokio_putenv)
{
    zend_string *setting;
    ZEND_PARSE_PARAMETERS_START(1, 1)
        Z_PARAM_STR(setting)
    ZEND_PARSE_PARAMETERS_END();
    const char *p = ZSTR_VAL(setting);
    const char *eq = memchr(p, '=', ZSTR_LEN(setting));
    size_t name_len = eq ? (size_t) (eq - p) : ZSTR_LEN(setting);
    if (name_len == 0) {
        zend_argument_value_error(1, "must have a valid syntax");
        RETURN_THROWS();
    }
    if (!request_env) {
        ALLOC_HASHTABLE(request_env);
        zend_hash_init(request_env, 8, NULL, ZVAL_PTR_DTOR, 0);
    }
    zval value;
    if (eq) {
        ZVAL_STRINGL(&value, eq + 1, ZSTR_LEN(setting) - name_len - 1);
    } else {
        ZVAL_NULL(&value); /* "NAME" alone unsets it for this request */
    }
    zend_hash_str_update(request_env, p, name_len, &value);
    RETURN_TRUE;
}

/* PHP's own getenv(), called for what the request's table does not answer. */
static zif_handler tphp_php_getenv = NULL;

PHP_FUNCTION(tokio_getenv)
{
    char *name = NULL;
    size_t name_len = 0;
    bool local_only = 0;
    ZEND_PARSE_PARAMETERS_START(0, 2)
        Z_PARAM_OPTIONAL
        Z_PARAM_STRING_OR_NULL(name, name_len)
        Z_PARAM_BOOL(local_only)
    ZEND_PARSE_PARAMETERS_END();
    (void) local_only; /* the request's values are its local environment either way */
    if (request_env && name) {
        zval *value = zend_hash_str_find(request_env, name, name_len);
        if (value) {
            if (Z_TYPE_P(value) == IS_STRING) {
                RETURN_STR_COPY(Z_STR_P(value));
            }
            RETURN_FALSE; /* putenv("NAME") unset it */
        }
    }
    tphp_php_getenv(INTERNAL_FUNCTION_PARAM_PASSTHRU);
    if (request_env && !name && Z_TYPE_P(return_value) == IS_ARRAY) {
        /* The process environment, with this request's changes on top. */
        zend_string *key;
        zval *value;
        ZEND_HASH_FOREACH_STR_KEY_VAL(request_env, key, value) {
            if (!key) {
                continue;
            }
            if (Z_TYPE_P(value) == IS_STRING) {
                Z_TRY_ADDREF_P(value);
                zend_symtable_update(Z_ARRVAL_P(return_value), key, value);
            } else {
                zend_symtable_del(Z_ARRVAL_P(return_value), key);
            }
        } ZEND_HASH_FOREACH_END();
    }
}

static char *tphp_getenv(const char *name, size_t name_len)
{
    if (!request_env) {
        return NULL;
    }
    zval *value = zend_hash_str_find(request_env, name, name_len);
    /* NULL falls back to the real environment; sapi_getenv copies what it gets. */
    return value && Z_TYPE_P(value) == IS_STRING ? Z_STRVAL_P(value) : NULL;
}

/* === setlocale() per request ===
 *
 * PHP's setlocale() changes the process's locale: while one request had set de_DE, every
 * other worker thread printed sprintf('%.2f', 1.5) as "1,50". tokio_php's setlocale() gives
 * the calling thread a locale of its own (newlocale() + uselocale()), which everything
 * locale-dependent in the thread reads (localeconv(), strcoll(), ctype, MB_CUR_MAX), and
 * drops it when the request ends; other threads keep the process's locale. */

ZEND_TLS locale_t request_locale = (locale_t) 0;      /* this thread's, or 0 for the process's */
ZEND_TLS char request_locale_name[1024];              /* LC_ALL's name when categories differ */

static int tphp_locale_mask(zend_long category)
{
    switch (category) {
        case LC_ALL: return LC_ALL_MASK;
        case LC_CTYPE: return LC_CTYPE_MASK;
        case LC_NUMERIC: return LC_NUMERIC_MASK;
        case LC_TIME: return LC_TIME_MASK;
        case LC_COLLATE: return LC_COLLATE_MASK;
        case LC_MONETARY: return LC_MONETARY_MASK;
        case LC_MESSAGES: return LC_MESSAGES_MASK;
        default: return -1;
    }
}

/* What setlocale(category, NULL) would answer for this thread's locale. */
static const char *tphp_locale_name(int category)
{
    if (!request_locale) {
        return setlocale(category, NULL);
    }
    if (category != LC_ALL) {
        return nl_langinfo_l(_NL_LOCALE_NAME(category), request_locale);
    }
    /* glibc's LC_ALL: the one name, or every category's in order when they differ. */
    static const int categories[] = {LC_CTYPE, LC_NUMERIC, LC_TIME, LC_COLLATE, LC_MONETARY,
        LC_MESSAGES, LC_PAPER, LC_NAME, LC_ADDRESS, LC_TELEPHONE, LC_MEASUREMENT,
        LC_IDENTIFICATION};
    static const char *const names[] = {"LC_CTYPE", "LC_NUMERIC", "LC_TIME", "LC_COLLATE",
        "LC_MONETARY", "LC_MESSAGES", "LC_PAPER", "LC_NAME", "LC_ADDRESS", "LC_TELEPHONE",
        "LC_MEASUREMENT", "LC_IDENTIFICATION"};
    const size_t n = sizeof(categories) / sizeof(categories[0]);
    const char *first = nl_langinfo_l(_NL_LOCALE_NAME(LC_CTYPE), request_locale);
    bool same = true;
    for (size_t i = 1; i < n && same; i++) {
        same = strcmp(first, nl_langinfo_l(_NL_LOCALE_NAME(categories[i]), request_locale)) == 0;
    }
    if (same) {
        return first;
    }
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        const char *name = nl_langinfo_l(_NL_LOCALE_NAME(categories[i]), request_locale);
        int wrote = snprintf(request_locale_name + used, sizeof(request_locale_name) - used,
                             "%s%s=%s", i ? ";" : "", names[i], name);
        if (wrote < 0 || (size_t) wrote >= sizeof(request_locale_name) - used) {
            return NULL;
        }
        used += (size_t) wrote;
    }
    return request_locale_name;
}

/* setlocale() for this thread only; NULL as setlocale() fails. */
static const char *tphp_thread_setlocale(zend_long category, const char *name)
{
    int mask = tphp_locale_mask(category);
    if (mask < 0) {
        return NULL;
    }
    if (!name) {
        return tphp_locale_name((int) category);
    }
    locale_t base = duplocale(request_locale ? request_locale : LC_GLOBAL_LOCALE);
    if (!base) {
        return NULL;
    }
    locale_t next = newlocale(mask, name, base); /* takes base, or leaves it on failure */
    if (!next) {
        freelocale(base);
        return NULL;
    }
    uselocale(next);
    if (request_locale) {
        freelocale(request_locale);
    }
    request_locale = next;
    return tphp_locale_name((int) category);
}

/* The thread goes back to the process's locale (end of a request). */
static void tphp_request_locale_reset(void)
{
    if (!request_locale) {
        return;
    }
    uselocale(LC_GLOBAL_LOCALE);
    freelocale(request_locale);
    request_locale = (locale_t) 0;
    zend_update_current_locale();
}

/* PHP's try_setlocale_str(), on the thread's locale. */
static zend_string *tphp_try_setlocale(zend_long category, zend_string *locale)
{
    if (zend_string_equals_literal(locale, "0")) {
        locale = NULL;
    } else if (ZSTR_LEN(locale) >= 255) {
        php_error_docref(NULL, E_WARNING, "Specified locale name is too long");
        return NULL;
    }
    const char *result = tphp_thread_setlocale(category, locale ? ZSTR_VAL(locale) : NULL);
    if (!result) {
        return NULL;
    }
    size_t len = strlen(result);
    if (locale && (category == LC_CTYPE || category == LC_ALL)) {
        /* As PHP's own: the engine's view of the charset, and PCRE's locale tables. */
        zend_update_current_locale();
        if (BG(ctype_string)) {
            zend_string_release_ex(BG(ctype_string), 0);
            BG(ctype_string) = NULL;
        }
        if (len == 1 && *result == 'C') {
            return ZSTR_CHAR('C');
        }
        BG(ctype_string) = zend_string_init(result, len, 0);
        return zend_string_copy(BG(ctype_string));
    }
    if (locale && zend_string_equals_cstr(locale, result, len)) {
        return zend_string_copy(locale);
    }
    return zend_string_init(result, len, 0);
}

static zend_string *tphp_try_setlocale_zval(zend_long category, zval *locale)
{
    zend_string *tmp;
    zend_string *str = zval_try_get_tmp_string(locale, &tmp);
    if (!str) {
        return NULL;
    }
    zend_string *result = tphp_try_setlocale(category, str);
    zend_tmp_string_release(tmp);
    return result;
}

PHP_FUNCTION(tokio_setlocale)
{
    zend_long category;
    zval *args = NULL;
    int count = 0;
    ZEND_PARSE_PARAMETERS_START(2, -1)
        Z_PARAM_LONG(category)
        Z_PARAM_VARIADIC('+', args, count)
    ZEND_PARSE_PARAMETERS_END();
    for (int i = 0; i < count; i++) {
        if (Z_TYPE(args[i]) == IS_ARRAY) {
            zval *candidate;
            ZEND_HASH_FOREACH_VAL(Z_ARRVAL(args[i]), candidate) {
                zend_string *result = tphp_try_setlocale_zval(category, candidate);
                if (EG(exception)) {
                    RETURN_THROWS();
                }
                if (result) {
                    RETURN_STR(result);
                }
            } ZEND_HASH_FOREACH_END();
        } else {
            zend_string *result = tphp_try_setlocale_zval(category, &args[i]);
            if (EG(exception)) {
                RETURN_THROWS();
            }
            if (result) {
                RETURN_STR(result);
            }
        }
    }
    RETURN_FALSE;
}

static PHP_RSHUTDOWN_FUNCTION(tokio_php)
{
    if (request_env) {
        zend_hash_destroy(request_env);
        FREE_HASHTABLE(request_env);
        request_env = NULL;
    }
    tphp_request_locale_reset();
    return SUCCESS;
}

static PHP_MINIT_FUNCTION(tokio_php)
{
    /* OPcache checks the SAPI name once, while extensions start; show it a name it
     * knows. tphp_startup() restores the real one before any request runs. */
    if (startup_config && startup_config->startup_sapi_name) {
        sapi_module.name = (char *) startup_config->startup_sapi_name;
    }
    /* Zend extensions registered now still start with the others, after the modules. */
    if (startup_config && startup_config->opcache_path && !zend_get_extension("Zend OPcache")) {
        zend_load_extension(startup_config->opcache_path);
    }
    zend_function *putenv_fn = zend_hash_str_find_ptr(CG(function_table), "putenv",
                                                      sizeof("putenv") - 1);
    if (putenv_fn && putenv_fn->type == ZEND_INTERNAL_FUNCTION) {
        putenv_fn->internal_function.handler = ZEND_FN(tokio_putenv);
    }
    zend_function *setlocale_fn = zend_hash_str_find_ptr(CG(function_table), "setlocale",
                                                         sizeof("setlocale") - 1);
    if (setlocale_fn && setlocale_fn->type == ZEND_INTERNAL_FUNCTION) {
        setlocale_fn->internal_function.handler = ZEND_FN(tokio_setlocale);
    }
    zend_function *getenv_fn = zend_hash_str_find_ptr(CG(function_table), "getenv",
                                                      sizeof("getenv") - 1);
    if (getenv_fn && getenv_fn->type == ZEND_INTERNAL_FUNCTION) {
        tphp_php_getenv = getenv_fn->internal_function.handler;
        getenv_fn->internal_function.handler = ZEND_FN(tokio_getenv);
    }
    if (!zend_hash_str_exists(CG(function_table), "fastcgi_finish_request",
                              sizeof("fastcgi_finish_request") - 1)) {
        zend_register_functions(NULL, fastcgi_alias_functions, NULL, MODULE_PERSISTENT);
    }
    if (!zend_hash_str_exists(CG(function_table), "frankenphp_handle_request",
                              sizeof("frankenphp_handle_request") - 1)) {
        zend_register_functions(NULL, frankenphp_alias_functions, NULL, MODULE_PERSISTENT);
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
    tokio_php_functions,
    PHP_MINIT(tokio_php),
    NULL,
    NULL,
    PHP_RSHUTDOWN(tokio_php),
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
    if (!context) {
        /* Output outside a request is PHP's own, at module startup (display_startup_errors:
         * why it will not start): the server log, where php-fpm puts it too. */
        tphp_rust_log(NULL, str, len, 5 /* LOG_NOTICE */);
        return len;
    }
    if (!tphp_rust_write(context, str, len)) {
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
    const char *status_line = headers->http_status_line;
    tphp_rust_send_headers(context, headers->http_response_code, status_line,
                           status_line ? strlen(status_line) : 0);
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
        /* Rust lays each name and value out NUL-terminated (see ServerVars in src/ffi.rs). */
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
    .getenv = tphp_getenv,
    /* PHP reports request-parsing and header errors (rfc1867.c, SAPI.c) through this
     * without a NULL check; php_error is what every shipped SAPI sets: the message goes
     * through PHP's error handling (the log with the request, the output when
     * display_errors is on), exactly as under php-fpm. */
    .sapi_error = php_error,
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

/* The signal that wakes a worker thread from a blocking call (tphp_interrupt). PHP's own
 * max_execution_time timers use SIGRTMIN. */
#define TPHP_WAKE_SIGNAL (SIGRTMIN + 1)

static void tphp_wake_handler(int signal)
{
    (void) signal; /* only there so that the blocking call returns EINTR */
}

int tphp_startup(const tphp_startup_config *config)
{
    /* No SA_RESTART: the interrupted call must return, not resume. */
    struct sigaction wake;
    memset(&wake, 0, sizeof wake);
    wake.sa_handler = tphp_wake_handler;
    sigemptyset(&wake.sa_mask);
    if (sigaction(TPHP_WAKE_SIGNAL, &wake, NULL) != 0) {
        return -1;
    }
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

int tphp_opcache_restart_waits_for_threads(void)
{
    if (!zend_get_extension("Zend OPcache")) {
        return -1;
    }
    /* Defined by the patched OPcache (loaded RTLD_GLOBAL), absent from any other. */
    return dlsym(RTLD_DEFAULT, "zend_accel_restart_waits_for_threads") != NULL;
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

int tphp_thread_init(tphp_interrupt_handle *interrupt)
{
#ifdef ZTS
    (void) ts_resource(0);
    ZEND_TSRMLS_CACHE_UPDATE();
#endif
    if (interrupt) {
        /* This thread's executor globals live as long as its TSRM context. */
        interrupt->vm_interrupt = &EG(vm_interrupt);
        interrupt->timed_out = &EG(timed_out);
        ZEND_ASSERT(sizeof(pthread_t) <= sizeof(interrupt->thread));
        interrupt->thread = (unsigned long) pthread_self();
    }
    /* A filesystem context of the thread's own: umask() (and chroot(), and a real
     * chdir()) in one request no longer changes them for requests on other threads. */
    return unshare(CLONE_FS) == 0 ? 0 : errno;
}

void tphp_interrupt(const tphp_interrupt_handle *interrupt)
{
    if (!interrupt || !interrupt->vm_interrupt || !interrupt->timed_out) {
        return;
    }
    /* What zend_timeout_handler() does: the VM checks vm_interrupt at loop back-edges and
     * calls, sees timed_out and raises the max_execution_time fatal error. Both flags are
     * reset by the next php_request_startup() (init_executor). */
    zend_atomic_bool_store((zend_atomic_bool *) interrupt->timed_out, true);
    zend_atomic_bool_store((zend_atomic_bool *) interrupt->vm_interrupt, true);
    pthread_kill((pthread_t) interrupt->thread, TPHP_WAKE_SIGNAL);
}

static uint64_t tphp_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

/* Stamps one field of the caller's timings, only when profiling (timings != NULL). Written
 * through the pointer, so the stamps survive PHP's longjmp out of zend_try. */
#define TPHP_STAMP(timings, field) \
    do { \
        if (timings) { \
            (timings)->field = tphp_now_ns(); \
        } \
    } while (0)

void tphp_thread_shutdown(void)
{
#ifdef ZTS
    ts_free_thread();
#endif
}

int tphp_execute(void *context, const tphp_request *r, tphp_timings *timings,
                 tphp_script_end *script_end)
{
    volatile int result = TPHP_DONE; /* read after a possible longjmp */
    script_end->last_error_type = 0;
    script_end->timed_out = 0;

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

    TPHP_STAMP(timings, startup_begin);
    zend_first_try {
        if (r->authorization) {
            php_handle_auth_data(r->authorization);
        }
        if (php_request_startup() == FAILURE) {
            result = TPHP_STARTUP_FAILED;
        } else {
            TPHP_STAMP(timings, script_begin);
            zend_file_handle file_handle;
            zend_stream_init_filename(&file_handle, r->script_filename);
            php_execute_script(&file_handle);
            zend_destroy_file_handle(&file_handle);
        }
    } zend_end_try();

    TPHP_STAMP(timings, shutdown_begin);
    if (result == TPHP_DONE) {
        /* Read before php_request_shutdown() clears them. */
        /* The type outlives its request; the message is cleared at each shutdown. */
        script_end->last_error_type = PG(last_error_message) ? PG(last_error_type) : 0;
        script_end->timed_out = (PG(connection_status) & PHP_CONNECTION_TIMEOUT) != 0;
        php_request_shutdown(NULL);
    }
    TPHP_STAMP(timings, end);

    SG(server_context) = NULL;
    SG(request_info).request_method = NULL;
    SG(request_info).request_uri = NULL;
    SG(request_info).query_string = NULL;
    SG(request_info).path_translated = NULL;
    SG(request_info).content_type = NULL;
    current_request = NULL;
    return result;
}

/* === worker mode === */

/* Modules whose per-request state must be reset between two requests of a worker script,
 * as FrankenPHP does: input filtering and sessions. */
static const char *const tphp_request_modules[] = {"filter", "session", NULL};

static void tphp_request_modules_call(int startup)
{
    for (const char *const *name = tphp_request_modules; *name; name++) {
        zend_module_entry *module = zend_hash_str_find_ptr(&module_registry, *name, strlen(*name));
        if (!module) {
            continue;
        }
        if (startup && module->request_startup_func) {
            module->request_startup_func(module->type, module->module_number);
        } else if (!startup && module->request_shutdown_func) {
            module->request_shutdown_func(module->type, module->module_number);
        }
    }
}

/* Sets up one request inside the running worker script: what php_request_startup() does,
 * minus the executor, which keeps the application's state. */
static void tphp_worker_request_startup(const tphp_request *r, void *context)
{
    current_request = r;
    SG(server_context) = context;
    SG(request_info).request_method = r->method;
    SG(request_info).request_uri = (char *) r->request_uri;
    SG(request_info).query_string = (char *) r->query_string;
    SG(request_info).path_translated = (char *) r->script_filename;
    SG(request_info).content_type = r->content_type;
    SG(request_info).content_length = r->content_length < 0 ? 0 : r->content_length;

    if (PG(last_error_message)) {
        zend_string_release(PG(last_error_message));
        PG(last_error_message) = NULL;
    }
    if (PG(last_error_file)) {
        zend_string_release(PG(last_error_file));
        PG(last_error_file) = NULL;
    }
    PG(last_error_type) = 0;
    PG(last_error_lineno) = 0;
    zend_atomic_bool_store(&EG(timed_out), false);

    php_output_activate();
    PG(header_is_being_sent) = 0;
    PG(connection_status) = PHP_CONNECTION_NORMAL;
    sapi_activate();
    /* sapi_activate() resets these to its own defaults. */
    SG(request_info).proto_num = r->proto_num;
    SG(request_info).headers_only = r->headers_only;
    SG(sapi_headers).http_response_code = 200;
    if (r->authorization) {
        php_handle_auth_data(r->authorization);
    }
    if (PG(expose_php)) {
        sapi_add_header(SAPI_PHP_VERSION_HEADER, sizeof(SAPI_PHP_VERSION_HEADER) - 1, 1);
    }
    if (PG(output_handler) && PG(output_handler)[0]) {
        zval handler;
        ZVAL_STRING(&handler, PG(output_handler));
        php_output_start_user(&handler, 0, PHP_OUTPUT_HANDLER_STDFLAGS);
        zval_ptr_dtor(&handler);
    } else if (PG(output_buffering)) {
        php_output_start_user(NULL, PG(output_buffering) > 1 ? PG(output_buffering) : 0,
                              PHP_OUTPUT_HANDLER_STDFLAGS);
    } else if (PG(implicit_flush)) {
        php_output_set_implicit_flush(1);
    }

    /* Fresh superglobals: the previous request's arrays are released (the symbol table's
     * references go when the new ones replace them). $_SERVER and $_REQUEST are built on
     * first use at compile time, which has passed: build them now. */
    for (int i = 0; i < NUM_TRACK_VARS; i++) {
        zval_ptr_dtor(&PG(http_globals)[i]);
        ZVAL_UNDEF(&PG(http_globals)[i]);
    }
    php_hash_environment();
    zend_is_auto_global(ZSTR_KNOWN(ZEND_STR_AUTOGLOBAL_SERVER));
    zend_is_auto_global(ZSTR_KNOWN(ZEND_STR_AUTOGLOBAL_REQUEST));
    tphp_request_modules_call(1);

    zend_set_timeout(EG(timeout_seconds), 1);
    SG(sapi_started) = 1;
}

/* The save handler session_set_save_handler() registered. The session module's request
 * shutdown drops it, while session.save_handler stays "user" (ini changes, like the script's
 * objects, outlive a request in a worker script): a handler registered once, at boot or in a
 * first request (Symfony 5.4's shared session storage), would be missing from the next
 * request on, and session_start() would fail with "User session functions are not defined".
 * So it is kept across the reset, as the rest of the script's state is. */
typedef struct {
#ifdef TPHP_SESSION_HANDLER_KEPT
    zval names[PS_NUM_APIS];
    zend_string *class_name;
#else
    int unused;
#endif
} tphp_session_handler;

static void tphp_session_handler_keep(tphp_session_handler *kept)
{
#ifdef TPHP_SESSION_HANDLER_KEPT
    for (int i = 0; i < PS_NUM_APIS; i++) {
        ZVAL_COPY(&kept->names[i], &PS(mod_user_names).names[i]);
    }
    kept->class_name = PS(mod_user_class_name) ? zend_string_copy(PS(mod_user_class_name)) : NULL;
#else
    (void) kept;
#endif
}

/* After the session module's request shutdown: puts the kept handler back (ownership moves). */
static void tphp_session_handler_restore(tphp_session_handler *kept)
{
#ifdef TPHP_SESSION_HANDLER_KEPT
    for (int i = 0; i < PS_NUM_APIS; i++) {
        zval_ptr_dtor(&PS(mod_user_names).names[i]);
        ZVAL_COPY_VALUE(&PS(mod_user_names).names[i], &kept->names[i]);
    }
    if (PS(mod_user_class_name)) {
        zend_string_release(PS(mod_user_class_name));
    }
    PS(mod_user_class_name) = kept->class_name;
#else
    (void) kept;
#endif
}

/* Ends one request inside the running worker script: output flushed, headers sent, the
 * session written, uploaded files removed, request memory of the SAPI freed. */
static void tphp_worker_request_shutdown(void)
{
    zend_try {
        php_output_end_all();
    } zend_end_try();
    zend_try {
        php_header();
    } zend_end_try();
    tphp_session_handler kept_handler;
    tphp_session_handler_keep(&kept_handler);
    zend_try {
        tphp_request_modules_call(0);
    } zend_end_try();
    tphp_session_handler_restore(&kept_handler);
    /* session_start() made $_SESSION a plain global of the script: the next request, another
     * client's perhaps, must not find this one's session data before it starts its own. */
    zend_hash_str_del(&EG(symbol_table), "_SESSION", sizeof("_SESSION") - 1);
    zend_try {
        php_output_deactivate();
    } zend_end_try();
    /* The request body's temp stream would otherwise live until the script ends. */
    if (SG(request_info).request_body) {
        php_stream_close(SG(request_info).request_body);
        SG(request_info).request_body = NULL;
    }
    zend_try {
        sapi_deactivate();
    } zend_end_try();
    zend_unset_timeout();
    zend_set_memory_limit(PG(memory_limit));
    tphp_request_locale_reset();
    SG(request_info).request_method = NULL;
    SG(request_info).request_uri = NULL;
    SG(request_info).query_string = NULL;
    SG(request_info).path_translated = NULL;
    SG(request_info).content_type = NULL;
    SG(server_context) = worker_state.boot_context;
    current_request = worker_state.boot;
}

int tphp_worker_run(void *worker, void *boot_context, const tphp_request *boot,
                    tphp_script_end *end)
{
    worker_state.worker = worker;
    worker_state.boot_context = boot_context;
    worker_state.boot = boot;
    worker_state.in_request = 0;
    worker_state.idle_request = 1;
    int result = tphp_execute(boot_context, boot, NULL, end);
    if (worker_state.in_request) {
        /* The script ended inside a handler (fatal error, timeout): php_request_shutdown()
         * has sent that request what it produced, with PHP's 500. */
        tphp_rust_worker_end(worker, end);
    }
    memset(&worker_state, 0, sizeof worker_state);
    return result;
}
