#!/usr/bin/env bash
# The settings every WordPress site of this project has (bench/run.sh's, the PGO
# training's), as PHP `define`s on stdout, for the database at DB_HOST
# (scripts/wordpress/mariadbd.sh's: `127.0.0.1:PORT` or `localhost:/path/to/mysqld.sock`).
# Home and site URL follow the request's Host, so every server's port serves the same site
# without a redirect; no cron, no updates, no outgoing HTTP.
#
#   scripts/wordpress/config.sh DB_HOST
set -euo pipefail
DB_HOST=${1:?usage: config.sh DB_HOST}
cat <<PHP
define('DB_NAME', 'wordpress');
define('DB_USER', 'wordpress');
define('DB_PASSWORD', 'wordpress');
define('DB_HOST', '$DB_HOST');
define('WP_HOME', 'http://' . \$_SERVER['HTTP_HOST']);
define('WP_SITEURL', 'http://' . \$_SERVER['HTTP_HOST']);
define('DISABLE_WP_CRON', true);
define('AUTOMATIC_UPDATER_DISABLED', true);
define('WP_HTTP_BLOCK_EXTERNAL', true);
PHP
