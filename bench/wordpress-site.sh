# A WordPress site of the run's own, for bench/run.sh and bench/compare-builds.sh (sourced;
# they provide PIDS, SUDO and die).
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
