#!/usr/bin/env bash
# Side-by-side load test: tokio_php against nginx + php-fpm 8.2 and Apache 2.4 + mod_php 8.2
# (prefork), on 127.0.0.1, same machine, same run. Every server is started once and kept
# running; each case then measures the servers in turn, round after round (A B C A B C …),
# so that every round gives pairs measured seconds apart. See bench/README.md.
#
#   bench/run.sh                    full run: 3 rounds of 10 s per case and server
#   bench/run.sh --smoke            1 round of 2 s: proves the script works (CI); no thresholds
#   DURATION=5 ROUNDS=2 bench/run.sh
#   CASES="hello framework" bench/run.sh    a subset (hello json static big framework wordpress app)
#   WORKERS=4 bench/run.sh          PHP workers on every side (default: one per core)
#   JIT=tracing bench/run.sh        OPcache's JIT on every side (default: off)
#   PHP_CONFIG=~/.cache/tokio_php/php8.2-debian-zts-r8-pgo2/bin/php-config REPORT_NAME=$(date +%F)-pgo2 bench/run.sh
#                                   tokio_php with another PHP build (here the PHP_PGO=1 one)
#   PHP_CONFIG=/usr/bin/php-config8.2 REPORT_NAME=2026-12-02-nts bench/run.sh
#                                   Debian's non-thread-safe PHP: PROCESSES=WORKERS, one worker each
#
# Writes bench/results/<date>.md (smoke: bench/results/smoke.md; REPORT_NAME.md when set) and
# the measurements beside it (.tsv).
# Every server started here is stopped by PID on exit; every load run is bounded in time.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
STARTED=$SECONDS
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
SMOKE=0
[ "${1:-}" = "--smoke" ] && SMOKE=1
full_or_smoke() { if [ "$SMOKE" = 1 ]; then echo "$2"; else echo "$1"; fi; }
DURATION=${DURATION:-$(full_or_smoke 10 2)}
ROUNDS=${ROUNDS:-$(full_or_smoke 3 1)}
WARMUP=${WARMUP:-$(full_or_smoke 1 0)}
CONNECTIONS=${CONNECTIONS:-50}
WP_CONNECTIONS=${WP_CONNECTIONS:-16}
WORKERS=${WORKERS:-$(nproc)}
JIT=${JIT:-off}
CASES=${CASES:-hello json static big framework wordpress app}
H2_CASES=${H2_CASES:-hello json static}
QUEUE=${TOKIO_QUEUE:-2048}
IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-$(full_or_smoke 10000 500)}

say() { printf '[bench] %s\n' "$*" >&2; }
# A run that stops keeps its work directory (logs, configurations) for a look.
KEEP_WORK=0
die() { say "error: $*"; KEEP_WORK=1; exit 1; }
has_case() { [[ " $CASES " == *" $1 "* ]]; }
# shellcheck source=bench/lib.sh
. bench/lib.sh

for c in $CASES; do
  case $c in hello | json | static | big | framework | wordpress | app) ;;
    *) die "CASES: unknown case '$c' (known: hello json static big framework wordpress app)" ;;
  esac
done
[[ $WORKERS =~ ^[1-9][0-9]*$ ]] || die "WORKERS must be a positive number, not '$WORKERS'"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive number, not '$ROUNDS'"
case $JIT in off | tracing | function) ;; *) die "JIT: 'off', 'tracing' or 'function', not '$JIT'" ;; esac

SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo

# --- tools ------------------------------------------------------------------------------
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v h2load >/dev/null || need+=(nghttp2-client)
command -v nginx >/dev/null || need+=(nginx)
command -v php-fpm8.2 >/dev/null || need+=(php8.2-fpm)
command -v php8.2 >/dev/null || need+=(php8.2-cli)
[ -x /usr/sbin/apache2 ] || need+=(apache2)
[ -e /usr/lib/apache2/modules/libphp8.2.so ] || need+=(libapache2-mod-php8.2)
command -v curl >/dev/null || need+=(curl)
command -v python3 >/dev/null || need+=(python3)
installed php8.2-opcache || need+=(php8.2-opcache)
# The extensions of tokio_php's default build (scripts/setup-php.sh) for php-fpm and mod_php
# too, so that every side loads the same set (the framework case needs mbstring).
for ext in bcmath bz2 curl gd gmp intl ldap mbstring mysql pgsql soap sqlite3 xml zip; do
  installed "php8.2-$ext" || need+=("php8.2-$ext")
done
if has_case wordpress; then
  installed wordpress || need+=(wordpress)
  # A Recommends of wordpress: without it (--no-install-recommends) the front page is empty.
  installed wordpress-theme-twentytwentythree || need+=(wordpress-theme-twentytwentythree)
  command -v mariadbd >/dev/null && command -v mariadb-install-db >/dev/null || need+=(mariadb-server-core)
