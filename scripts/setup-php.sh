#!/usr/bin/env bash
# Provide a thread-safe (ZTS) PHP with the embed SAPI and print the path of its php-config.
#
#   scripts/setup-php.sh            # build once, cache, print php-config path on stdout
#   scripts/setup-php.sh --list     # the extension catalogue: name, in the default build or
#                                   # not, the Debian packages it builds with
#
# Where PHP comes from, in order:
#   1. PHP_CONFIG, when set: used as it is (any PHP, ZTS or not).
#   2. A build cached under ${TOKIO_PHP_CACHE:-~/.cache/tokio_php}, made once and reused by
#      every clone on this machine.
#   3. A new build, from PHP_TARBALL (a php-X.Y.Z.tar.gz/.tar.xz you downloaded) when set,
#      otherwise from Debian's source package (`apt-get source php8.2`).
#
# Which bundled extensions it has: the default set in EXTENSIONS below, changed by
# PHP_EXTENSIONS, a list of `+name` (add) and `-name` (remove), for example
#   PHP_EXTENSIONS="+gettext +pcntl -ldap" scripts/setup-php.sh
# Any extension in php-src's ext/ can be added; those in the catalogue get their Debian
# -dev packages installed. A changed set is a separate cached build. PECL extensions:
# scripts/build-pecl.sh.
#
# How it is compiled: -O2 -fno-semantic-interposition with -Wl,-Bsymbolic-functions (PHP_CFLAGS
# and PHP_LDFLAGS change them; other flags are another cached build), and with PHP_PGO=1
# profile-guided: compiled instrumented, trained on scripts/pgo/, compiled again (a build
# of its own, `...-pgo2`; about twice the time). bench/README.md has what each gained.
#
# Progress goes to stderr; stdout carries only the php-config path, so callers can do
#   PHP_CONFIG=$(scripts/setup-php.sh)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
say() { printf '[setup-php] %s\n' "$*" >&2; }
die() { printf '[setup-php] error: %s\n' "$*" >&2; exit 1; }

# The extension catalogue: name, in the default build (yes/no), configure options, the
# Debian -dev packages it needs ("-": none). Several options are joined by "+", several
# packages by ",". The default set is what WordPress, Laravel,
# Symfony and MediaWiki require or recommend (docs/extensions.md).
EXTENSIONS='
opcache    yes --enable-opcache                    -
mbstring   yes --enable-mbstring                   libonig-dev
ctype      yes --enable-ctype                      -
filter     yes --enable-filter                     -
session    yes --enable-session                    -
tokenizer  yes --enable-tokenizer                  -
libxml     yes --with-libxml                       libxml2-dev
dom        yes --enable-dom                        libxml2-dev
xml        yes --enable-xml                        libxml2-dev
simplexml  yes --enable-simplexml                  libxml2-dev
xmlreader  yes --enable-xmlreader                  libxml2-dev
xmlwriter  yes --enable-xmlwriter                  libxml2-dev
pdo        yes --enable-pdo                        -
pdo_sqlite yes --with-pdo-sqlite                   libsqlite3-dev
sqlite3    yes --with-sqlite3                      libsqlite3-dev
mysqlnd    yes --enable-mysqlnd                    -
pdo_mysql  yes --with-pdo-mysql=mysqlnd            -
mysqli     yes --with-mysqli=mysqlnd               -
zlib       yes --with-zlib                         zlib1g-dev
openssl    yes --with-openssl                      libssl-dev
curl       yes --with-curl                         libcurl4-openssl-dev
fileinfo   yes --enable-fileinfo                   -
iconv      yes --with-iconv                        -
bcmath     yes --enable-bcmath                     -
zip        yes --with-zip                          libzip-dev
sodium     yes --with-sodium                       libsodium-dev
posix      yes --enable-posix                      -
sockets    yes --enable-sockets                    -
gd         yes --enable-gd+--with-external-gd      libgd-dev
intl       yes --enable-intl                       libicu-dev
exif       yes --enable-exif                       -
calendar   yes --enable-calendar                   -
gmp        yes --with-gmp                          libgmp-dev
bz2        yes --with-bz2                          libbz2-dev
pgsql      yes --with-pgsql                        libpq-dev
pdo_pgsql  yes --with-pdo-pgsql                    libpq-dev
soap       yes --enable-soap                       libxml2-dev
xsl        yes --with-xsl                          libxslt1-dev
ldap       yes --with-ldap                         libldap-dev
gettext    no  --with-gettext                      -
pcntl      no  --enable-pcntl                      -
ftp        no  --enable-ftp                        -
shmop      no  --enable-shmop                      -
sysvmsg    no  --enable-sysvmsg                    -
sysvsem    no  --enable-sysvsem                    -
sysvshm    no  --enable-sysvshm                    -
tidy       no  --with-tidy                         libtidy-dev
enchant    no  --with-enchant                      libenchant-2-dev
snmp       no  --with-snmp                         libsnmp-dev
ffi        no  --with-ffi                          libffi-dev
readline   no  --with-readline                     libedit-dev
pdo_odbc   no  --with-pdo-odbc=unixODBC,/usr       unixodbc-dev
pdo_dblib  no  --with-pdo-dblib                    freetds-dev
'
catalogue() { printf '%s\n' "$EXTENSIONS" | awk 'NF == 4'; }

