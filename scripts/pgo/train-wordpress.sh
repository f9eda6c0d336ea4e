#!/usr/bin/env bash
# The WordPress part of the PGO training (scripts/pgo/train.sh).
#
#   scripts/pgo/train-wordpress.sh PHP WORK_DIR TRAIN_PHP INI...
#
# Debian's WordPress package (downloaded with apt-get and unpacked into WORK_DIR, not
# installed) with a configuration of its own, on a MariaDB of its own that listens on a
# socket only (scripts/wordpress/mariadbd.sh; needs mariadb-server-core), configured with
# scripts/wordpress/config.sh and installed with scripts/wordpress/install.php; then TRAIN_PHP (train.php) drives PHP's built-in server
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
"$WORDPRESS_SCRIPTS/mariadb-ready.sh" "$WORK/db" "$DB_PID" 2>&1 || exit 1

# The site's own configuration in place of Debian's (which reads /etc/wordpress/).
{
  printf '<?php\n// scripts/pgo/train-wordpress.sh: the training site, on the MariaDB socket in %s\n' "$WORK/db"
  "$WORDPRESS_SCRIPTS/config.sh" "localhost:$WORK/db/mysqld.sock"
  cat <<'PHP'
$table_prefix = 'wp_';
define('ABSPATH', __DIR__ . '/');
require_once ABSPATH . 'wp-settings.php';
PHP
} >"$SITE/wp-config.php"
installed=$("$PHP" "${INI[@]}" "$WORDPRESS_SCRIPTS/install.php" "$SITE" localhost)
say "installed: $installed"
PATHS=/,/?p=1,/?p=5,/?page_id=2,/?s=post,/?feed=rss2,/?rest_route=/wp/v2/posts,/wp-login.php
# wp_die()'s page (a database error, for one) answers 200 from the built-in server.
"$PHP" "${INI[@]}" "$DRIVER" --drive "$PHP" "$SITE" 40 "$PATHS" wp-die-message "${INI[@]}"
kill "$DB_PID"
wait "$DB_PID" || true
trap - EXIT