fi
if [ "${#need[@]}" -gt 0 ]; then
  say "installing ${need[*]}"
  # Packages must not start their own services: this script starts what it measures.
  policy=/usr/sbin/policy-rc.d
  own_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# bench/run.sh: no service starts while it installs\nexit 101\n' |
      $SUDO tee "$policy" >/dev/null
    $SUDO chmod 755 "$policy"
    own_policy=1
    trap '$SUDO rm -f "$policy"' EXIT
  fi
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
  if [ "$own_policy" = 1 ]; then $SUDO rm -f "$policy"; fi
  trap - EXIT
fi

# --- tokio_php, release ----------------------------------------------------------------
say "building tokio_php (release)"
PHP_CONFIG=$(scripts/setup-php.sh)
# A non-thread-safe PHP (Debian's own: PHP_CONFIG=/usr/bin/php-config8.2) runs one worker
# per process: tokio_php then serves with PROCESSES=$WORKERS, php-fpm's model. Its build
# goes to its own target directory, so the default binary stays as it is.
if "$PHP_CONFIG" --configure-options | grep -q -- '--enable-zts'; then
  PHP_THREADS=ZTS TARGET_DIR=$ROOT/target
else
  PHP_THREADS=NTS TARGET_DIR=$ROOT/target/nts-release
fi
if [ "$PHP_THREADS" = NTS ] && has_case app; then
  say "NTS PHP: leaving out the app case (worker mode needs a thread-safe PHP)"
  CASES=$(sed 's/\bapp\b//; s/  */ /g; s/^ //; s/ $//' <<<"$CASES")
fi
PHP_CONFIG=$PHP_CONFIG CARGO_TARGET_DIR=$TARGET_DIR cargo build --release --bin tokio_php >&2
TOKIO_BIN=$TARGET_DIR/release/tokio_php

