#!/usr/bin/env bash
# Side-by-side load test: tokio_php against nginx + php-fpm 8.2 (pm=static, the best of
# 2, 4 and 8 children) and PHP's built-in server, on 127.0.0.1, same machine, same run.
#
#   bench/run.sh               full run (10 s per case), writes bench/results/<date>.md
#   bench/run.sh --smoke       2 s per case, one php-fpm size, no thresholds (CI)
#   DURATION=20 bench/run.sh   longer cases
#
# Every server started here is stopped by PID on exit. Load runs are bounded in time.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
SMOKE=0
[ "${1:-}" = "--smoke" ] && SMOKE=1
DURATION=${DURATION:-$([ "$SMOKE" = 1 ] && echo 2 || echo 10)}
CONNECTIONS=${CONNECTIONS:-50}
FPM_SIZES=${FPM_SIZES:-$([ "$SMOKE" = 1 ] && echo "4" || echo "2 4 8")}
PORT_TOKIO=18080
PORT_NGINX=18081
PORT_NGINX_H2=18082
PORT_BUILTIN=18083

say() { printf '[bench] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

# --- tools ------------------------------------------------------------------------------
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v h2load >/dev/null || need+=(nghttp2-client)
command -v nginx >/dev/null || need+=(nginx)
command -v php-fpm8.2 >/dev/null || need+=(php8.2-fpm)
command -v php8.2 >/dev/null || need+=(php8.2-cli)
command -v pstree >/dev/null || need+=(psmisc)
command -v curl >/dev/null || need+=(curl)
command -v python3 >/dev/null || need+=(python3)
dpkg-query -W -f='${Status}' php8.2-opcache 2>/dev/null | grep -q "install ok installed" || need+=(php8.2-opcache)
if [ "${#need[@]}" -gt 0 ]; then
  say "installing ${need[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq >&2
  # Packages must not start their own services: this script starts what it measures.
  echo exit 101 | $SUDO tee /usr/sbin/policy-rc.d >/dev/null; $SUDO chmod +x /usr/sbin/policy-rc.d
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >&2
fi

# --- tokio_php, release ----------------------------------------------------------------
say "building tokio_php (release)"
PHP_CONFIG=$(scripts/setup-php.sh)
PHP_CONFIG=$PHP_CONFIG cargo build --release --bin tokio_php >&2
TOKIO_BIN=$ROOT/target/release/tokio_php

# --- the application under test ---------------------------------------------------------
WORK=$(mktemp -d /tmp/tokio_php_bench.XXXXXX)
chmod 755 "$WORK"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  sleep 0.3
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

DOCROOT=$WORK/public
mkdir -p "$DOCROOT/inc"
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
for i in $(seq 1 50); do
  printf '<?php\nfunction helper_%d($x) { return $x + %d; }\n' "$i" "$i" > "$DOCROOT/inc/f$i.php"
done
cat > "$DOCROOT/includes.php" <<'PHP'
<?php
$sum = 0;
for ($i = 1; $i <= 50; $i++) {
    require __DIR__ . "/inc/f$i.php";
    $sum = ("helper_$i")($sum);
}
echo "sum=$sum";
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
    return json_encode(['services' => count($container->ids()), 'sum' => $sum, 'path' => $_SERVER['REQUEST_URI']]);
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
chmod -R a+rX "$WORK"

CASES=("hello:/hello.php" "json:/json.php" "includes:/includes.php" "static:/static.txt" "big:/big.php" "app:/app.php")

# --- measuring ---------------------------------------------------------------------------
# Sum of VmRSS (KiB) over a process and its descendant processes (threads share theirs).
tree_rss() {
  local pids
  pids=$(pstree -pT "$1" 2>/dev/null | grep -o '([0-9]*)' | tr -d '()' || echo "$1")
  local total=0
  for p in $pids; do
    local kb
    kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
    total=$((total + ${kb:-0}))
  done
  echo "$total"
}

# Runs wrk and prints "rps p50_ms p99_ms errors peak_rss_mib".
measure_wrk() {
  local url=$1 pid=$2 out peak=0
  out=$WORK/wrk.out
  wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --timeout 10s --latency "$url" >"$out" 2>&1 &
  local wrk_pid=$!
  while kill -0 "$wrk_pid" 2>/dev/null; do
    local rss; rss=$(tree_rss "$pid"); [ "$rss" -gt "$peak" ] && peak=$rss
    sleep 0.25
  done
  wait "$wrk_pid" || true
  local rps p50 p99 errors
  rps=$(awk '/^Requests\/sec:/ {printf "%d", $2}' "$out")
  p50=$(awk '$1=="50%" {print $2}' "$out")
  p99=$(awk '$1=="99%" {print $2}' "$out")
  errors=$(awk '/Non-2xx or 3xx responses:/ {n+=$NF} /Socket errors:/ {gsub(",",""); n+=$4+$6+$8+$10} END {print n+0}' "$out")
  echo "${rps:-0} $(to_ms "${p50:-0}") $(to_ms "${p99:-0}") ${errors:-0} $((peak / 1024))"
}

# Runs h2load (HTTP/2 cleartext, prior knowledge) and prints "rps mean_ms errors".
measure_h2() {
  local url=$1 out=$WORK/h2.out
  h2load -c "$CONNECTIONS" -m 10 -t 2 -D "$DURATION" "$url" >"$out" 2>&1 || true
  local rps mean errors
  rps=$(awk '/^finished in/ {gsub(",",""); for (i=1;i<=NF;i++) if ($(i+1)=="req/s") printf "%d", $i}' "$out")
  mean=$(awk '/^time for request:/ {print $6}' "$out")
  errors=$(awk '/^requests:/ {for (i=1;i<=NF;i++) if ($(i+1)=="failed," || $(i+1)=="errored,") n+=$i} END {print n+0}' "$out")
  echo "${rps:-0} $(to_ms "${mean:-0}") ${errors:-0}"
}

# wrk/h2load durations (123.45us, 1.2ms, 2.01s) in milliseconds.
to_ms() {
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) { sub("us","",v); printf "%.2f", v/1000 }
    else if (v ~ /ms$/) { sub("ms","",v); printf "%.2f", v }
    else if (v ~ /s$/) { sub("s","",v); printf "%.2f", v*1000 }
    else printf "%.2f", v }'
}

