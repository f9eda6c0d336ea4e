#!/usr/bin/env bash
# Two PHP builds under tokio_php, side by side: what a build lever (a patch, compiler flags,
# PGO) gains on the framework-style request and the WordPress front page (and, in CASES,
# hello.php: where PHP's per-request work shows most). Each build gets
# its own tokio_php binary (linked against it), both are started once and measured in turn,
# round after round, the order reversed every other round, every server idle before each
# measurement. See bench/README.md ("Levers").
#
#   bench/compare-builds.sh A_PHP_CONFIG B_PHP_CONFIG
#   CALLGRIND=1 bench/compare-builds.sh ...   also count instructions per request (valgrind)
#   bench/compare-builds.sh --smoke A B       1 round of 1-2 s: proves the script works (CI)
# A build against itself (A = B) measures the method's own noise.
#   ROUNDS=8 FW_DURATION=5 WP_DURATION=8 CASES="framework wordpress" WORKERS=2
# (hello runs FW_DURATION, as the framework case)
#
# Prints a Markdown summary: per case the median ratio B ÷ A of requests per second, its
# spread and each round's, each side's median requests per second and p99. PHP settings:
# Debian's php.ini (/etc/php/8.2/fpm/php.ini, when present) and the OPcache lines of
# bench/run.sh (JIT off), the same for both. WordPress needs what bench/run.sh installs
# (the wordpress and wordpress-theme-twentytwentythree packages, mariadb-server-core); run
# it once, or leave wordpress out of CASES. target/release/tokio_php is left linked to B.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[compare] %s\n' "$*" >&2; }
# A run that stops keeps its work directory (logs) for a look.
KEEP_WORK=0
die() { say "error: $*"; KEEP_WORK=1; exit 1; }
SMOKE=0
[ "${1:-}" = --smoke ] && { SMOKE=1; shift; }
[ $# = 2 ] || die "usage: bench/compare-builds.sh [--smoke] A_PHP_CONFIG B_PHP_CONFIG"
CONFIG_A=$1 CONFIG_B=$2
if [ "$SMOKE" = 1 ]; then
  ROUNDS=1 FW_DURATION=1 WP_DURATION=2
else
  ROUNDS=${ROUNDS:-8} FW_DURATION=${FW_DURATION:-5} WP_DURATION=${WP_DURATION:-8}
fi
CASES=${CASES:-framework wordpress} WORKERS=${WORKERS:-$(nproc)} CALLGRIND=${CALLGRIND:-0}
for c in $CASES; do
  case $c in framework | wordpress | hello) ;; *) die "CASES: unknown case '$c' (known: framework wordpress hello)" ;; esac
done
has_case() { [[ " $CASES " == *" $1 "* ]]; }
# shellcheck source=bench/lib.sh
. bench/lib.sh
need=(wrk curl python3)
[ "$CALLGRIND" = 1 ] && need+=(valgrind callgrind_control callgrind_annotate)
for tool in "${need[@]}"; do command -v "$tool" >/dev/null || die "$tool is missing (apt-get install wrk curl python3 valgrind)"; done
if has_case wordpress; then
  [ -f /usr/share/wordpress/wp-settings.php ] && [ -d /usr/share/wordpress/wp-content/themes/twentytwentythree ] &&
    command -v mariadbd >/dev/null ||
    die "the wordpress case needs Debian's wordpress, wordpress-theme-twentytwentythree and mariadb-server-core (bench/run.sh installs them), or CASES=framework"
fi

# A build's name: its installation prefix, as scripts/setup-php.sh names it.
name_of() { basename "$("$1" --prefix)"; }
NAME_A=$(name_of "$CONFIG_A") NAME_B=$(name_of "$CONFIG_B")
[ "$NAME_A" != "$NAME_B" ] || say "A and B are the same build ($NAME_A): the ratios show the method's noise"

SUDO=
[ "$(id -u)" = 0 ] || SUDO=sudo
WORK=$(mktemp -d /tmp/tokio_php_compare.XXXXXX)
PIDS=() WP_CONFIG=
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  [ -z "$WP_CONFIG" ] || $SUDO rm -f "$WP_CONFIG"
  if [ "$KEEP_WORK" = 1 ]; then say "kept $WORK (remove it when done)"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