# --- work directory, cleanup -------------------------------------------------------------
WORK=$(mktemp -d /tmp/tokio_php_bench.XXXXXX)
chmod 755 "$WORK"
PIDS=()
WP_CONFIG=""
# A PID of PIDS is signalled only while it is still this script's child: one that has
# exited may since name another program's process.
ours() { [ "$(ps -o ppid= -p "$1" 2>/dev/null | tr -d ' ')" = "$$" ]; }
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do ours "$pid" && { kill "$pid" 2>/dev/null || true; }; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 1 50); do ours "$pid" || break; sleep 0.1; done
    if ours "$pid"; then kill -9 "$pid" 2>/dev/null || true; fi
  done
  if [ -n "$WP_CONFIG" ]; then $SUDO rm -f "$WP_CONFIG"; fi
  if [ "$KEEP_WORK" = 1 ]; then say "kept $WORK (remove it when done)"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Free TCP ports on 127.0.0.1, as many as asked (the kernel picks them; other programs on
# this machine keep theirs).
free_ports() {
  python3 - "$1" <<'PY'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}
read -r PORT_TOKIO PORT_TOKIO_WORKER PORT_TOKIO_WP PORT_NGINX PORT_NGINX_H2 PORT_NGINX_WP \
  PORT_APACHE PORT_APACHE_WP PORT_DB PORT_TOKIO_IDLE < <(free_ports 10)

# --- the application under test ---------------------------------------------------------
DOCROOT=$WORK/public
mkdir -p "$DOCROOT"
cat > "$DOCROOT/hello.php" <<'PHP'
<?php
echo "Hello, world!";
PHP
cat > "$DOCROOT/json.php" <<'PHP'
<?php
$rows = [];
for ($i = 0; $i < 100; $i++) {
    $rows[] = ['id' => $i, 'name' => "user $i", 'email' => "user$i@example.com", 'active' => $i % 2 === 0, 'score' => $i * 1.5];
}
header('Content-Type: application/json');
echo json_encode(['data' => $rows, 'count' => count($rows)]);
PHP
dd if=/dev/urandom bs=1024 count=80 status=none | base64 -w 100 > "$DOCROOT/static.txt"
truncate -s 102400 "$DOCROOT/static.txt"
cat > "$DOCROOT/big.php" <<'PHP'
<?php
$line = str_repeat('x', 1023) . "\n";
for ($i = 0; $i < 1024; $i++) {
    echo $line;
}
PHP
# The "framework" case: autoloader, container, router, templates; see the generator.
php8.2 bench/gen_framework.php "$DOCROOT"
# The "app" case: a bootstrap that loads 200 classes and builds a small container, run on
# every request classically (/app.php) and once per thread in worker mode (WORKER_SCRIPT).
mkdir -p "$DOCROOT/app/src"
for i in $(seq 1 200); do
  cat > "$DOCROOT/app/src/Service$i.php" <<PHP
<?php
namespace App;
final class Service$i
{
    private array \$config;
    public function __construct(array \$config) { \$this->config = \$config; }
    public function name(): string { return 'service$i'; }
    public function weight(): int { return (\$this->config['base'] ?? 0) + $i; }
}
PHP
done
cat > "$DOCROOT/app/bootstrap.php" <<'PHP'
<?php
// Autoloader, configuration and a container of 200 services: what a framework boots.
spl_autoload_register(static function (string $class): void {
    if (str_starts_with($class, 'App\\')) {
        require __DIR__ . '/src/' . substr($class, 4) . '.php';
    }
});
final class Container
{
    private array $factories = [];
    private array $instances = [];
    public function set(string $id, callable $factory): void { $this->factories[$id] = $factory; }
    public function get(string $id): object { return $this->instances[$id] ??= ($this->factories[$id])($this); }
    public function ids(): array { return array_keys($this->factories); }
}
$config = ['base' => 10, 'name' => 'bench', 'debug' => false];
$container = new Container();
for ($i = 1; $i <= 200; $i++) {
    $class = "App\Service$i";
    $container->set($class, static fn () => new $class($config));
    $container->get($class); // warm: every class is loaded and built at boot
}
return $container;
PHP
cat > "$DOCROOT/app/handle.php" <<'PHP'
<?php
return static function (Container $container): string {
    $sum = 0;
    foreach ($container->ids() as $id) {
        $sum += $container->get($id)->weight();
    }
    return json_encode(['services' => count($container->ids()), 'sum' => $sum]);
};
PHP
cat > "$DOCROOT/app.php" <<'PHP'
<?php
$container = require __DIR__ . '/app/bootstrap.php';
$handle = require __DIR__ . '/app/handle.php';
header('Content-Type: application/json');
echo $handle($container);
PHP
cat > "$WORK/worker.php" <<PHP
<?php
\$container = require '$DOCROOT/app/bootstrap.php';
\$handle = require '$DOCROOT/app/handle.php';
while (tokio_handle_request(static function () use (\$container, \$handle): void {
    header('Content-Type: application/json');
    echo \$handle(\$container);
})) {
}
PHP
# What each server's PHP runs with: the settings must agree; the version, SAPI and the
# number of extensions are shown.
cat > "$DOCROOT/ini.php" <<'PHP'
<?php
header('Content-Type: text/plain');
$status = function_exists('opcache_get_status') ? opcache_get_status(false) : false;
foreach (['opcache.enable', 'opcache.validate_timestamps', 'opcache.memory_consumption',
          'opcache.interned_strings_buffer', 'opcache.max_accelerated_files', 'opcache.jit',
          'opcache.jit_buffer_size'] as $key) {
    echo "$key=", ini_get($key), "\n";
}
echo 'opcache.active=', $status && $status['opcache_enabled'] ? 1 : 0, "\n";
echo 'opcache.jit.on=', $status && !empty($status['jit']['on']) ? 1 : 0, "\n";
foreach (['memory_limit', 'output_buffering', 'realpath_cache_size', 'max_execution_time',
          'error_reporting', 'zend.assertions'] as $key) {
    echo "php.$key=", ini_get($key), "\n";
}
echo 'info: PHP ', PHP_VERSION, ' ', php_sapi_name(), ', ', count(get_loaded_extensions()), ' extensions', "\n";
PHP
chmod -R a+rX "$WORK"

# --- PHP settings, the same on every side ---------------------------------------------------
# Debian's php.ini (php8.2-fpm's and libapache2-mod-php8.2's are the same file) for all
# three, and one OPcache block read last. tokio_php's PHP has its extensions built in and
# loads OPcache itself, so it gets php.ini + the block as one file (PHP_INI); php-fpm and
# mod_php keep Debian's php.ini and conf.d and read the block from a second scan directory.
mkdir -p "$WORK/php/scan"
{ echo "; bench/run.sh: the same OPcache settings on every side"; opcache_ini "$JIT"; } >"$WORK/php/scan/zz-bench.ini"
cat /etc/php/8.2/fpm/php.ini "$WORK/php/scan/zz-bench.ini" > "$WORK/php/tokio.ini"
chmod -R a+rX "$WORK/php"

# --- measuring ---------------------------------------------------------------------------
# load_figures LOAD_PID ROOT... prints, once the load generator LOAD_PID has finished,
# "peak_rss_mib php_user php_sys http_user http_sys": the largest RSS (MiB) of the servers'
# processes and their descendants, sampled every 250 ms, and the CPU time (clock ticks) they
# used meanwhile, by role (bench/procs.py: a ROOT is ROLE=PID; http is -1 when one process
# serves HTTP and runs PHP).
load_figures() { python3 bench/procs.py load "$@"; }
# per_request "peak php_user php_sys http_user http_sys" REQUESTS prints the peak and the
# CPU times in microseconds per request (-1 where not measured).
per_request() {
  awk -v n="${2:-0}" -v hz="$(getconf CLK_TCK)" '{
    printf "%d", $1
    for (i = 2; i <= 5; i++) printf " %d", ($i < 0 || n <= 0) ? -1 : $i * 1e6 / hz / n
    print ""
  }' <<<"$1"
}