wait_port() {
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  say "nothing listens on port $1"; return 1
}

stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# A server already on one of the ports would be measured instead of ours: refuse.
for port in $PORT_TOKIO $PORT_NGINX; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    die "port $port on 127.0.0.1 is in use by another process; stop it or free the port"
  fi
done

RESULTS=$WORK/results.tsv
: >"$RESULTS"
record() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$RESULTS"; }

# --- tokio_php ---------------------------------------------------------------------------
say "tokio_php"
# h2load keeps CONNECTIONS x 10 requests in flight: a queue that holds them all, as
# php-fpm's listen backlog does (the default, workers x 100, would answer some with 503).
LISTEN_ADDR=127.0.0.1:$PORT_TOKIO DOCUMENT_ROOT=$DOCROOT PHP_WORKERS=${TOKIO_WORKERS:-0} \
  QUEUE_CAPACITY=${TOKIO_QUEUE:-2048} LOG_LEVEL=warn "$TOKIO_BIN" >"$WORK/tokio.log" 2>&1 &
TOKIO_PID=$!; PIDS+=("$TOKIO_PID")
wait_port $PORT_TOKIO
for c in "${CASES[@]}"; do
  name=${c%%:*}; path=${c#*:}
  curl -fsS -o /dev/null "http://127.0.0.1:$PORT_TOKIO$path"
  record tokio_php "$name" "$(measure_wrk "http://127.0.0.1:$PORT_TOKIO$path" "$TOKIO_PID")"
  record tokio_php "$name-h2" "$(measure_h2 "http://127.0.0.1:$PORT_TOKIO$path")"
done
stop "$TOKIO_PID"

# --- tokio_php, worker mode: the "app" case booted once per thread ------------------------
say "tokio_php worker mode"
LISTEN_ADDR=127.0.0.1:$PORT_TOKIO DOCUMENT_ROOT=$DOCROOT PHP_WORKERS=${TOKIO_WORKERS:-0} \
  QUEUE_CAPACITY=${TOKIO_QUEUE:-2048} WORKER_SCRIPT=$WORK/worker.php WORKER_MATCH=/worker \
  LOG_LEVEL=warn "$TOKIO_BIN" >"$WORK/tokio-worker.log" 2>&1 &
TOKIO_PID=$!; PIDS+=("$TOKIO_PID")
wait_port $PORT_TOKIO
curl -fsS -o /dev/null "http://127.0.0.1:$PORT_TOKIO/worker"
record "tokio_php worker" app "$(measure_wrk "http://127.0.0.1:$PORT_TOKIO/worker" "$TOKIO_PID")"
stop "$TOKIO_PID"

# --- tokio_php: what idle keep-alive connections cost ----------------------------------------
# IDLE_CONNECTIONS connections each send one request and then sit idle; the RSS difference
# per connection is the figure (issue 14's target: 16 KiB or less per idle HTTP/1.1 one).
IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-$([ "$SMOKE" = 1 ] && echo 500 || echo 10000)}
ulimit -n $((IDLE_CONNECTIONS + 1024)) 2>/dev/null \
  || die "cannot raise the open-file limit to $((IDLE_CONNECTIONS + 1024)); set IDLE_CONNECTIONS lower"