if [ "${1:-}" = "--list" ]; then
  printf '%-11s %-8s %s\n' extension default "Debian packages"
  catalogue | awk '{ printf "%-11s %-8s %s\n", $1, $2, $4 }'
  exit 0
fi

if [ -n "${PHP_CONFIG:-}" ]; then
  [ -x "$PHP_CONFIG" ] || die "PHP_CONFIG=$PHP_CONFIG is not an executable php-config; unset it to build PHP"
  say "using PHP_CONFIG=$PHP_CONFIG"
  echo "$PHP_CONFIG"
  exit 0
fi

# The extensions to build: the defaults, then PHP_EXTENSIONS's changes in order.
selected=$(catalogue | awk '$2 == "yes" { print $1 }')
for change in ${PHP_EXTENSIONS:+${PHP_EXTENSIONS//,/ }}; do
  case $change in
    -*) name=${change#-}
        printf '%s\n' "$selected" | grep -qx "$name" ||
          die "PHP_EXTENSIONS: $name is not in the build, so it cannot be removed (scripts/setup-php.sh --list)"
        selected=$(printf '%s\n' "$selected" | grep -vx "$name") ;;
    *)  name=${change#+}
        [[ $name =~ ^[a-z0-9_]+$ ]] || die "PHP_EXTENSIONS: '$change' is not +name or -name"
        printf '%s\n' "$selected" | grep -qx "$name" || selected=$(printf '%s\n%s' "$selected" "$name") ;;
  esac
done
selected=$(printf '%s\n' "$selected" | sed '/^$/d' | sort)
default_set=$(catalogue | awk '$2 == "yes" { print $1 }' | sort)

CACHE=${TOKIO_PHP_CACHE:-$HOME/.cache/tokio_php}
PHP_SERIES=${PHP_SERIES:-8.2}
# Bumped whenever the build itself changes (flags, patches), so a cached build is redone.
BUILD_REV=r9
# Compiler flags (bench/README.md has what each gained): -O2 as Debian builds PHP, without
# -g (it took a third of the compile time; crash reports name functions from the symbol
# table, which stays). -fno-semantic-interposition and -Bsymbolic-functions bind libphp.so's
# calls to its own functions inside the library, as they are inside Debian's php-fpm
# executable: direct calls instead of PLT jumps, and GCC may inline them. -O3 (4 % faster,
# within the noise, for half again the compile time) and LTO (no gain; GCC cannot take the
# VM's global register variables through it) were measured and left out.
DEFAULT_CFLAGS="-O2 -fno-semantic-interposition"
DEFAULT_LDFLAGS="-Wl,-Bsymbolic-functions"
PHP_CFLAGS=${PHP_CFLAGS:-$DEFAULT_CFLAGS}
PHP_LDFLAGS=${PHP_LDFLAGS-$DEFAULT_LDFLAGS}
# PHP_PGO=1: profile-guided optimisation (php-src's prof-gen / prof-use). PHP is compiled
# instrumented, serves a training workload (scripts/pgo/train.sh: a framework-style app,
# hello.php, json, WordPress on a MariaDB of its own, php-src's Zend/bench.php), and is
# compiled again with that profile: about twice the build time, opt-in; the container image
# uses it (gain: bench/README.md). PGO_REV names the training: bumped when it changes.
PHP_PGO=${PHP_PGO:-0}
case $PHP_PGO in 0 | 1) ;; *) die "PHP_PGO=$PHP_PGO: use 1 (profile-guided build) or 0" ;; esac
PGO_REV=pgo2
if [ -n "${PHP_TARBALL:-}" ]; then
  base=$(basename "$PHP_TARBALL")
  base=${base%.tar.*}
  PREFIX="$CACHE/$base-zts-$BUILD_REV"
else
  PREFIX="$CACHE/php$PHP_SERIES-debian-zts-$BUILD_REV"
fi
# Another extension set is another build: named by a digest of the set.
if [ "$selected" != "$default_set" ]; then
  PREFIX="$PREFIX-ext-$(printf '%s' "$selected" | sha256sum | cut -c1-10)"