# measure_wrk URL CONNECTIONS HOST ROOT... prints "rps p50_ms p99_ms errors peak_rss_mib
# php_user_us php_sys_us http_user_us http_sys_us". Every server (PIDS) is idle first (settle).
measure_wrk() {
  local url=$1 conns=$2 host=$3 out=$WORK/wrk.out
  shift 3
  settle "${PIDS[@]}"
  local args=(-t2 -c"$conns" -d"${DURATION}s" --timeout 10s --latency)
  [ -n "$host" ] && args+=(-H "Host: $host")
  wrk "${args[@]}" "$url" >"$out" 2>&1 &
  local load=$! figures rps p50 p99 errors requests
  figures=$(load_figures "$load" "$@")
  wait "$load" || true
  rps=$(awk '/^Requests\/sec:/ {printf "%d", $2}' "$out")
  p50=$(awk '$1=="50%" {print $2}' "$out")
  p99=$(awk '$1=="99%" {print $2}' "$out")
  errors=$(awk '/Non-2xx or 3xx responses:/ {n+=$NF} /Socket errors:/ {gsub(",",""); n+=$4+$6+$8+$10} END {print n+0}' "$out")
  requests=$(awk '/ requests in / {print $1}' "$out")
  echo "${rps:-0} $(to_ms "${p50:-0}") $(to_ms "${p99:-0}") ${errors:-0} $(per_request "$figures" "$requests")"
}

# measure_h2 URL ROOT... (HTTP/2 cleartext, prior knowledge) prints the same fields, with
# h2load's mean time per request for p50 and none for p99.
measure_h2() {
  local url=$1 out=$WORK/h2.out
  shift
  settle "${PIDS[@]}"
  h2load -c "$CONNECTIONS" -m 10 -t 2 -D "$DURATION" "$url" >"$out" 2>&1 &
  local load=$! figures rps mean errors requests
  figures=$(load_figures "$load" "$@")
  wait "$load" || true
  rps=$(awk '/^finished in/ {gsub(",",""); for (i=1;i<=NF;i++) if ($(i+1)=="req/s") printf "%d", $i}' "$out")
  mean=$(awk '/^time for request:/ {print $6}' "$out")
  errors=$(awk '/^requests:/ {for (i=1;i<=NF;i++) if ($(i+1)=="failed," || $(i+1)=="errored,") n+=$i} END {print n+0}' "$out")
  requests=$(awk '/^requests:/ {for (i=1;i<=NF;i++) if ($(i+1)=="done,") print $i}' "$out")
  echo "${rps:-0} $(to_ms "${mean:-0}") 0 ${errors:-0} $(per_request "$figures" "$requests")"
}

# wrk/h2load durations (123.45us, 1.2ms, 2.01s) in milliseconds.


RESULTS=$WORK/results.tsv
: >"$RESULTS"
# record CASE PROTOCOL CONNECTIONS SERVER ROUND "rps p50 p99 errors rss php_user php_sys http_user http_sys"
record() {
  local fields
  read -r -a fields <<<"$6"
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "$(IFS=$'\t'; echo "${fields[*]}")" >>"$RESULTS"
}

# --- WordPress: MariaDB and the site, once ------------------------------------------------
if has_case wordpress; then
  say "MariaDB on 127.0.0.1:$PORT_DB, data in $WORK/db"
  wordpress_site "$WORK" "$PORT_DB" php8.2 bench
  say "WordPress at Host $WP_HOST: theme $WP_SITE"
fi

# --- the servers, all started once -----------------------------------------------------------
TOKIO_SCAN_DIR=()
if [ "$PHP_THREADS" = ZTS ]; then
  TOKIO_PROCESSES=1 TOKIO_WORKERS=$WORKERS
else
  TOKIO_PROCESSES=$WORKERS TOKIO_WORKERS=1
  # Debian's embed scan directory (its 10-opcache.ini sets opcache.jit=off), then the bench
  # lines last, as php-fpm gets them.
  TOKIO_SCAN_DIR=("PHP_INI_SCAN_DIR=:$WORK/php/scan")
fi
start_tokio() { # start_tokio PORT LOG ENV... ; sets TOKIO_STARTED
  local port=$1 log=$2
  shift 2
  env LISTEN_ADDR=127.0.0.1:$port PROCESSES=$TOKIO_PROCESSES PHP_WORKERS=$TOKIO_WORKERS QUEUE_CAPACITY=$QUEUE \
    PHP_INI=$WORK/php/tokio.ini "${TOKIO_SCAN_DIR[@]}" LOG_LEVEL=warn "$@" "$TOKIO_BIN" >"$WORK/$log" 2>&1 &
  TOKIO_STARTED=$!; PIDS+=("$TOKIO_STARTED")
}
say "tokio_php, $WORKERS PHP workers ($PHP_THREADS: PROCESSES=$TOKIO_PROCESSES, PHP_WORKERS=$TOKIO_WORKERS)"
# h2load keeps CONNECTIONS x 10 requests in flight: a queue that holds them all, as
# php-fpm's listen backlog does (the default, workers x 100, would answer some with 503).
start_tokio "$PORT_TOKIO" tokio.log DOCUMENT_ROOT="$DOCROOT"
TOKIO_PID=$TOKIO_STARTED
TOKIO_WORKER_PID=""
if has_case app; then
  start_tokio "$PORT_TOKIO_WORKER" tokio-worker.log DOCUMENT_ROOT="$DOCROOT" \
    WORKER_SCRIPT="$WORK/worker.php" WORKER_MATCH=/worker
  TOKIO_WORKER_PID=$TOKIO_STARTED
