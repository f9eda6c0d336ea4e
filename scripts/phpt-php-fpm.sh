#!/usr/bin/env bash
# The reference run: php-src's .phpt selections (tests/phpt) against nginx + php-fpm, as
# Debian ships them, recorded in tests/phpt/expected/php-fpm/. The conformance test then
# requires tokio_php to pass every test php-fpm passes (or tests/phpt/differences.txt to say
# why not).
#
#   scripts/phpt-php-fpm.sh             # install what is missing, run every selection
#
# nginx and php-fpm are started by the test runner itself, one pair per php.ini it needs,
# on 127.0.0.1 and a unix socket under a temporary directory, and stopped by their PIDs.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[phpt-php-fpm] %s\n' "$*" >&2; }

SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
# php-fpm with the extensions tokio_php's build has that Debian packages apart.
PACKAGES=(nginx-light php8.2-fpm php8.2-mbstring php8.2-xml php8.2-sqlite3 php8.2-mysql
  php8.2-curl php8.2-zip php8.2-bcmath)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# The packages may start their own services; the runner starts its own, so stop those, by
# the PIDs their pid files give.
for pidfile in /run/php/php8.2-fpm.pid /run/nginx.pid; do
  if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    say "stopping the packaged service with PID $(cat "$pidfile") ($pidfile)"
    $SUDO kill "$(cat "$pidfile")"
  fi
done

PHP_CONFIG=$(scripts/setup-php.sh)
export PHP_CONFIG
say "php-fpm: $(/usr/sbin/php-fpm8.2 -v | head -n 1)"
PHPT_TARGET=php-fpm PHPT_NGINX=/usr/sbin/nginx PHPT_PHP_FPM=/usr/sbin/php-fpm8.2 \
  cargo test --test phpt -- --nocapture --test-threads 1
say "recorded: tests/phpt/expected/php-fpm/"