fi
# Other compiler flags (PHP_CFLAGS, PHP_LDFLAGS) are another build too.
if [ "$PHP_CFLAGS" != "$DEFAULT_CFLAGS" ] || [ "$PHP_LDFLAGS" != "$DEFAULT_LDFLAGS" ]; then
  PREFIX="$PREFIX-flags-$(printf '%s|%s' "$PHP_CFLAGS" "$PHP_LDFLAGS" | sha256sum | cut -c1-10)"
fi
if [ "$PHP_PGO" = 1 ]; then PREFIX="$PREFIX-$PGO_REV"; fi

if [ -x "$PREFIX/bin/php-config" ] && [ -f "$PREFIX/.complete" ]; then
  say "using cached ZTS PHP at $PREFIX"
  echo "$PREFIX/bin/php-config"
  exit 0
fi

SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi

BUILD_DEPS=(build-essential pkg-config autoconf bison re2c file xz-utils dpkg-dev patch)
# Each selected extension's packages, from the catalogue.
packages_of() { catalogue | awk -v n="$1" '$1 == n && $4 != "-" { gsub(",", " ", $4); print $4 }'; }
for name in $selected; do
  for p in $(packages_of "$name"); do BUILD_DEPS+=("$p"); done
done
# The PGO training's WordPress runs on a MariaDB of its own (the package has no service).
if [ "$PHP_PGO" = 1 ]; then BUILD_DEPS+=(mariadb-server-core); fi

missing=()
for p in "${BUILD_DEPS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  # Which extension wants each missing package, for the message if they cannot be had.
  wanted=""
  for p in "${missing[@]}"; do
    by=$(for name in $selected; do if packages_of "$name" | grep -qx "$p"; then printf '%s ' "$name"; fi; done)
    wanted+=" $p${by:+ (for ${by% })}"
  done
  [ "$(id -u)" = 0 ] || [ -n "$SUDO" ] ||
    die "the build needs Debian packages that are not installed:$wanted; install them (as root: apt-get install ${missing[*]}) or remove those extensions with PHP_EXTENSIONS"
  say "installing build dependencies:$wanted"
  $SUDO apt-get update -qq >&2 || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 ||
    die "could not install:$wanted; install them by hand or remove those extensions with PHP_EXTENSIONS"
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

# configure options for each selected extension: the catalogue's, or for an extension it
# does not list, the --enable-/--with- its own config.m4 declares.
ext_options=()
for name in $selected; do
  opts=$(catalogue | awk -v n="$name" '$1 == n { print $3 }')
  if [ -z "$opts" ]; then
    m4="ext/$name/config.m4"
    [ -f "$m4" ] || die "PHP_EXTENSIONS: $name is not an extension of $(basename "$SRC") (no $m4); scripts/setup-php.sh --list shows the catalogue"
    if grep -q "PHP_ARG_ENABLE(\[$name\]" "$m4"; then opts=--enable-$name; else opts=--with-$name; fi
    say "note: $name is not in the catalogue; configuring it with $opts (install its -dev package yourself)"
  fi
  for o in ${opts//+/ }; do ext_options+=("$o"); done
done

# Debian's PHP looks for PHP libraries in /usr/share/php (its packages install them there);
# Debian's patch sets that in configure.ac, which the shipped configure script predates.
include_path_env=()
if [ -z "${PHP_TARBALL:-}" ]; then include_path_env=(PEAR_INSTALLDIR=/usr/share/php); fi
# Debian keeps libraries in a multiarch directory (/usr/lib/x86_64-linux-gnu), where the
# config.m4 of ldap, bz2 and others look only when told.
libdir_option=()
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || true)
if [ -n "$multiarch" ] && [ -d "/usr/lib/$multiarch" ]; then libdir_option=(--with-libdir="lib/$multiarch"); fi

say "configuring $(basename "$SRC") (ZTS, embed SAPI; extensions: $(echo $selected); CFLAGS $PHP_CFLAGS; LDFLAGS $PHP_LDFLAGS) into $PREFIX"
if ! env "${include_path_env[@]}" CFLAGS="$PHP_CFLAGS" CXXFLAGS="$PHP_CFLAGS" ./configure --prefix="$PREFIX" \
  --enable-embed=shared --enable-zts --disable-zend-signals --enable-zend-max-execution-timers \
  --disable-all --disable-cgi --disable-phpdbg --without-pear "${libdir_option[@]}" \
  "${ext_options[@]}" >"$WORK/configure.log" 2>&1; then
  tail -n 15 "$WORK/configure.log" >&2
  # Name the extension configure was looking at when it stopped, and what it missed.
  last_check=$(grep -E '^checking (for|whether to (enable|build|include|use)) ' "$WORK/configure.log" |
    grep -iE 'support|extension|enable' | tail -n 1 || true)
  error=$(grep -E '^configure: error:' "$WORK/configure.log" | tail -n 1 | sed 's/^configure: error: //' || true)
  pc=$(grep -oE "No package '[^']+' found|Package requirements \([^)]*\)" "$WORK/configure.log" | tail -n 1 || true)
  cp "$SRC/config.log" "$CACHE/last-config.log" 2>/dev/null || true
  error=${error% Check config.log for more information.}
  die "configure failed at \"${last_check:-?}\": ${error:-see above}${pc:+ [$pc]} (details: $CACHE/last-config.log). A library an extension needs is missing: install its Debian -dev package (scripts/setup-php.sh --list names them for the catalogue) or remove the extension with PHP_EXTENSIONS=-name"