fi
if has_case wordpress; then
  start_tokio "$PORT_TOKIO_WP" tokio-wp.log DOCUMENT_ROOT=/usr/share/wordpress
  TOKIO_WP_PID=$TOKIO_STARTED
fi

say "php-fpm, pm=static, $WORKERS children"
cat >"$WORK/fpm.conf" <<EOF
[global]
pid = $WORK/fpm.pid
error_log = $WORK/fpm.log
daemonize = no
[bench]
user = www-data
group = www-data
listen = $WORK/fpm.sock
listen.owner = www-data
listen.group = www-data
pm = static
pm.max_children = $WORKERS
php_admin_flag[log_errors] = on
EOF
PHP_INI_SCAN_DIR=/etc/php/8.2/fpm/conf.d:$WORK/php/scan \
  php-fpm8.2 -F -c /etc/php/8.2/fpm/php.ini -y "$WORK/fpm.conf" >"$WORK/fpm.out" 2>&1 &
FPM_PID=$!; PIDS+=("$FPM_PID")
for _ in $(seq 1 50); do [ -S "$WORK/fpm.sock" ] && break; sleep 0.1; done

say "nginx"
cat >"$WORK/nginx-php.conf" <<EOF
location ~ \.php\$ {
  try_files \$uri =404;
  include /etc/nginx/fastcgi_params;
  fastcgi_param SCRIPT_FILENAME \$document_root\$fastcgi_script_name;
  fastcgi_pass unix:$WORK/fpm.sock;
  fastcgi_keep_conn on;
}
EOF
cat >"$WORK/nginx.conf" <<EOF
user www-data;
worker_processes auto;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 1024; }
http {
  include /etc/nginx/mime.types;
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 100000;
  server {
    listen 127.0.0.1:$PORT_NGINX;
    listen 127.0.0.1:$PORT_NGINX_H2 http2;
    root $DOCROOT;
    location / { try_files \$uri =404; }
    include $WORK/nginx-php.conf;
  }
  server {
    listen 127.0.0.1:$PORT_NGINX_WP;
    # PHP's SERVER_NAME, which WordPress compares with its own host (as the others set it).
    server_name ${WP_HOST:-_};
    root /usr/share/wordpress;
    index index.php;
    location / { try_files \$uri \$uri/ /index.php?\$args; }
    include $WORK/nginx-php.conf;
  }
}
EOF
nginx -c "$WORK/nginx.conf" -g 'daemon off;' >"$WORK/nginx.out" 2>&1 &
NGINX_PID=$!; PIDS+=("$NGINX_PID")

say "Apache + mod_php, prefork, $WORKERS processes"
mkdir -p "$WORK/apache"
APACHE_KEEPALIVE_REQUESTS=100
cat >"$WORK/apache.conf" <<EOF
# bench/run.sh: Apache 2.4 prefork + mod_php, Debian's modules, its own files in $WORK.
ServerRoot $WORK/apache
DefaultRuntimeDir $WORK/apache
PidFile $WORK/apache.pid
ErrorLog $WORK/apache-error.log
LogLevel warn
ServerName 127.0.0.1
LoadModule mpm_prefork_module /usr/lib/apache2/modules/mod_mpm_prefork.so
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
LoadModule mime_module /usr/lib/apache2/modules/mod_mime.so
LoadModule dir_module /usr/lib/apache2/modules/mod_dir.so
LoadModule php_module /usr/lib/apache2/modules/libphp8.2.so
# Else mod_php would read a php.ini in the working directory first (this repository has one).
PHPIniDir /etc/php/8.2/apache2
User www-data
Group www-data
StartServers $WORKERS
MinSpareServers 1
MaxSpareServers $WORKERS
ServerLimit $WORKERS
MaxRequestWorkers $WORKERS
MaxConnectionsPerChild 0
# Debian's apache2.conf values
KeepAlive On
MaxKeepAliveRequests $APACHE_KEEPALIVE_REQUESTS
KeepAliveTimeout 5
# Not Debian's default (Off): static files take the kernel's sendfile path, as nginx's do.
EnableSendfile On
TypesConfig /etc/mime.types
DirectoryIndex index.php index.html
<FilesMatch "\.php\$">
  SetHandler application/x-httpd-php
</FilesMatch>
<Directory />
  AllowOverride None
  Require all granted
</Directory>
Listen 127.0.0.1:$PORT_APACHE
Listen 127.0.0.1:$PORT_APACHE_WP
<VirtualHost 127.0.0.1:$PORT_APACHE>
  DocumentRoot $DOCROOT
</VirtualHost>
<VirtualHost 127.0.0.1:$PORT_APACHE_WP>
  DocumentRoot /usr/share/wordpress