for side in A B; do
  config=CONFIG_$side name=NAME_$side
  say "building tokio_php against ${!name}"
  PHP_CONFIG=${!config} cargo build --release --quiet || die "cargo build against ${!name} failed"
  cp target/release/tokio_php "$WORK/tokio-$side"
done

mkdir -p "$WORK/docroot"
"$("$CONFIG_A" --php-binary)" bench/gen_framework.php "$WORK/docroot" >/dev/null
printf '<?php\necho "Hello, world!";\n' >"$WORK/docroot/hello.php"
{
  [ -f /etc/php/8.2/fpm/php.ini ] && cat /etc/php/8.2/fpm/php.ini
  opcache_ini off
} >"$WORK/php.ini"
chmod -R a+rX "$WORK"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# first_page SIDE CASE: the server's page into $WORK/body.SIDE once it answers (at most
# 10 s after it started); prints the status.
first_page() {
  local code=000
  for _ in $(seq 1 100); do
    code=$(curl -s -o "$WORK/body.$1" -w '%{http_code}' -H "Host: $(host_of "$1" "$2")" \
      "http://127.0.0.1:${PORT_OF[$1-$2]}$(url_of "$2")") && break
    sleep 0.1
  done
  echo "$code"
}

WP_HOST=
if has_case wordpress; then
  PORT_DB=$(free_port)
  wordpress_site "$WORK" "$PORT_DB" "$("$CONFIG_A" --php-binary)" compare
fi

# A case's document root, path, and Host header at a port.
root_of() { if [ "$1" = wordpress ]; then echo /usr/share/wordpress; else echo "$WORK/docroot"; fi; }
url_of() { case $1 in wordpress) echo / ;; hello) echo /hello.php ;; *) echo '/fw.php?route=/catalogue20/3' ;; esac; }
host_at() { if [ "$1" = wordpress ]; then echo "$WP_HOST:$2"; else echo "127.0.0.1:$2"; fi; }

# start SIDE CASE: that build's tokio_php for the case, as bench/run.sh starts it (PORT_OF).
declare -A PORT_OF
start() {
  local side=$1 case=$2 port
  port=$(free_port)
  env LISTEN_ADDR=127.0.0.1:$port PROCESSES=1 PHP_WORKERS=$WORKERS QUEUE_CAPACITY=2048 \
    PHP_INI=$WORK/php.ini LOG_LEVEL=warn DOCUMENT_ROOT="$(root_of "$case")" "$WORK/tokio-$side" >"$WORK/$side-$case.log" 2>&1 &
  PIDS+=($!)
  PORT_OF[$side-$case]=$port
}
host_of() { host_at "$2" "${PORT_OF[$1-$2]}"; }
for case in $CASES; do for side in A B; do start "$side" "$case"; done; done
for case in $CASES; do
  for side in A B; do
    code=$(first_page "$side" "$case")
    whole='</html>'
    [ "$case" = hello ] && whole='Hello, world!'
    [ "$code" = 200 ] && grep -q "$whole" "$WORK/body.$side" ||
      die "$side ($case) answered $code without a whole page (its log: $(tail -3 "$WORK/$side-$case.log"))"
    sed -i "s/:${PORT_OF[$side-$case]}//g" "$WORK/body.$side"
  done
  cmp -s "$WORK/body.A" "$WORK/body.B" || say "note: the two builds' $case pages differ"
done

# load SIDE CASE SECONDS: wrk -t2 against that server, -c50 (framework) or -c16
# (WordPress), its output in $WORK/wrk.out.
load() {
  local conns=50
  [ "$2" = wordpress ] && conns=16
  timeout $(($3 + 20)) wrk -t2 -c"$conns" -d"$3s" --timeout 10s --latency \
    -H "Host: $(host_of "$1" "$2")" "http://127.0.0.1:${PORT_OF[$1-$2]}$(url_of "$2")" >"$WORK/wrk.out" ||
    die "wrk against $1 ($2) failed: $(tail -2 "$WORK/wrk.out")"
}

# A warm-up of each server (its threads' caches, OPcache's first loads), as bench/run.sh's
# full runs have: else round 1 measures whichever server goes first cold.
if [ "$SMOKE" = 0 ]; then
  for case in $CASES; do for side in A B; do load "$side" "$case" 1; done; done
fi

