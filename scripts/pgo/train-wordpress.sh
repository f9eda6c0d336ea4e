#!/usr/bin/env bash
# The WordPress part of the PGO training (scripts/pgo/train.sh).
#
#   scripts/pgo/train-wordpress.sh PHP WORK_DIR TRAIN_PHP INI...
#
# Debian's WordPress package (downloaded with apt-get and unpacked into WORK_DIR, not
# installed) with a configuration of its own, on a MariaDB of its own that listens on a
# socket only (scripts/wordpress/mariadbd.sh; needs mariadb-server-core), installed with
# scripts/wordpress/install.php; then TRAIN_PHP (train.php) drives PHP's built-in server
# through the front page, posts, a page, a search, the feed, the REST API and the login
# form. Exits non-zero, saying why, when any of that is not to be had.
set -euo pipefail
PHP=$1 WORK=$2 DRIVER=$3
shift 3
INI=("$@")
HERE=$(cd "$(dirname "$0")" && pwd)
WORDPRESS_SCRIPTS=$HERE/../wordpress
say() { echo "train-wordpress.sh: $*"; }
[ -d "$WORDPRESS_SCRIPTS" ] || { say "no scripts/wordpress beside scripts/pgo ($WORDPRESS_SCRIPTS)"; exit 1; }
modules=$("$PHP" -n -m)
grep -qx mysqli <<<"$modules" || { say "this PHP has no mysqli"; exit 1; }

mkdir -p "$WORK/deb" "$WORK/root"
(cd "$WORK/deb" && apt-get download -qq wordpress wordpress-theme-twentytwentythree) ||
  { say "apt-get download wordpress wordpress-theme-twentytwentythree failed (apt-get update first?)"; exit 1; }
for deb in "$WORK"/deb/*.deb; do dpkg-deb -x "$deb" "$WORK/root"; done
SITE=$WORK/root/usr/share/wordpress
[ -f "$SITE/wp-settings.php" ] || { say "the wordpress package has no usr/share/wordpress/wp-settings.php"; exit 1; }

"$WORDPRESS_SCRIPTS/mariadbd.sh" "$WORK/db" &
DB_PID=$!
trap 'kill "$DB_PID" 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
  [ -S "$WORK/db/mysqld.sock" ] && break
  kill -0 "$DB_PID" 2>/dev/null || break
  sleep 0.1
done
[ -S "$WORK/db/mysqld.sock" ] ||
  { say "mariadbd did not start within 30 s: $(tail -n 3 "$WORK/db/mysqld.log" 2>/dev/null)"; exit 1; }

# The site's own configuration in place of Debian's (which reads /etc/wordpress/).
cat >"$SITE/wp-config.php" <<PHP
<?php
// scripts/pgo/train-wordpress.sh: the training site, on the MariaDB socket in $WORK/db
define('DB_NAME', 'wordpress');
define('DB_USER', 'wordpress');
define('DB_PASSWORD', 'wordpress');
define('DB_HOST', 'localhost:$WORK/db/mysqld.sock');
define('WP_HOME', 'http://' . \$_SERVER['HTTP_HOST']);
define('WP_SITEURL', 'http://' . \$_SERVER['HTTP_HOST']);
define('DISABLE_WP_CRON', true);
define('AUTOMATIC_UPDATER_DISABLED', true);
define('WP_HTTP_BLOCK_EXTERNAL', true);
\$table_prefix = 'wp_';
define('ABSPATH', __DIR__ . '/');
require_once ABSPATH . 'wp-settings.php';
PHP
installed=$("$PHP" "${INI[@]}" "$WORDPRESS_SCRIPTS/install.php" "$SITE" localhost)
say "installed: $installed"
PATHS=/,/?p=1,/?p=5,/?page_id=2,/?s=post,/?feed=rss2,/?rest_route=/wp/v2/posts,/wp-login.php
# wp_die()'s page (a database error, for one) answers 200 from the built-in server.
"$PHP" "${INI[@]}" "$DRIVER" --drive "$PHP" "$SITE" 40 "$PATHS" wp-die-message "${INI[@]}"
kill "$DB_PID"
wait "$DB_PID" || true
trap - EXIT
