#!/usr/bin/env bash
# Wait for the server scripts/wordpress/mariadbd.sh started in DIR as PID: ready when
# DIR/mysqld.sock exists. Exits 1, with the end of its log, when PID ends first or after 30 s.
#
#   scripts/wordpress/mariadb-ready.sh DIR PID
set -euo pipefail
DIR=${1:?usage: mariadb-ready.sh DIR PID} PID=${2:?usage: mariadb-ready.sh DIR PID}
for _ in $(seq 1 300); do
  [ -S "$DIR/mysqld.sock" ] && exit 0
  kill -0 "$PID" 2>/dev/null || break
  sleep 0.1
done
echo "mariadbd in $DIR did not start (waited up to 30 s): $(tail -n 3 "$DIR/mysqld.log" 2>/dev/null)" >&2
exit 1