say "tokio_php, $IDLE_CONNECTIONS idle connections"
LISTEN_ADDR=127.0.0.1:$PORT_TOKIO DOCUMENT_ROOT=$DOCROOT PHP_WORKERS=${TOKIO_WORKERS:-0} \
  MAX_CONNECTIONS=$((IDLE_CONNECTIONS + 100)) LOG_LEVEL=warn \
  "$TOKIO_BIN" >"$WORK/tokio-idle.log" 2>&1 &
TOKIO_PID=$!; PIDS+=("$TOKIO_PID")
wait_port $PORT_TOKIO
IDLE_RESULT=$(timeout 300 python3 bench/idle_connections.py --port $PORT_TOKIO --pid "$TOKIO_PID" \
  --connections "$IDLE_CONNECTIONS" --path /hello.php --warmup "$([ "$SMOKE" = 1 ] && echo 50 || echo 2000)")
say "$IDLE_RESULT"
stop "$TOKIO_PID"

# --- nginx + php-fpm ---------------------------------------------------------------------
start_fpm() {
  local children=$1
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
pm.max_children = $children
php_admin_value[opcache.enable] = 1
php_admin_value[opcache.validate_timestamps] = 0
php_admin_value[opcache.memory_consumption] = 128
php_admin_flag[log_errors] = on
EOF
  php-fpm8.2 -F -y "$WORK/fpm.conf" >"$WORK/fpm.out" 2>&1 &
  FPM_PID=$!; PIDS+=("$FPM_PID")
  for _ in $(seq 1 50); do [ -S "$WORK/fpm.sock" ] && break; sleep 0.1; done
}

start_nginx() {
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
    location ~ \.php\$ {
      try_files \$uri =404;
      include /etc/nginx/fastcgi_params;
      fastcgi_param SCRIPT_FILENAME \$document_root\$fastcgi_script_name;
      fastcgi_pass unix:$WORK/fpm.sock;
      fastcgi_keep_conn on;
    }
  }
}
EOF
  nginx -c "$WORK/nginx.conf" -g 'daemon off;' >"$WORK/nginx.out" 2>&1 &
  NGINX_PID=$!; PIDS+=("$NGINX_PID")
  wait_port $PORT_NGINX
}

# Peak RSS of nginx + php-fpm: both process trees.
measure_nginx_wrk() {
  local url=$1 line fpm_peak
  line=$(measure_wrk "$url" "$NGINX_PID")
  fpm_peak=$(( $(tree_rss "$FPM_PID") / 1024 ))
  echo "$line" | awk -v f="$fpm_peak" '{print $1, $2, $3, $4, $5 + f}'
}