# The rounds, one line per measurement.
echo "case round side rps p99_ms" >"$WORK/results"
for round in $(seq 1 "$ROUNDS"); do
  order="A B"
  [ $((round % 2)) = 0 ] && order="B A"
  for case in $CASES; do
    for side in $order; do
      duration=$FW_DURATION
      [ "$case" = wordpress ] && duration=$WP_DURATION
      settle "${PIDS[@]}"
      load "$side" "$case" "$duration"
      grep -q 'Non-2xx\|Socket errors' "$WORK/wrk.out" && say "note: errors in round $round, $side ($case): $(grep 'Non-2xx\|Socket errors' "$WORK/wrk.out")"
      echo "$case $round $side $(awk '/^Requests\/sec:/ {print $2}' "$WORK/wrk.out")" \
        "$(to_ms "$(awk '$1=="99%" {print $2}' "$WORK/wrk.out")")" >>"$WORK/results"
      say "round $round $case $side: $(tail -1 "$WORK/results" | cut -d' ' -f4) requests/s"
    done
  done
done

# callgrind COUNT SIDE CASE: instructions per request, one worker, after 10 warm-up requests.
callgrind() {
  local side=$1 case=$2 count=$3 port out=$WORK/callgrind.$side.$case pid
  port=$(free_port)
  env LISTEN_ADDR=127.0.0.1:$port PROCESSES=0 PHP_WORKERS=1 PHP_INI=$WORK/php.ini LOG_LEVEL=warn \
    DOCUMENT_ROOT="$(root_of "$case")" valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" \
    "$WORK/tokio-$side" >"$WORK/callgrind-$side-$case.log" 2>&1 &
  pid=$!
  PIDS+=($pid)
  wait_port "$port" 60
  local host
  host=$(host_at "$case" "$port")
  local url="http://127.0.0.1:$port$(url_of "$case")"
  for _ in $(seq 1 10); do curl -s -o /dev/null -H "Host: $host" "$url"; done
  callgrind_control -i on "$pid" >/dev/null
  for _ in $(seq 1 "$count"); do curl -s -o /dev/null -H "Host: $host" "$url"; done
  callgrind_control -i off "$pid" >/dev/null
  callgrind_control -d "$pid" >/dev/null
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  callgrind_annotate "$out.1" 2>/dev/null | awk -v n="$count" '/PROGRAM TOTALS/ {gsub(",", "", $1); printf "%.3f\n", $1 / n / 1e6}'
}
if [ "$CALLGRIND" = 1 ]; then
  for case in $CASES; do
    count=50
    [ "$case" = wordpress ] && count=20
    [ "$case" = hello ] && count=500
    for side in A B; do
      say "callgrind: $side, $case, $count requests"
      echo "$case $side $(callgrind "$side" "$case" "$count")" >>"$WORK/instructions"
    done
  done
fi

python3 - "$WORK" "$NAME_A" "$NAME_B" "$ROUNDS" <<'PY'
import statistics, sys
work, a, b, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
rows = [line.split() for line in open(f"{work}/results").read().split("\n")[1:] if line]
data = {(c, int(r), s): (float(rps), float(p99)) for c, r, s, rps, p99 in rows}
instructions = {}
try:
    for line in open(f"{work}/instructions"):
        case, side, millions = line.split()
        instructions[(case, side)] = float(millions)
except FileNotFoundError:
    pass
print(f"A = {a}, B = {b}; {rounds} rounds, the order reversed every other round.\n")
print("| case | B ÷ A (median) | min–max | per round | A req/s | B req/s | A p99 ms | B p99 ms | instructions per request A / B |")
print("|---|---:|---:|---|---:|---:|---:|---:|---|")
for case in sorted({c for c, _, _ in data}):
    ratios = [data[(case, r, "B")][0] / data[(case, r, "A")][0] for r in range(1, rounds + 1)]
    med = lambda side, i: statistics.median(data[(case, r, side)][i] for r in range(1, rounds + 1))
    ins = "—"
    if (case, "A") in instructions:
        ia, ib = instructions[(case, "A")], instructions[(case, "B")]
        ins = f"{ia:.3f} M / {ib:.3f} M ({(ib / ia - 1) * 100:+.1f} %)"
    print(f"| {case} | **{statistics.median(ratios):.3f}** | {min(ratios):.3f}–{max(ratios):.3f} | "
          f"{' / '.join(f'{x:.2f}' for x in ratios)} | {med('A', 0):.0f} | {med('B', 0):.0f} | "
          f"{med('A', 1):.1f} | {med('B', 1):.1f} | {ins} |")
PY
