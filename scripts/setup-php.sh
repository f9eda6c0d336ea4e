#!/usr/bin/env bash
# Provide a thread-safe (ZTS) PHP with the embed SAPI and print the path of its php-config.
#
#   scripts/setup-php.sh            # build once, cache, print php-config path on stdout
#
# Where PHP comes from, in order:
#   1. PHP_CONFIG, when set: used as it is (any PHP, ZTS or not).
#   2. A build cached under ${TOKIO_PHP_CACHE:-~/.cache/tokio_php}, made once and reused by
#      every clone on this machine.
#   3. A new build, from PHP_TARBALL (a php-X.Y.Z.tar.gz/.tar.xz you downloaded) when set,
#      otherwise from Debian's source package (`apt-get source php8.2`).
#
# Progress goes to stderr; stdout carries only the php-config path, so callers can do
#   PHP_CONFIG=$(scripts/setup-php.sh)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
say() { printf '[setup-php] %s\n' "$*" >&2; }
die() { printf '[setup-php] error: %s\n' "$*" >&2; exit 1; }

if [ -n "${PHP_CONFIG:-}" ]; then
  [ -x "$PHP_CONFIG" ] || die "PHP_CONFIG=$PHP_CONFIG is not an executable php-config; unset it to build PHP"
  say "using PHP_CONFIG=$PHP_CONFIG"
  echo "$PHP_CONFIG"
  exit 0
fi

CACHE=${TOKIO_PHP_CACHE:-$HOME/.cache/tokio_php}
PHP_SERIES=${PHP_SERIES:-8.2}
# Bumped whenever the build itself changes (flags, patches), so a cached build is redone.
BUILD_REV=r4
if [ -n "${PHP_TARBALL:-}" ]; then
  base=$(basename "$PHP_TARBALL")
  base=${base%.tar.*}
  PREFIX="$CACHE/$base-zts-$BUILD_REV"
else
  PREFIX="$CACHE/php$PHP_SERIES-debian-zts-$BUILD_REV"
fi

if [ -x "$PREFIX/bin/php-config" ] && [ -f "$PREFIX/.complete" ]; then
  say "using cached ZTS PHP at $PREFIX"
  echo "$PREFIX/bin/php-config"
  exit 0
fi

SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || die "installing build dependencies needs root or sudo"
  SUDO=sudo
fi

BUILD_DEPS=(build-essential pkg-config autoconf bison re2c file xz-utils dpkg-dev patch
  libxml2-dev libsqlite3-dev libssl-dev libcurl4-openssl-dev libonig-dev libzip-dev
  libsodium-dev zlib1g-dev)

missing=()
for p in "${BUILD_DEPS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing build dependencies: ${missing[*]}"
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