fi

# libtool compiles every file twice: position-independent for libphp.so and again for the
# CLI. Compile once, and link the CLI from the same objects: half the compile time.
if grep -q '^build_old_libs=yes$' libtool && grep '^BUILD_CLI = ' Makefile | grep -q '_OBJS:\.lo=\.o)'; then
  sed -i 's/^build_old_libs=yes$/build_old_libs=no/' libtool
  sed -i '/^BUILD_CLI = /s/\$(\([A-Z_]*_OBJS\):\.lo=\.o)/$(\1)/g' Makefile
else
  say "note: libtool or the Makefile of $(basename "$SRC") is not as expected; compiling each file twice"
fi

jobs=$(nproc 2>/dev/null || echo 2)
start=$(date +%s)
# compile_php PROF_FLAGS LOG: make all, with PHP's LDFLAGS (its configure does not carry
# them into the Makefile) and the profile flags of a PGO build.
compile_php() {
  make -j"$jobs" LDFLAGS="$PHP_LDFLAGS" PROF_FLAGS="$1" >"$WORK/$2" 2>&1 ||
    { tail -n 40 "$WORK/$2" >&2; die "make failed (log above)"; }
}
if [ "$PHP_PGO" = 1 ]; then
  say "PGO 1/3: compiling instrumented (-fprofile-generate) with $jobs jobs (about 6-8 minutes on 2 cores)"
  compile_php -fprofile-generate make-prof-gen.log
  say "PGO 2/3: training (scripts/pgo/train.sh: the framework app, WordPress, Zend/bench.php)"
  "$HERE/pgo/train.sh" "$SRC" "$WORK/pgo" >"$WORK/pgo-train.log" 2>&1 ||
    { tail -n 20 "$WORK/pgo-train.log" >&2; die "the PGO training run failed (log above)"; }
  grep '^train' "$WORK/pgo-train.log" | while read -r line; do say "  $line"; done || true
  # The profiles libphp.so is compiled with: those of its position-independent objects
  # (in .libs/), which the CLI shares only when each file is compiled once (above).
  profiles=$(find . -path '*/.libs/*.gcda' | wc -l)
  [ "$profiles" -gt 100 ] || die "the PGO training wrote $profiles profiles for libphp's objects (expected one per object file; $(find . -name '*.gcda' | wc -l) in all): PGO needs the CLI linked from libphp's objects, see the note above"
  say "PGO 3/3: compiling with the profile of $profiles files"
  make prof-clean >/dev/null 2>&1
  compile_php "-fprofile-use -fprofile-correction -Wno-missing-profile" make.log
else
  say "compiling with $jobs jobs (about 5-7 minutes on 2 cores)"
  compile_php "" make.log
fi
rm -rf "$PREFIX"
make install LDFLAGS="$PHP_LDFLAGS" PROF_FLAGS="" >"$WORK/install.log" 2>&1 || { tail -n 40 "$WORK/install.log" >&2; die "make install failed"; }
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
# The Debian packages libphp's shared libraries come from, for a runtime image
# (Containerfile) or another machine: one package per line.
# (With merged /usr, ldd may name /lib/… where dpkg knows /usr/lib/…: ask for both.)
for lib in $(ldd "$PREFIX/lib/libphp.so" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }'); do
  for path in "$lib" "/usr$lib" "$(readlink -f "$lib")"; do
    owner=$(dpkg -S "$path" 2>/dev/null | head -n 1 | cut -d: -f1) && [ -n "$owner" ] && { echo "$owner"; break; }
  done
done | sort -u >"$PREFIX/share/runtime-packages"
printf '%s\n' $selected >"$PREFIX/share/extensions"
touch "$PREFIX/.complete"
say "built ZTS PHP $("$PREFIX/bin/php-config" --version) in $(($(date +%s) - start))s: $PREFIX"
echo "$PREFIX/bin/php-config"
