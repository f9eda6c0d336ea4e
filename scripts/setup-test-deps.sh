#!/usr/bin/env bash
# What `make test` needs beside PHP. Idempotent.
#  - Debian's `locales`: the locale sources localedef compiles de_DE and the other locales
#    the tests ask for into target/tmp.
#  - Debian's own non-thread-safe PHP (`libphp8.2-embed`, `php8.2-dev` for php-config) for
#    the NTS mode's test (tests/nts.rs).
#  - The real applications the tests run, as their packages install them (wordpress,
#    mediawiki, php-laravel-framework, php-symfony-framework-bundle, php-symfony-runtime;
#    WordPress's default theme, which its package only recommends),
#    MariaDB's server and client binaries (started by the tests themselves on 127.0.0.1 with a
#    data directory under target/tmp, stopped by PID), and redis-server for the PECL test.
#    Installing packages never starts a service here: where no policy-rc.d says so already,
#    one is put in place for the install and removed after it.
set -euo pipefail
say() { printf '[setup-test-deps] %s\n' "$*" >&2; }
PACKAGES=(locales libphp8.2-embed php8.2-dev
  mariadb-server-core mariadb-client-core redis-server nginx-light
  wordpress wordpress-theme-twentytwentythree mediawiki php-laravel-framework php-symfony-framework-bundle php-symfony-runtime)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ "${#missing[@]}" -eq 0 ] && exit 0
SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { say "installing ${missing[*]} needs root or sudo"; exit 1; }
  SUDO=sudo
fi
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\n# scripts/setup-test-deps.sh: no service starts while it installs\nexit 101\n' |
    $SUDO tee "$policy" >/dev/null
  $SUDO chmod 755 "$policy"
  trap '$SUDO rm -f "$policy"' EXIT
fi
say "installing ${missing[*]}"
$SUDO apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
