# What bench/run.sh and bench/compare-builds.sh share (sourced; they provide PIDS, SUDO, say
# and die).

# opcache_ini JIT: the OPcache lines every side gets after Debian's php.ini, the JIT off
# (`off`) or in the given mode (`tracing`, `function`, ...).
opcache_ini() {
  printf '%s\n' opcache.enable=1 opcache.validate_timestamps=0 opcache.memory_consumption=128 \
    opcache.interned_strings_buffer=16 opcache.max_accelerated_files=20000
  case $1 in
    off) printf '%s\n' opcache.jit=disable opcache.jit_buffer_size=0 ;;
    *) printf '%s\n' "opcache.jit=$1" opcache.jit_buffer_size=64M ;;
  esac
}

# to_ms VALUE: a wrk latency (850.00us, 38.03ms, 1.23s) in milliseconds, two decimals.
to_ms() {
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) { sub("us","",v); printf "%.2f", v/1000 }
    else if (v ~ /ms$/) { sub("ms","",v); printf "%.2f", v }
    else if (v ~ /s$/) { sub("s","",v); printf "%.2f", v*1000 }
    else printf "%.2f", v }'
}

# wait_port PORT [SECONDS]: returns once something listens on 127.0.0.1:PORT (within 10 s,
# or SECONDS), else stops the run.
wait_port() {
  for _ in $(seq 1 $((${2:-10} * 10))); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  die "nothing listens on port $1 (see the logs in $WORK)"
}

# settle PID... waits (at most 10 s) until the processes and their descendants are idle:
# under 2 clock ticks (20 ms of CPU) in half a second (bench/procs.py). When a load stops,
# php-fpm and Apache go on serving the requests already queued (nginx's FastCGI backlog,
# Apache's accept queue: for WordPress half a second of both cores); measured at once, the
# next server would share its first second with that work.
settle() {
  python3 bench/procs.py settle "$@" || say "the servers did not go idle within 10 s; measuring anyway"
}

# A WordPress site of the run's own:
#
#   wordpress_site WORK PORT_DB PHP HOST_LABEL
#
# starts MariaDB with its data in WORK/db on 127.0.0.1:PORT_DB (DB_PID, also added to PIDS;
# its log WORK/db.log), writes the site's configuration and installs it with the PHP CLI PHP
# (WP_SITE: its theme and posts). Debian's /usr/share/wordpress/wp-config.php reads
# /etc/wordpress/config-<host>.php for the request's Host: a name of this run's own
# (WP_HOST, tokio-php-HOST_LABEL-…; the caller removes WP_CONFIG on exit). WP_HOME follows
# the Host, so that each server's port serves the same site without a redirect.
wordpress_site() {
  local work=$1 port_db=$2 php=$3 label=$4
  scripts/wordpress/mariadbd.sh "$work/db" "$port_db" >"$work/db.log" 2>&1 &
  DB_PID=$!
  PIDS+=("$DB_PID")
  scripts/wordpress/mariadb-ready.sh "$work/db" "$DB_PID" ||
    die "MariaDB for the wordpress case did not start: $(tail -3 "$work/db.log")"
  WP_HOST=tokio-php-$label-$$-$RANDOM.test
  WP_CONFIG=/etc/wordpress/config-$WP_HOST.php
  { printf '<?php\n// %s, removed when the run ends\n' "$0"; scripts/wordpress/config.sh "127.0.0.1:$port_db"; } |
    $SUDO tee "$WP_CONFIG" >/dev/null
  $SUDO chmod 644 "$WP_CONFIG"
  WP_SITE=$("$php" scripts/wordpress/install.php /usr/share/wordpress "$WP_HOST" 2>"$work/wp-install.log") ||
    die "the WordPress install failed: $(tail -3 "$work/wp-install.log")"
}