</VirtualHost>
EOF
# In a session of its own: on shutdown Apache signals its whole process group, which
# would otherwise be this script's.
PHP_INI_SCAN_DIR=/etc/php/8.2/apache2/conf.d:$WORK/php/scan \
  setsid /usr/sbin/apache2 -f "$WORK/apache.conf" -DFOREGROUND >"$WORK/apache.out" 2>&1 &
APACHE_PID=$!; PIDS+=("$APACHE_PID")

for port in $PORT_TOKIO ${TOKIO_WORKER_PID:+$PORT_TOKIO_WORKER} $PORT_NGINX $PORT_NGINX_H2 $PORT_APACHE; do wait_port "$port"; done
has_case wordpress && for port in $PORT_TOKIO_WP $PORT_NGINX_WP $PORT_APACHE_WP; do wait_port "$port"; done

# --- the same PHP settings on every side: checked, not assumed ------------------------------
INI_REPORT=""
ini_first=""
for server in tokio fpm apache; do
  case $server in
    tokio) port=$PORT_TOKIO label=tokio_php ;;
    fpm) port=$PORT_NGINX label=nginx+php-fpm ;;
    apache) port=$PORT_APACHE label=apache+mod_php ;;
  esac
  ini=$(curl -fsS --retry 20 --retry-connrefused --retry-delay 0 "http://127.0.0.1:$port/ini.php") \
    || die "$label did not answer /ini.php"
  settings=$(grep -v '^info:' <<<"$ini" | tr '\n' ' ')
  [ -z "$ini_first" ] && ini_first=$settings
  [ "$settings" = "$ini_first" ] || die "PHP settings differ: tokio_php has '$ini_first', $label has '$settings'"
  INI_REPORT+="- $label: $(grep '^info:' <<<"$ini" | sed 's/^info: //')"$'\n'
done
grep -q 'opcache.active=1' <<<"$ini_first" || die "OPcache is not active: $ini_first"
say "PHP settings agree: $ini_first"

# --- the cases -----------------------------------------------------------------------------
# Each case: which servers, the path, the connections, and (WordPress) the Host to send.
case_servers() {
  case $1 in
    app) echo "tokio worker" ;;
    *) echo "tokio fpm apache" ;;
  esac
}
case_path() {
  case $1 in
    hello) echo /hello.php ;; json) echo /json.php ;; static) echo /static.txt ;;
    big) echo /big.php ;; framework) echo '/fw.php?route=/catalogue20/3' ;;
    wordpress) echo / ;; app) echo /app.php ;;
  esac
}
case_connections() { if [ "$1" = wordpress ]; then echo "$WP_CONNECTIONS"; else echo "$CONNECTIONS"; fi; }
label_of() {
  case $1 in
    tokio) echo tokio_php ;; worker) echo "tokio_php worker" ;;
    fpm) echo nginx+php-fpm ;; apache) echo apache+mod_php ;;
  esac
}
# target SERVER CASE sets URL, HOST_HEADER and SERVER_PIDS (the processes measured, as
# bench/procs.py's ROLE=PID: which of them run PHP and which serve HTTP).
target() {
  local server=$1 case=$2 port path
  path=$(case_path "$case")
  HOST_HEADER=""
  case $server in
    tokio) port=$PORT_TOKIO; SERVER_PIDS="split=$TOKIO_PID" ;;
    worker) port=$PORT_TOKIO_WORKER; SERVER_PIDS="split=$TOKIO_WORKER_PID"; path=/worker ;;
    fpm) port=$PORT_NGINX; SERVER_PIDS="http=$NGINX_PID php=$FPM_PID" ;;
    apache) port=$PORT_APACHE; SERVER_PIDS="both=$APACHE_PID" ;;
  esac
  if [ "$case" = wordpress ]; then
    case $server in
      tokio) port=$PORT_TOKIO_WP; SERVER_PIDS="split=$TOKIO_WP_PID" ;;
      fpm) port=$PORT_NGINX_WP ;;
      apache) port=$PORT_APACHE_WP ;;
    esac
    HOST_HEADER=$WP_HOST:$port
  fi
  URL=http://127.0.0.1:$port$path
}

