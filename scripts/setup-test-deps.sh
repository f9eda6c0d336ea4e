#!/usr/bin/env bash
# What `make test` needs beside PHP: Debian's `locales` (the locale sources localedef
# compiles de_DE and the other locales the tests ask for into target/tmp), and Debian's own
# non-thread-safe PHP (`libphp8.2-embed`, `php8.2-dev` for php-config) for the NTS mode's
# test (tests/nts.rs). Idempotent.
set -euo pipefail
say() { printf '[setup-test-deps] %s\n' "$*" >&2; }
PACKAGES=(locales libphp8.2-embed php8.2-dev)
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
say "installing ${missing[*]}"
$SUDO apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