mkdir -p "$CACHE/src"
WORK=$(mktemp -d "$CACHE/src/build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

if [ -n "${PHP_TARBALL:-}" ]; then
  [ -f "$PHP_TARBALL" ] || die "PHP_TARBALL=$PHP_TARBALL does not exist"
  say "unpacking $PHP_TARBALL"
  tar -xf "$PHP_TARBALL" -C "$WORK"
else
  # apt-get source needs a deb-src entry; copy the machine's own deb entries when none exists.
  if ! grep -rqs '^\(Types:.*deb-src\|deb-src \)' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    src=/etc/apt/sources.list.d/tokio-php-deb-src.sources
    say "adding source entries for apt-get source: $src"
    if ls /etc/apt/sources.list.d/*.sources >/dev/null 2>&1; then
      cat /etc/apt/sources.list.d/*.sources | sed 's/^Types:.*/Types: deb-src/' | $SUDO tee "$src" >/dev/null
    elif [ -f /etc/apt/sources.list ]; then
      grep '^deb ' /etc/apt/sources.list | sed 's/^deb /deb-src /' | $SUDO tee "${src%.sources}.list" >/dev/null
    else
      die "no apt source found to copy; set PHP_TARBALL to a php.net tarball instead"
    fi
    $SUDO apt-get update -qq >&2
  fi
  # Newest first; a mirror may list a version whose files it does not hold, so fall back.
  versions=$(apt-cache showsrc "php$PHP_SERIES" 2>/dev/null | sed -n 's/^Version: //p' | sort -rV | uniq)
  [ -n "$versions" ] || die "apt knows no source package php$PHP_SERIES; set PHP_TARBALL to a php.net tarball"
  fetched=""
  for v in $versions; do
    say "downloading source package php$PHP_SERIES=$v (apt-get source)"
    if (cd "$WORK" && apt-get source -qq "php$PHP_SERIES=$v" >&2); then fetched=$v; break; fi
    say "php$PHP_SERIES=$v could not be fetched, trying an older version"
    rm -rf "${WORK:?}"/*
  done
  [ -n "$fetched" ] || die "apt-get source php$PHP_SERIES failed for every version; set PHP_TARBALL to a php.net tarball instead"
fi

SRC=$(find "$WORK" -mindepth 1 -maxdepth 1 -type d -name 'php*' | head -n 1)
[ -n "$SRC" ] && [ -f "$SRC/main/php.h" ] || die "no PHP source tree found in $WORK"
cd "$SRC"
[ -x ./configure ] || { say "generating configure"; ./buildconf --force >&2; }

# ZTS PHP guards dtoa's Bigint free lists (used to print every float, json_encode
# included) with one process-wide mutex, which worker threads then queue on. Give each
# thread its own free lists instead and drop that lock; the lock around the shared
# powers-of-5 cache stays. Skipped, with a note, if the source does not match.
if grep -q '^ static Bigint \*freelist\[Kmax+1\];' Zend/zend_strtod.c &&
   grep -q 'tsrm_mutex_lock(dtoa_mutex);' Zend/zend_strtod_int.h; then
  say "patching Zend/zend_strtod.c: per-thread dtoa free lists, no global lock"
  sed -i 's/^ static Bigint \*freelist\[Kmax+1\];/ ZEND_TLS Bigint *freelist[Kmax+1];/' Zend/zend_strtod.c
  sed -i '0,/^#ifndef Omit_Private_Memory$/s//#define Omit_Private_Memory 1\n#ifndef Omit_Private_Memory/' Zend/zend_strtod.c
  sed -i 's/tsrm_mutex_lock(dtoa_mutex);/\/\* per-thread free lists: no lock \*\//; s/tsrm_mutex_unlock(dtoa_mutex);/\/\* per-thread free lists: no lock \*\//' Zend/zend_strtod_int.h
else
  say "note: Zend/zend_strtod.c is not as expected; dtoa keeps its global lock"
fi

# Fixes for running PHP threaded in one process (each patch says what and why). One that
# does not apply to this source is left out with a note; tokio_php says at startup what
# that means.
for fix in "$HERE"/php-patches/*.patch; do
  [ -f "$fix" ] || continue
  if patch -p1 --forward --dry-run --silent <"$fix" >/dev/null 2>&1; then
    say "applying $(basename "$fix")"
    patch -p1 --forward --silent <"$fix" >&2
  else
    say "note: $(basename "$fix") does not apply to $(basename "$SRC"); built without it"
  fi
done

say "configuring $(basename "$SRC") (ZTS, embed SAPI) into $PREFIX"
./configure --prefix="$PREFIX" \
  --enable-embed=shared --enable-zts --disable-zend-signals --enable-zend-max-execution-timers \
  --disable-all --disable-cgi --disable-phpdbg --without-pear \
  --enable-opcache --enable-mbstring --enable-ctype --enable-filter --enable-session \
  --enable-tokenizer --enable-dom --enable-xml --enable-simplexml --enable-xmlreader \
  --enable-xmlwriter --with-libxml --enable-pdo --with-pdo-sqlite --with-pdo-mysql=mysqlnd \
  --with-mysqli=mysqlnd --with-sqlite3 --with-zlib --with-openssl --with-curl \
  --enable-fileinfo --with-iconv --enable-bcmath --with-zip --with-sodium \
  --enable-posix --enable-sockets >"$WORK/configure.log" 2>&1 ||
  { tail -n 30 "$WORK/configure.log" >&2; die "configure failed (log above)"; }

jobs=$(nproc 2>/dev/null || echo 2)
say "compiling with $jobs jobs (about 5-10 minutes on 2 cores)"
start=$(date +%s)
make -j"$jobs" >"$WORK/make.log" 2>&1 || { tail -n 40 "$WORK/make.log" >&2; die "make failed (log above)"; }
rm -rf "$PREFIX"
make install >"$WORK/install.log" 2>&1 || { tail -n 40 "$WORK/install.log" >&2; die "make install failed"; }
# Debian's patches leave a placeholder in the include paths that its packaging fills in;
# the headers themselves are installed without it.
sed -i 's|/@DEBIAN_PHP_API@||g' "$PREFIX/bin/php-config" "$PREFIX/bin/phpize"
"$PREFIX/bin/php-config" --includes | grep -q '@' && die "php-config still holds a placeholder: $("$PREFIX/bin/php-config" --includes)"
# php-src's own .phpt tests (and the files they read), for the conformance runner
# (tests/phpt.rs): the same source, so the same version as the PHP built here.
say "keeping php-src's tests in $PREFIX/share/php-src-tests"
mkdir -p "$PREFIX/share/php-src-tests"
find . -type d -name tests -prune -print | tar -cf - -T - run-tests.php |
  tar -xf - -C "$PREFIX/share/php-src-tests"
touch "$PREFIX/.complete"
say "built ZTS PHP $("$PREFIX/bin/php-config" --version) in $(($(date +%s) - start))s: $PREFIX"
echo "$PREFIX/bin/php-config"