# One request per server: it must be a 200, and the bodies should be the same (WordPress's
# carry the port they were asked on, taken out before comparing).
BODIES_REPORT=""
check_case() {
  local case=$1 server first="" sizes="" code differs=""
  for server in $(case_servers "$case"); do
    target "$server" "$case"
    code=$(curl -sS -o "$WORK/body.$server" -w '%{http_code}' ${HOST_HEADER:+-H "Host: $HOST_HEADER"} "$URL") || code=000
    [ "$code" = 200 ] || die "$case: $(label_of "$server") answered $code to $URL (see the logs in $WORK)"
    [ "$case" = wordpress ] && sed -i "s/$WP_HOST:[0-9]*/$WP_HOST/g" "$WORK/body.$server"
    # Equal bodies prove nothing if they are all empty (WordPress without its theme answers
    # 200 with nothing): the HTML cases must be whole documents.
    if [[ " framework wordpress " == *" $case "* ]] && ! grep -q '</html>' "$WORK/body.$server"; then
      die "$case: $(label_of "$server") answered 200 with $(wc -c <"$WORK/body.$server") B and no </html> to $URL: not the page this case measures (see the logs in $WORK)"
    fi
    sizes+="$(label_of "$server") $(wc -c <"$WORK/body.$server") B, "
    if [ -z "$first" ]; then
      first=$server
    elif ! cmp -s "$WORK/body.$first" "$WORK/body.$server"; then
      differs+="$(diff "$WORK/body.$first" "$WORK/body.$server" | head -4 | cut -c1-160 | sed 's/^/    /' || true)"$'\n'
    fi
  done
  if [ -z "$differs" ]; then
    BODIES_REPORT+="- $case: the same body from every server (${sizes%, })"$'\n'
  else
    BODIES_REPORT+="- $case: **the bodies differ** (${sizes%, }); first lines of the diff against $(label_of "$first"):"$'\n\n'"$differs"$'\n'
  fi
}

warm_up() {
  local case=$1 server
  [ "$WARMUP" = 0 ] && return 0
  for server in $(case_servers "$case"); do
    target "$server" "$case"
    wrk -t2 -c"$(case_connections "$case")" -d"${WARMUP}s" ${HOST_HEADER:+-H "Host: $HOST_HEADER"} "$URL" >/dev/null 2>&1 || true
  done
}

