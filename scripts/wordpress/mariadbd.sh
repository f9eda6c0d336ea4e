#!/usr/bin/env bash
# A MariaDB of its own for a WordPress site (bench/run.sh, the PGO training in
# scripts/pgo/train.sh): prepares a fresh data directory in DIR, then becomes the server
# (exec, so the PID the caller started in the background is the server's; stop it by it).
#
#   scripts/wordpress/mariadbd.sh DIR [PORT] &
#
# It is ready when DIR/mysqld.sock exists (its log: DIR/mysqld.log). With PORT it also
# listens on 127.0.0.1:PORT (and nowhere else); without it, on the socket only. It has a
# database `wordpress` for the user `wordpress` (password `wordpress`), from 127.0.0.1 and
# from the socket. Needs mariadbd (Debian's mariadb-server-core, which installs no service).
set -euo pipefail
DIR=${1:?usage: mariadbd.sh DIR [PORT]} PORT=${2:-}
die() { printf '[mariadbd.sh] error: %s\n' "$*" >&2; exit 1; }
command -v mariadbd >/dev/null && command -v mariadb-install-db >/dev/null ||
  die "mariadbd or mariadb-install-db is not installed: apt-get install mariadb-server-core"
[ ! -e "$DIR/data" ] || die "$DIR/data exists already: give a new directory"
mkdir -p "$DIR"
USER_ARGS=()
[ "$(id -u)" = 0 ] && USER_ARGS=(--user=root)
mariadb-install-db --no-defaults --datadir="$DIR/data" --auth-root-authentication-method=normal \
  --skip-test-db "${USER_ARGS[@]}" >"$DIR/install.log" 2>&1 ||
  die "mariadb-install-db into $DIR/data failed: $(tail -n 3 "$DIR/install.log")"
# Run by the server before it takes its first connection.
cat >"$DIR/init.sql" <<'SQL'
CREATE DATABASE IF NOT EXISTS wordpress;
CREATE USER IF NOT EXISTS 'wordpress'@'127.0.0.1' IDENTIFIED BY 'wordpress';
CREATE USER IF NOT EXISTS 'wordpress'@'localhost' IDENTIFIED BY 'wordpress';
GRANT ALL ON wordpress.* TO 'wordpress'@'127.0.0.1';
GRANT ALL ON wordpress.* TO 'wordpress'@'localhost';
SQL
if [ -n "$PORT" ]; then
  NET_ARGS=(--port="$PORT" --bind-address=127.0.0.1)
else
  NET_ARGS=(--skip-networking)
fi
exec mariadbd --no-defaults --datadir="$DIR/data" --socket="$DIR/mysqld.sock" "${NET_ARGS[@]}" \
  --skip-name-resolve --pid-file="$DIR/mysqld.pid" --log-error="$DIR/mysqld.log" \
  --innodb-buffer-pool-size=64M --init-file="$DIR/init.sql" "${USER_ARGS[@]}" \
  </dev/null >/dev/null 2>&1
