#!/usr/bin/env bash
# The training run of a profile-guided PHP build (scripts/setup-php.sh with PHP_PGO=1).
#
#   scripts/pgo/train.sh PHP_SOURCE_TREE WORK_DIR
#
# Runs the instrumented build's own CLI, so that its profile covers what tokio_php runs in
# classic mode: requests through PHP's built-in web server (one PHP request per HTTP
# request, OPcache's shared memory kept across them, as in tokio_php) for
#   - a framework-style application (bench/gen_framework.php), hello.php, a JSON API and a
#     page of string, array and regex work (train.php);
#   - WordPress (train-wordpress.sh): Debian's package on a MariaDB of its own, its front
#     page, posts, a page, search, the feed, the REST API and the login form;
# then php-src's Zend/bench.php for the engine's own paths. The profile is written when
# each PHP process exits normally.
set -euo pipefail
SRC=$1 WORK=$2
HERE=$(cd "$(dirname "$0")" && pwd)
PHP=$SRC/sapi/cli/php
OPCACHE=$SRC/modules/opcache.so
[ -x "$PHP" ] || { echo "train.sh: no CLI at $PHP" >&2; exit 1; }
[ -f "$OPCACHE" ] || { echo "train.sh: no OPcache at $OPCACHE" >&2; exit 1; }
GENERATOR=$HERE/../../bench/gen_framework.php
[ -f "$GENERATOR" ] || GENERATOR=$HERE/gen_framework.php
[ -f "$GENERATOR" ] || { echo "train.sh: bench/gen_framework.php not found (beside it: $HERE/gen_framework.php)" >&2; exit 1; }

mkdir -p "$WORK/public"
"$PHP" -n "$GENERATOR" "$WORK/public"
cp "$HERE/train.php" "$WORK/public/train.php"

INI=(-n -d "zend_extension=$OPCACHE" -d opcache.enable=1 -d opcache.enable_cli=1
  -d opcache.validate_timestamps=0 -d opcache.memory_consumption=64 -d memory_limit=256M
  -d opcache.jit=disable -d opcache.jit_buffer_size=0 -d output_buffering=4096
  -d display_errors=0)
APP_PATHS=/fw.php?route=/catalogue20/3,/fw.php?route=/catalogue1/2,/train.php?case=json
APP_PATHS+=,/train.php?case=text,/train.php?case=hello,/fw.php?route=/catalogue7/1
"$PHP" "${INI[@]}" "$WORK/public/train.php" --drive "$PHP" "$WORK/public" 250 "$APP_PATHS" \
  "Fatal error" "${INI[@]}"

# WordPress adds to the profile; without it (no mysqli, no package, a PHP it does not run
# on) the build goes on with the rest, and says so.
if "$HERE/train-wordpress.sh" "$PHP" "$WORK/wordpress" "$WORK/public/train.php" "${INI[@]}"; then
  echo "train.sh: trained on WordPress"
else
  echo "train.sh: WordPress left out of the training (the reason is above)"
fi

"$PHP" "${INI[@]}" "$SRC/Zend/bench.php" >/dev/null
echo "train.sh: done"
