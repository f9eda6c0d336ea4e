#!/usr/bin/env bash
# Build PECL extensions (redis, apcu, imagick, igbinary, memcached, xdebug, …) against
# tokio_php's thread-safe PHP with phpize, and print the php.ini lines that load them.
#
#   scripts/build-pecl.sh redis apcu               # Debian's source packages (apt-get source)
#   scripts/build-pecl.sh ~/Downloads/redis-6.0.2.tgz   # a tarball you name (pecl.php.net)
#   scripts/build-pecl.sh --out DIR redis          # put the .so files in DIR, not PHP's
#                                                  # extension directory
#   make pecl EXT="redis apcu"                     # the same through make
#
# The PHP is PHP_CONFIG's when set, else the one scripts/setup-php.sh provides (built on
# first use). A name is Debian's source package php-NAME (the newest upstream version it
# carries that has a config.m4); a path is a .tgz/.tar.gz/.tar.xz of the extension's source.
# Each extension's Debian -dev packages, where it needs some, are installed first.
#
# Progress goes to stderr; stdout carries one php.ini line per extension, e.g.
#   scripts/build-pecl.sh redis apcu >>php.ini
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
say() { printf '[build-pecl] %s\n' "$*" >&2; }
die() { printf '[build-pecl] error: %s\n' "$*" >&2; exit 1; }

# Libraries the common PECL extensions build with (Debian -dev packages).
deps_of() {
  case $1 in
    imagick) echo libmagickwand-dev ;;
    memcached) echo libmemcached-dev zlib1g-dev ;;
    *) ;;
  esac
}

OUT=""
if [ "${1:-}" = "--out" ]; then
  [ -n "${2:-}" ] || die "--out needs a directory"
  OUT=$2
  shift 2
fi
[ "$#" -gt 0 ] || die "name the extensions to build, e.g. scripts/build-pecl.sh redis apcu"

PHP_CONFIG=${PHP_CONFIG:-$("$HERE/setup-php.sh")}
[ -x "$PHP_CONFIG" ] || die "PHP_CONFIG=$PHP_CONFIG is not an executable php-config"
PHPIZE=$(dirname "$PHP_CONFIG")/phpize
[ -x "$PHPIZE" ] || die "no phpize beside $PHP_CONFIG; it comes with PHP's 'make install'"
say "building against PHP $("$PHP_CONFIG" --version) ($PHP_CONFIG)"

SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi
install_packages() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  [ "$(id -u)" = 0 ] || [ -n "$SUDO" ] || die "needs Debian packages ${missing[*]}: install them as root"
  say "installing ${missing[*]}"
  $SUDO apt-get update -qq >&2 || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 ||
    die "could not install ${missing[*]}"
}
install_packages autoconf pkg-config build-essential dpkg-dev libtool shtool

WORK=$(mktemp -d "${TMPDIR:-/tmp}/build-pecl.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# Debian's phpize takes libtool's macros and shtool from the system (Debian's PHP lives in
# /usr); a PHP built from Debian's source under another prefix points it at
# <prefix>/share/aclocal, which does not exist. Run a copy that looks in /usr.
if grep -q '^aclocaldir="$prefix/share/aclocal"' "$PHPIZE" && [ ! -d "$("$PHP_CONFIG" --prefix)/share/aclocal" ]; then
  sed 's|^aclocaldir=.*|aclocaldir="/usr/share/aclocal"|' "$PHPIZE" >"$WORK/phpize"
  chmod +x "$WORK/phpize"
  PHPIZE=$WORK/phpize
fi
[ -z "$OUT" ] || mkdir -p "$OUT"

for what in "$@"; do
  dir="$WORK/$(basename "$what")"
  mkdir -p "$dir"
  if [ -f "$what" ]; then
    say "unpacking $what"
    tar -xf "$what" -C "$dir" || die "could not unpack $what (a .tgz, .tar.gz or .tar.xz?)"
  else
    [[ $what =~ ^[a-z0-9_]+$ ]] || die "'$what' is neither a file nor an extension name"
    say "downloading Debian's source package php-$what (apt-get source)"
    (cd "$dir" && apt-get source -qq "php-$what" >&2) ||
      die "apt-get source php-$what failed (is there a deb-src entry? scripts/setup-php.sh adds one); download the extension's tarball from pecl.php.net and pass its path instead"
  fi
  # The extension's source: the newest version directory that has a config.m4.
  src=$(find "$dir" -mindepth 1 -maxdepth 3 -name config.m4 -printf '%h\n' | grep -v '/debian' |
    sort -V | tail -n 1)
  [ -n "$src" ] || die "no config.m4 in $what: not a PHP extension's source"
  name=$(basename "$src")
  name=${name%%-[0-9]*}
  for p in $(deps_of "$name"); do install_packages "$p"; done

  say "building $(basename "$src")"
  log="$WORK/$name.log"
  (
    cd "$src"
    "$PHPIZE" >"$log" 2>&1
    ./configure --with-php-config="$PHP_CONFIG" >>"$log" 2>&1
  ) || {
    tail -n 15 "$log" >&2
    error=$(grep -E '^configure: error:' "$log" | tail -n 1 | sed 's/^configure: error: //' || true)
    die "configuring $name failed: ${error:-see above}. A library it needs is missing: install its Debian -dev package (apt-cache search <library> -dev)"
  }
  make -C "$src" -j"$(nproc 2>/dev/null || echo 2)" >>"$log" 2>&1 || { tail -n 30 "$log" >&2; die "compiling $name failed (log above)"; }

  for so in "$src"/modules/*.so; do
    [ -f "$so" ] || die "building $name made no module"
    if [ -n "$OUT" ]; then
      cp "$so" "$OUT/"
      target="$(cd "$OUT" && pwd)/$(basename "$so")"
    else
      make -C "$src" install >>"$log" 2>&1 || { tail -n 20 "$log" >&2; die "installing $name failed"; }
      target=$(basename "$so")
    fi
    # A Zend extension (xdebug) is loaded with zend_extension=, the others with extension=.
    if grep -rqs 'zend_extension_entry' "$src"/*.c "$src"/src 2>/dev/null; then key=zend_extension; else key=extension; fi
    say "built $(basename "$so") from $(basename "$src")"
    echo "$key=$target"
  done
done