for case in $CASES; do
  check_case "$case"
  warm_up "$case"
  conns=$(case_connections "$case")
  for round in $(seq 1 "$ROUNDS"); do
    line="$case, round $round/$ROUNDS:"
    for server in $(case_servers "$case"); do
      target "$server" "$case"
      # shellcheck disable=SC2086 # SERVER_PIDS is a list of ROLE=PID
      result=$(measure_wrk "$URL" "$conns" "$HOST_HEADER" $SERVER_PIDS)
      record "$case" h1 "$conns" "$(label_of "$server")" "$round" "$result"
      line+=" $(label_of "$server") ${result%% *}"
    done
    say "$line req/s"
  done
  if [[ " $H2_CASES " == *" $case "* ]]; then
    for round in $(seq 1 "$ROUNDS"); do
      line="$case h2c, round $round/$ROUNDS:"
      for server in tokio fpm; do
        target "$server" "$case"
        [ "$server" = fpm ] && URL=${URL/:$PORT_NGINX\//:$PORT_NGINX_H2/}
        # shellcheck disable=SC2086
        result=$(measure_h2 "$URL" $SERVER_PIDS)
        record "$case" h2 "$CONNECTIONS" "$(label_of "$server")" "$round" "$result"
        line+=" $(label_of "$server") ${result%% *}"
      done
      say "$line req/s"
    done
  fi
done

# --- tokio_php: what idle keep-alive connections cost ----------------------------------------
# IDLE_CONNECTIONS connections each send one request and then sit idle; the RSS difference
# per connection is the figure (issue 14's target: 16 KiB or less per idle HTTP/1.1 one).
ulimit -n $((IDLE_CONNECTIONS + 1024)) 2>/dev/null \
  || die "cannot raise the open-file limit to $((IDLE_CONNECTIONS + 1024)); set IDLE_CONNECTIONS lower"
say "tokio_php, $IDLE_CONNECTIONS idle connections"
start_tokio "$PORT_TOKIO_IDLE" tokio-idle.log DOCUMENT_ROOT="$DOCROOT" \
  MAX_CONNECTIONS=$((IDLE_CONNECTIONS + 100))
wait_port "$PORT_TOKIO_IDLE"
IDLE_RESULT=$(timeout 300 python3 bench/idle_connections.py --port "$PORT_TOKIO_IDLE" --pid "$TOKIO_STARTED" \
  --connections "$IDLE_CONNECTIONS" --path /hello.php --warmup "$(full_or_smoke 2000 50)")
say "$IDLE_RESULT"
kill "$TOKIO_STARTED"

# --- report ------------------------------------------------------------------------------
DATE=$(date -u +%Y-%m-%d)
mkdir -p bench/results
REPORT=bench/results/${REPORT_NAME:-$(full_or_smoke "$DATE" smoke)}.md
# The measurements themselves beside the report: `python3 bench/report.py X.tsv CORES` prints
# its tables again (with a newer report.py, too).
cp "$RESULTS" "${REPORT%.md}.tsv"
{
  echo "# tokio_php benchmark, $DATE"
  echo
  echo "Mode: $(full_or_smoke full "smoke (figures not meaningful)"); $ROUNDS round(s) of ${DURATION} s per case and server; took $((SECONDS - STARTED)) s."
  echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr);"
  echo "load average (1, 5, 15 min) at the start $LOAD_START, at the end $(cut -d' ' -f1-3 /proc/loadavg)."
  echo "The load generator shares the cores with the servers."
  echo
  echo "Versions: tokio_php $(awk -F'"' '/^version/ {print $2; exit}' Cargo.toml) ($(git rev-parse --short HEAD)) with PHP $("$PHP_CONFIG" --version) ($PHP_THREADS, embed; build $("$PHP_CONFIG" --prefix | sed 's|^/usr$|Debian'"'"'s libphp8.2-embed|; s|.*/||'));"
  echo "$(nginx -v 2>&1 | sed 's|nginx version: ||') with PHP-FPM $(php-fpm8.2 -v | head -1 | awk '{print $2}');"
  echo "$(/usr/sbin/apache2 -v | sed -n 's/^Server version: //p') with mod_php $(dpkg-query -W -f='${Version}' libapache2-mod-php8.2);"
  has_case wordpress && echo "WordPress $(sed -n "s/^\$wp_version = '\(.*\)';/\1/p" /usr/share/wordpress/wp-includes/version.php) (Debian's package) on MariaDB $(mariadbd --version | awk '{print $3}' | cut -d- -f1);"
  echo "wrk $(wrk -v 2>&1 | head -1 | awk '{print $2}'), $(h2load --version | head -1)."
  echo
  echo "## Method"
  echo
  echo "- Every server runs for the whole run; each case measures them one after the other,"
  echo "  round after round ($(for s in $(case_servers hello); do printf '%s, ' "$(label_of "$s")"; done)then again), so each round"
  echo "  gives one tokio_php ÷ peer pair measured seconds apart. The ratio is the median of the"
  echo "  pairs, with its spread; each side's figures are medians over the rounds."
  echo "- Load: wrk -t2 -c$CONNECTIONS -d${DURATION}s --latency, HTTP/1.1 keep-alive (WordPress: -c$WP_CONNECTIONS);"
  echo "  h2load -c$CONNECTIONS -m10 -t2 -D$DURATION over h2c for ${H2_CASES// /, } against nginx."
  echo "  $([ "$WARMUP" = 0 ] && echo "One request per server before a case" || echo "One request and a ${WARMUP} s wrk warm-up per server before a case")."
  echo "  Before every measurement all servers are idle (under 20 ms of CPU in 0.5 s, waited for"
  echo "  at most 10 s): php-fpm and Apache go on serving what was queued when the load stopped."
  if [ "$PHP_THREADS" = ZTS ]; then
    echo "- Workers: $WORKERS PHP workers on every side. tokio_php: PHP_WORKERS=$WORKERS threads,"
    echo "  PROCESSES=1 (the default: a supervisor and one serving process), QUEUE_CAPACITY=$QUEUE."
  else
    echo "- Workers: $WORKERS PHP workers on every side. tokio_php (NTS PHP): PROCESSES=$WORKERS serving"
    echo "  processes of one PHP worker each, QUEUE_CAPACITY=$QUEUE."
  fi
  echo "  php-fpm: pm=static, pm.max_children=$WORKERS, behind nginx (worker_processes auto, FastCGI"
  echo "  over a Unix socket, fastcgi_keep_conn on). Apache: prefork, StartServers = ServerLimit ="
  echo "  MaxRequestWorkers = $WORKERS, KeepAlive On, MaxKeepAliveRequests $APACHE_KEEPALIVE_REQUESTS, KeepAliveTimeout 5, EnableSendfile On."
  echo "- PHP: Debian's php.ini (/etc/php/8.2/fpm/php.ini, the same file as mod_php's) on every side,"
  echo "  then the same OPcache lines: $(opcache_ini "$JIT" | paste -sd, | sed 's/,/, /g') (JIT $JIT)."
  echo "  Read back from each server before measuring (the run stops if they differ):"
  echo "  \`$(sed 's/ $//' <<<"$ini_first")\`"
  echo "$INI_REPORT" | sed '/^$/d; s/^/  /'
  echo "- Responses, one request per server before measuring:"
  printf "%s" "$BODIES_REPORT" | sed "s/^/  /"
  echo "- Cases: \`hello.php\` (echo a string); \`json.php\` (100 rows, json_encode); a 100 KiB static"
  echo "  file; \`big.php\` (a 1 MiB response); framework: bench/gen_framework.php (an autoloader over"
  echo "  295 classes, a container autowiring 200 services, a router, a template with loops and"
  echo "  escaping, 28 KiB of HTML), classic mode; wordpress: the front page of Debian's WordPress,"
  echo "  default theme, 6 posts, MariaDB on 127.0.0.1, no cron, no object cache; app: 200 classes"
  echo "  and a container, tokio_php classic against the same app booted once per thread in"
  echo "  worker mode."
  echo
  python3 bench/report.py "$RESULTS" "$(nproc)"
  echo
  echo "## Idle connections"
  echo
  echo "bench/idle_connections.py, target: 16 KiB or less each:"
  echo
  echo "$IDLE_RESULT"
} >"$REPORT"
say "wrote $REPORT in $((SECONDS - STARTED)) s"
cat "$REPORT"