best_fpm=""
best_rps=0
for children in $FPM_SIZES; do
  say "nginx + php-fpm, pm=static, $children children"
  start_fpm "$children"; start_nginx
  for c in "${CASES[@]}"; do
    name=${c%%:*}; path=${c#*:}
    curl -fsS -o /dev/null "http://127.0.0.1:$PORT_NGINX$path"
    record "nginx+fpm($children)" "$name" "$(measure_nginx_wrk "http://127.0.0.1:$PORT_NGINX$path")"
    record "nginx+fpm($children)" "$name-h2" "$(measure_h2 "http://127.0.0.1:$PORT_NGINX_H2$path")"
  done
  rps=$(awk -v s="nginx+fpm($children)" -F'\t' '$1==s && $2=="hello" {split($3,a," "); print a[1]}' "$RESULTS")
  if [ "${rps:-0}" -gt "$best_rps" ]; then best_rps=$rps; best_fpm="nginx+fpm($children)"; fi
  stop "$NGINX_PID"; stop "$FPM_PID"
done

# --- PHP's built-in server (a floor) ------------------------------------------------------
say "php -S (built-in server)"
php8.2 -d opcache.enable_cli=1 -S 127.0.0.1:$PORT_BUILTIN -t "$DOCROOT" >"$WORK/builtin.log" 2>&1 &
BUILTIN_PID=$!; PIDS+=("$BUILTIN_PID")
wait_port $PORT_BUILTIN
for c in "${CASES[@]}"; do
  name=${c%%:*}; path=${c#*:}
  record "php -S" "$name" "$(measure_wrk "http://127.0.0.1:$PORT_BUILTIN$path" "$BUILTIN_PID")"
done
stop "$BUILTIN_PID"

# --- report ------------------------------------------------------------------------------
DATE=$(date -u +%Y-%m-%d)
mkdir -p bench/results
REPORT=bench/results/$([ "$SMOKE" = 1 ] && echo "smoke" || echo "$DATE").md
{
  echo "# tokio_php benchmark, $DATE"
  echo
  echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)."
  echo "Versions: tokio_php $(awk -F'"' '/^version/ {print $2; exit}' Cargo.toml) with PHP $("$PHP_CONFIG" --version) (ZTS, embed),"
  echo "$(nginx -v 2>&1 | sed 's|nginx version: ||'), PHP-FPM $(php-fpm8.2 -v | head -1 | awk '{print $2}'), wrk $(wrk -v 2>&1 | head -1 | awk '{print $2}'), $(h2load --version | head -1)."
  echo "Load: wrk -t2 -c$CONNECTIONS -d${DURATION}s (HTTP/1.1 keep-alive); h2load -c$CONNECTIONS -m10 -D$DURATION (h2c)."
  echo "tokio_php: PHP_WORKERS=${TOKIO_WORKERS:-0} (0 = one per core), QUEUE_CAPACITY=${TOKIO_QUEUE:-2048}."
  echo "nginx + php-fpm: pm=static with ${FPM_SIZES// /, } children, OPcache on, validate_timestamps off; best (by hello.php): $best_fpm."
  echo "Mode: $([ "$SMOKE" = 1 ] && echo "smoke (figures not meaningful)" || echo full)."
  echo
  echo "| case | server | req/s | p50 ms | p99 ms | errors | peak RSS MiB |"
  echo "|---|---|---:|---:|---:|---:|---:|"
  awk -F'\t' '$2 !~ /-h2$/ {split($3,a," "); printf "| %s | %s | %s | %s | %s | %s | %s |\n", $2, $1, a[1], a[2], a[3], a[4], a[5]}' "$RESULTS" | sort -t'|' -k2,2 -s
  echo
  echo "HTTP/2 (h2c, prior knowledge):"
  echo
  echo "| case | server | req/s | mean ms | errors |"
  echo "|---|---|---:|---:|---:|"
  awk -F'\t' '$2 ~ /-h2$/ {split($3,a," "); printf "| %s | %s | %s | %s | %s |\n", $2, $1, a[1], a[2], a[3]}' "$RESULTS" | sort -t'|' -k2,2 -s
  echo
  echo "Ratios tokio_php / $best_fpm (req/s; p99 lower is better):"
  echo
  echo "| case | req/s ratio | tokio_php p99 ms | nginx+fpm p99 ms |"
  echo "|---|---:|---:|---:|"
  for c in "${CASES[@]}"; do
    name=${c%%:*}
    awk -F'\t' -v n="$name" -v best="$best_fpm" '
      $2==n && $1=="tokio_php" {split($3,t," ")}
      $2==n && $1==best {split($3,f," ")}
      END { if (f[1] > 0) printf "| %s | %.2f | %s | %s |\n", n, t[1]/f[1], t[3], f[3] }' "$RESULTS"
  done
  echo
  echo "Worker mode (the app case: 200 classes and a container booted once per thread):"
  echo
  awk -F'\t' '
    $2=="app" && $1=="tokio_php" {split($3,c," ")}
    $2=="app" && $1=="tokio_php worker" {split($3,w," ")}
    END { if (c[1] > 0) printf "classic %s req/s, worker mode %s req/s: %.1f x (target: 3 x or more)\n", c[1], w[1], w[1]/c[1] }' "$RESULTS"
  echo
  echo "Idle connections (bench/idle_connections.py, target: 16 KiB or less each):"
  echo
  echo "$IDLE_RESULT"
} >"$REPORT"
say "wrote $REPORT"
cat "$REPORT"
