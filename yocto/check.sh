#!/usr/bin/env bash
# The Yocto layer's checks (tests/run.sh runs this), one line each with PASS/FAIL and time.
#
# Without bitbake: ember-crates.inc matches Cargo.lock, the recipe's version follows
# Cargo.toml's, oelint-adv finds nothing against the oldest supported release.
#
# With real bitbake, from the source tarballs in ../shared/yocto (OE-core whinlatter with
# bitbake 2.16; OE-core wrynose with bitbake 2.18 and meta-openembedded wrynose, so that
# the networking-layer dynamic layer is parsed too), for each release:
#   bitbake -p; bitbake-layers show-layers; bitbake -e ember and ember-image-minimal with
#   the values that matter asserted; bitbake -g ember-image-minimal (the image's task
#   graph: every build and runtime dependency resolves); bitbake ember ember-service-getty
#   -c unpack after a real fetch of every crate; OE-core's own update_crates code run on
#   the unpacked ${S} gives the committed ember-crates.inc; ember's license check,
#   do_install and packaging (and ember-service-getty's do_install) run as bitbake writes
#   them, for the recipe's PACKAGECONFIG and others; `ember check` on what they install.
# Once: `cargo build --frozen --offline` of the unpacked, vendored tree with the recipe's
# features and CARGO_HOME set up by cargo.bbclass's configure step: the crates inc is
# complete. do_compile with OE's own Rust is not run (its cross toolchain takes hours here).
#
# usage: yocto/check.sh [--lint-only] [--dry-run] [--check-layer] [--check-layer-only] [--release NAME]...
#   --lint-only         only the checks without bitbake
#   --dry-run           also bitbake -n ember-image-minimal on each release (5 to 8 minutes
#                       each on 2 cores; tests/run.sh asks for it)
#   --check-layer       also yocto-check-layer on each release (15 minutes or more each)
#   --check-layer-only  the set-up and yocto-check-layer, none of the other bitbake steps
#   --release NAME      whinlatter or wrynose (default: both)
# environment:
#   EMBER_SHARED        the shared directory holding yocto/*.tar.xz (default: ../shared
#                       beside the repository, else /work/shared)
#   EMBER_YOCTO_CACHE   unpacked sources, downloads, build directories and logs, kept
#                       between runs (default: ember-yocto in the build user's home)
#   EMBER_YOCTO_USER    the user bitbake runs as when this runs as root (default ember-yocto)
#
# Needs Debian or Ubuntu; as root it installs what is missing (host packages for OE, the
# en_US.UTF-8 locale, oelint-adv) and creates the build user: bitbake refuses to run as root.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")

LINT_ONLY=0
CHECK_LAYER=0
DRY_RUN=0
RELEASE_STEPS=1
RELEASES=()
while [ $# -gt 0 ]; do
    case "$1" in
        --lint-only) LINT_ONLY=1 ;;
        --check-layer) CHECK_LAYER=1 ;;
        --check-layer-only) CHECK_LAYER=1; RELEASE_STEPS=0 ;;
        --dry-run) DRY_RUN=1 ;;
        --release) RELEASES+=("$2"); shift ;;
        *) sed -n 's/^# usage: /usage: /p' "$0" >&2; exit 2 ;;
    esac
    shift
done
[ ${#RELEASES[@]} -gt 0 ] || RELEASES=(whinlatter wrynose)

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

T0=$(date +%s)
STEP_LOG=$(mktemp)
trap 'rm -f "$STEP_LOG"' EXIT

# step NAME COMMAND...: runs COMMAND with its output in a log; prints one line. A line
# "SUMMARY: ..." in the output is appended to the PASS line. On failure: the log's tail.
# COMMAND runs in a subshell with errexit on: outside any `||` or `if`, where bash would
# ignore errexit, so that every failing command inside the step functions fails the step.
step() {
    local name=$1; shift
    local start rc summary
    start=$(date +%s)
    set +e
    ( set -e; "$@" ) >"$STEP_LOG" 2>&1
    rc=$?
    set -e
    if [ -n "${LOGS:-}" ]; then cp "$STEP_LOG" "$LOGS/$(printf '%s' "$name" | tr -c 'A-Za-z0-9._-' '_').log"; fi
    summary=$(sed -n 's/^SUMMARY: //p' "$STEP_LOG" | tail -n 1)
    if [ $rc = 0 ]; then
        printf 'PASS %-58s %4ss%s\n' "$name" "$(($(date +%s) - start))" "${summary:+  ($summary)}"
    else
        printf 'FAIL %-58s %4ss\n' "$name" "$(($(date +%s) - start))"
        tail -n 40 "$STEP_LOG" | sed 's/^/    /'
        [ -z "${LOGS:-}" ] || echo "    full logs: $LOGS"
        exit 1
    fi
}

# ---------------------------------------------------------------- checks without bitbake

# The oldest release the layer supports: the first of LAYERSERIES_COMPAT_ember.
OLDEST=$(sed -n 's/^LAYERSERIES_COMPAT_ember = "\([a-z]*\).*/\1/p' "$HERE/meta-ember/conf/layer.conf")
[ -n "$OLDEST" ] || { echo "no LAYERSERIES_COMPAT_ember in meta-ember/conf/layer.conf" >&2; exit 1; }

# Cargo.toml's version (the ember package's: the first version = line).
recipe_version_of_cargo() { sed -n 's/^version = "\(.*\)"/\1/p' "$REPO/Cargo.toml" | head -1; }

recipe_version() {
    local version
    version=$(recipe_version_of_cargo)
    if [ ! -e "$HERE/meta-ember/recipes-core/ember/ember_$version.bb" ]; then
        echo "Cargo.toml says version $version: rename meta-ember/recipes-core/ember/ember_*.bb to ember_$version.bb"
        return 1
    fi
    echo "SUMMARY: ember_$version.bb"
}

install_oelint() {
    if ! command -v oelint-adv >/dev/null; then
        if ! python3 -m pip --version >/dev/null 2>&1; then
            $SUDO apt-get update -qq
            $SUDO apt-get install -y -qq --no-install-recommends python3-pip
        fi
        # Debian and Ubuntu's python3 is externally managed (PEP 668).
        python3 -m pip install --quiet --user oelint-adv 2>/dev/null \
            || python3 -m pip install --quiet oelint-adv 2>/dev/null \
            || python3 -m pip install --quiet --user --break-system-packages oelint-adv
    fi
}

oelint() {
    cd "$HERE/meta-ember"
    local files
    mapfile -t files < <(find . \( -name '*.bb' -o -name '*.bbappend' -o -name '*.inc' -o -name '*.conf' \) | sort)
    # homepageping needs the network; inconspaces/notneededspace fire only on the generated
    # ember-crates.inc, written as `bitbake -c update_crates` writes it (SRC_URI += " \).
    oelint-adv --quiet --release "$OLDEST" --hide info \
        --suppress oelint.vars.homepageping \
        --suppress oelint.vars.inconspaces --suppress oelint.vars.notneededspace \
        "${files[@]}"
    echo "SUMMARY: ${#files[@]} files, --release $OLDEST"
}

# Every member of the cargo workspace is in the recipe's EMBER_CRATES_SRC, itself or through
# a directory above it (file://ember-src/adapters brings every adapter, a new one too):
# cargo loads them all, even to build one package (the vendored build below would fail
# too, later and less clearly). Each entry brings a member: nothing stale.
workspace_members() {
    python3 - "$REPO" "$HERE/meta-ember/recipes-core/ember/ember_$(recipe_version_of_cargo).bb" <<'PY'
import glob, os, re, sys, tomllib
repo, recipe_file = sys.argv[1], sys.argv[2]
members = set()
for m in tomllib.load(open(os.path.join(repo, "Cargo.toml"), "rb"))["workspace"]["members"]:
    # Members may be globs (cargo's own rule: the directories with a Cargo.toml).
    for path in sorted(glob.glob(os.path.join(repo, m))) or [os.path.join(repo, m)]:
        if os.path.exists(os.path.join(path, "Cargo.toml")):
            members.add(os.path.normpath(os.path.relpath(path, repo)))
        elif not glob.has_magic(m):
            sys.exit("workspace member %s has no Cargo.toml" % m)
block = re.search(r'^EMBER_CRATES_SRC = "(.*?)"', open(recipe_file).read(), re.S | re.M)
if not block:
    sys.exit("no EMBER_CRATES_SRC in %s" % recipe_file)
listed = [os.path.normpath(x) for x in re.findall(r"file://ember-src/(\S+)", block.group(1))]
# The root package "." is its Cargo.toml (in EMBER_SRC) and src/.
wanted = {"src" if m == "." else m for m in members}
covers = lambda entry, member: member == entry or member.startswith(entry + "/")
bad = False
for m in sorted(wanted):
    if not any(covers(e, m) for e in listed):
        print("Cargo.toml's workspace member %s is not in EMBER_CRATES_SRC: add file://ember-src/%s "
              "(or a directory above it) to it in %s" % (m, m, recipe_file))
        bad = True
for e in listed:
    if not os.path.isdir(os.path.join(repo, e)):
        print("EMBER_CRATES_SRC has file://ember-src/%s, which is no directory of the tree" % e)
        bad = True
    elif not any(covers(e, m) for m in wanted):
        print("EMBER_CRATES_SRC has file://ember-src/%s, which holds no member of Cargo.toml's workspace: remove it" % e)
        bad = True
if bad:
    sys.exit(1)
print("ok: %s" % ", ".join("%s <- file://ember-src/%s" % (m, next(e for e in listed if covers(e, m))) for m in sorted(wanted)))
print("SUMMARY: %d members: %s" % (len(wanted), " ".join(sorted(wanted))))
PY
}


echo "== yocto: meta-ember without bitbake"
step "ember-crates.inc matches Cargo.lock" python3 "$HERE/update-crates.py" --check
step "recipe version follows Cargo.toml" recipe_version
step "EMBER_CRATES_SRC lists the workspace's members" workspace_members
step "install oelint-adv" install_oelint
PATH="$(python3 -m site --user-base)/bin:$PATH"
step "oelint-adv" oelint
[ $LINT_ONLY = 0 ] || exit 0

# ---------------------------------------------------------------- set-up for bitbake

SHARED=${EMBER_SHARED:-$REPO/../shared}
[ -d "$SHARED/yocto" ] || SHARED=/work/shared
[ -d "$SHARED/yocto" ] || { echo "no yocto/ in ${EMBER_SHARED:-$REPO/../shared} nor /work/shared: set EMBER_SHARED" >&2; exit 1; }
SHARED=$(cd "$SHARED/yocto" && pwd)

# Each release: OE-core, its bitbake, and the extra layers (from tarballs in $SHARED).
declare -A OE_TARBALL BB_TARBALL EXTRA_TARBALL EXTRA_LAYERS
OE_TARBALL[whinlatter]=oe-core-whinlatter; BB_TARBALL[whinlatter]=bitbake-2.16
EXTRA_TARBALL[whinlatter]=""; EXTRA_LAYERS[whinlatter]=""
OE_TARBALL[wrynose]=oe-core-wrynose; BB_TARBALL[wrynose]=bitbake-2.18
# meta-networking (mosquitto) needs meta-oe and meta-python.
EXTRA_TARBALL[wrynose]=meta-openembedded-wrynose; EXTRA_LAYERS[wrynose]="meta-oe meta-python meta-networking"

tarball() {  # tarball PREFIX: the one file PREFIX-<commit>.tar.xz in $SHARED
    local found=("$SHARED/$1"-*.tar.xz)
    [ ${#found[@]} = 1 ] && [ -f "${found[0]}" ] || { echo "expected one $SHARED/$1-*.tar.xz" >&2; return 1; }
    echo "${found[0]}"
}

if [ "$(id -u)" = 0 ]; then
    BUILD_USER=${EMBER_YOCTO_USER:-ember-yocto}
else
    BUILD_USER=$(id -un)
fi

# The host packages OE-core's documentation lists for Debian (sanity.bbclass checks the
# tools; bitbake and the fetchers need the Python modules), without liblz4-tool, which is
# only a transitional name for lz4; and busybox-static, the image's sh and mount, which run
# ember's mounts service in fstab_boot.
HOST_PACKAGES="gawk wget git diffstat unzip texinfo gcc build-essential chrpath socat cpio
python3 python3-pip python3-pexpect xz-utils debianutils iputils-ping python3-git
python3-jinja2 python3-subunit zstd lz4 file locales libacl1 util-linux
busybox-static"

host_packages() {
    local missing=() p
    for p in $HOST_PACKAGES; do
        dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
    fi
    echo "SUMMARY: ${#missing[@]} installed${missing[*]:+: ${missing[*]}}"
}

# bitbake's sanity check wants a UTF-8 locale; en_US.UTF-8 is the one OE documents.
host_locale() {
    if locale -a 2>/dev/null | grep -qix 'en_US\.utf-\?8'; then echo "SUMMARY: present"; return; fi
    $SUDO sed -i 's/^# *\(en_US\.UTF-8 UTF-8\)/\1/' /etc/locale.gen
    grep -q '^en_US\.UTF-8 UTF-8' /etc/locale.gen || echo 'en_US.UTF-8 UTF-8' | $SUDO tee -a /etc/locale.gen
    $SUDO locale-gen
    echo "SUMMARY: generated"
}

# bitbake refuses to run as root.
build_user() {
    if id "$BUILD_USER" >/dev/null 2>&1; then echo "SUMMARY: $BUILD_USER exists"; return; fi
    useradd --create-home --shell /bin/bash "$BUILD_USER"
    echo "SUMMARY: $BUILD_USER created"
}

echo "== yocto: set-up"
step "host packages" host_packages
step "locale en_US.UTF-8" host_locale
[ "$(id -u)" != 0 ] || step "build user" build_user
BUILD_HOME=$(getent passwd "$BUILD_USER" | cut -d: -f6)
CACHE=${EMBER_YOCTO_CACHE:-$BUILD_HOME/ember-yocto}
LOGS=$CACHE/logs
# The build user's environment: a clean one (no root's PATH with its pyenv or rustup).
BUILD_ENV=(env -i HOME="$BUILD_HOME" USER="$BUILD_USER" LANG=en_US.UTF-8 LC_ALL=en_US.UTF-8
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)

as_builder() {  # as_builder SCRIPT: bash -c SCRIPT as the build user, in the clean environment
    if [ "$(id -u)" = 0 ]; then
        runuser -u "$BUILD_USER" -- "${BUILD_ENV[@]}" bash -c "$1"
    else
        "${BUILD_ENV[@]}" bash -c "$1"
    fi
}

prepare_cache() {
    if [ "$(id -u)" = 0 ]; then
        install -d -o "$BUILD_USER" -g "$(id -gn "$BUILD_USER")" "$CACHE"
    else
        mkdir -p "$CACHE"
    fi
    as_builder "mkdir -p '$CACHE/src' '$CACHE/downloads' '$LOGS'"
    rm -f "$LOGS"/*.log 2>/dev/null || true
    echo "SUMMARY: $CACHE"
}

# unpack PREFIX: $CACHE/src/<tarball name>, unpacked once (the name carries the commit).
unpack() {
    local tb dir
    tb=$(tarball "$1")
    dir="$CACHE/src/$(basename "$tb" .tar.xz)"
    if [ ! -e "$dir/.unpacked" ]; then
        as_builder "rm -rf '$dir' && mkdir -p '$dir' && tar -xJf '$tb' -C '$dir' --strip-components=1 && touch '$dir/.unpacked'"
        echo "unpacked $(basename "$tb")"
    fi
}

unpack_all() {
    local rel n=0 before
    before=$(ls "$CACHE/src" | wc -l)
    for rel in "${RELEASES[@]}"; do
        unpack "${OE_TARBALL[$rel]}"; unpack "${BB_TARBALL[$rel]}"
        [ -z "${EXTRA_TARBALL[$rel]}" ] || unpack "${EXTRA_TARBALL[$rel]}"
        # oe-init-build-env finds bitbake at <OE-core>/bitbake.
        as_builder "ln -sfn '$CACHE/src/$(basename "$(tarball "${BB_TARBALL[$rel]}")" .tar.xz)' '$(oe_dir "$rel")/bitbake'"
    done
    n=$(( $(ls "$CACHE/src" | wc -l) - before ))
    echo "SUMMARY: $n unpacked, $(ls "$CACHE/src" | wc -l) in $CACHE/src"
}

oe_dir() { echo "$CACHE/src/$(basename "$(tarball "${OE_TARBALL[$1]}")" .tar.xz)"; }
extra_dir() { echo "$CACHE/src/$(basename "$(tarball "${EXTRA_TARBALL[$1]}")" .tar.xz)"; }

# The layer as the build user sees it: a copy of the working tree's files (tracked, and
# untracked but not ignored), since the checkout may sit where that user cannot read
# (CI's clone under /root). The recipe's source symlink (files/ember-src -> the top of
# the tree) points into the copy. tar keeps mtimes, so bitbake's parse cache stays valid.
TREE=$CACHE/ember
copy_tree() {
    local list
    list=$(mktemp)
    if git -C "$REPO" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        git -C "$REPO" ls-files -z --cached --others --exclude-standard \
            | (cd "$REPO" && xargs -0 -r sh -c 'for f; do [ -e "$f" ] || [ -L "$f" ] && printf "%s\0" "$f"; done' sh) >"$list"
    else
        (cd "$REPO" && find . -path ./target -prune -o -path ./.git -prune -o \( -type f -o -type l \) -print0) >"$list"
    fi
    chmod 644 "$list"
    as_builder "rm -rf '$TREE' && mkdir -p '$TREE'"
    (cd "$REPO" && tar --null -T "$list" -cf -) | as_builder "tar -xf - -C '$TREE'"
    echo "SUMMARY: $(tr -cd '\0' <"$list" | wc -c) files in $TREE"
    rm -f "$list"
}

echo "== yocto: cache"
step "cache directory" prepare_cache
step "unpack OE-core, bitbake, meta-openembedded" unpack_all
step "copy of the tree for the build user" copy_tree

# ---------------------------------------------------------------- per release

build_dir() { echo "$CACHE/build-$1"; }

# bb RELEASE SCRIPT: SCRIPT in that release's build environment, as the build user.
bb() {
    as_builder "cd '$(oe_dir "$1")' && . ./oe-init-build-env '$(build_dir "$1")' >/dev/null && $2"
}

write_if_changed() {  # write_if_changed FILE (content on stdin), as the build user
    local tmp
    tmp=$(mktemp); cat >"$tmp"; chmod 644 "$tmp"
    as_builder "mkdir -p '$(dirname "$1")' && { cmp -s '$tmp' '$1' || cp '$tmp' '$1'; }"
    rm -f "$tmp"
}

configure_build() {
    local rel=$1 oe build layers l
    oe=$(oe_dir "$rel"); build=$(build_dir "$rel")
    layers="$oe/meta $TREE/yocto/meta-ember"
    for l in ${EXTRA_LAYERS[$rel]}; do layers="$layers $(extra_dir "$rel")/$l"; done
    write_if_changed "$build/conf/bblayers.conf" <<EOF
# Written by ember's yocto/check.sh.
LCONF_VERSION = "7"
BBPATH = "\${TOPDIR}"
BBFILES ?= ""
BBLAYERS = "$layers"
EOF
    {
        cat <<EOF
# Written by ember's yocto/check.sh: what a vendor adds (see meta-ember's README) ...
MACHINE = "qemux86-64"
DISTRO = "nodistro"
INIT_MANAGER = "ember"

# ... and what this machine needs.
CONF_VERSION = "2"
DL_DIR = "$CACHE/downloads"
# Only package registries are reachable here: the sanity check's fetch of
# CONNECTIVITY_CHECK_URIS (the Yocto Project's site) would fail.
CONNECTIVITY_CHECK_URIS = ""
# Keep the server up between this script's bitbake commands (one parse of the configuration).
BB_SERVER_TIMEOUT = "60"
EOF
        if [ "$rel" = wrynose ]; then cat <<'EOF'
# wrynose's nodistro inherits uninative, which fetches a prebuilt native libc from the
# Yocto Project's download site: unreachable here, and nothing native is built here.
INHERIT:remove = "uninative"
EOF
        fi
        if [ "$rel" = whinlatter ]; then cat <<'EOF'
# bitbake 2.16's crate fetcher asks crates.io's API host (crates.io/api/v1/crates/NAME/
# VERSION/download), which does not resolve here; the registry's static download host,
# the one cargo itself downloads from (the "dl" of index.crates.io/config.json:
# https://static.crates.io/crates), has every crate at NAME/NAME-VERSION.crate.
# (bitbake 2.18 downloads from the static host itself.)
PREMIRRORS:prepend = "https://crates.io/api/v1/crates/([^/]+)/([^/]+)/download https://static.crates.io/crates/\1/\1-\2.crate "
EOF
        fi
    } | write_if_changed "$build/conf/local.conf"
    echo "SUMMARY: $build"
}

# The recipes the layer provides on this release (the mosquitto service only with
# meta-networking, through BBFILES_DYNAMIC).
expected_recipes() {
    echo ember ember-image-minimal ember-service-getty
    [[ " ${EXTRA_LAYERS[$1]} " != *" meta-networking "* ]] || echo ember-service-mosquitto
}

parse() {
    bb "$1" "bitbake -p"
    local found expected
    found=$(bb "$1" "bitbake-layers show-recipes 'ember*'" | sed -n 's/^\(ember[^:]*\):$/\1/p' | sort | xargs)
    expected=$(expected_recipes "$1" | xargs -n1 | sort | xargs)
    [ "$found" = "$expected" ] || { echo "recipes: \"$found\", expected \"$expected\""; return 1; }
    echo "SUMMARY: recipes $found"
}

show_layers() {
    local out l
    out=$(bb "$1" "bitbake-layers show-layers")
    echo "$out"
    for l in "$(oe_dir "$1")/meta" "$TREE/yocto/meta-ember" $(for l in ${EXTRA_LAYERS[$1]}; do echo "$(extra_dir "$1")/$l"; done); do
        grep -q "[[:space:]]$l[[:space:]]" <<<"$out" || { echo "layer $l missing"; return 1; }
    done
    echo "SUMMARY: $(awk '$3 ~ /^[0-9]+$/ {print $1}' <<<"$out" | xargs)"
}

# getv FILE VAR: VAR's value in `bitbake -e` output, blanks squeezed and trimmed.
getv() {
    sed -n "s/^\(export \)\?$2=\"\(.*\)\"\$/\2/p" "$1" | tail -n 1 | tr -s ' \t' '  ' | sed 's/^ //; s/ $//'
}
# expect FILE VAR VALUE / expect_has FILE VAR WORD / expect_lacks FILE VAR WORD
expect() {
    local v; v=$(getv "$1" "$2")
    [ "$v" = "$3" ] || { echo "$2 is \"$v\", expected \"$3\""; return 1; }
    echo "ok: $2 = \"$v\""
}
expect_has() {
    local v; v=" $(getv "$1" "$2") "
    [[ "$v" == *" $3 "* ]] || { echo "$2 (\"$v\") lacks $3"; return 1; }
    echo "ok: $2 has $3"
}
expect_lacks() {
    local v; v=" $(getv "$1" "$2") "
    [[ "$v" != *" $3 "* ]] || { echo "$2 (\"$v\") has $3"; return 1; }
    echo "ok: $2 lacks $3"
}

env_ember() {
    local f=$LOGS/$1-env-ember.txt
    bb "$1" "bitbake -e ember" >"$f"
    expect "$f" PACKAGECONFIG "mqtt dbus analyze"
    # What cargo.bbclass's oe_cargo_build passes: CARGO_BUILD_FLAGS, then
    # PACKAGECONFIG_CONFARGS (in the order of the PACKAGECONFIG flags' names).
    expect "$f" PACKAGECONFIG_CONFARGS "--features ember/analyze -p ember-dbus -p ember-mqtt"
    expect_has "$f" CARGO_BUILD_FLAGS --no-default-features
    expect_has "$f" CARGO_BUILD_FLAGS "-p ember"
    expect_has "$f" CARGO_BUILD_FLAGS --frozen
    expect "$f" EMBER_BINARIES "ember ember-mqtt ember-dbus"
    expect "$f" PACKAGES "ember-mqtt ember-dbus ember-service-dbus ember-service-syslog ember-src ember-dbg ember-staticdev ember-dev ember-doc ember-locale ember"
    expect "$f" USERADD_PACKAGES "ember-mqtt ember-dbus"
    # The useradd class (inherited, deferred): its preinst runs shadow's useradd at rootfs.
    expect_has "$f" PACKAGE_WRITE_DEPS shadow-native
    expect_has "$f" RDEPENDS:ember ember-mqtt
    expect_has "$f" RDEPENDS:ember ember-dbus
    expect "$f" RDEPENDS:ember-mqtt ember
    expect "$f" RDEPENDS:ember-dbus ember
    # Every name ember answers to (src/cli: init, telinit, halt, reboot, poweroff, shutdown).
    expect "$f" ALTERNATIVE:ember "init telinit halt reboot poweroff shutdown"
    expect "$f" ALTERNATIVE_TARGET /sbin/ember
    expect "$f" ALTERNATIVE_PRIORITY 300
    expect_has "$f" RRECOMMENDS:ember ember-service-getty
    # packagegroup-core-boot recommends busybox-syslog (OE-core's default): its service too.
    expect "$f" VIRTUAL-RUNTIME_base-utils-syslog busybox-syslog
    expect_has "$f" RRECOMMENDS:ember ember-service-syslog
    expect "$f" CONFFILES:ember-service-syslog /etc/ember/services.d/syslog.toml
    expect "$f" CONFFILES:ember "/etc/ember/ember.toml /etc/ember/services.d/mounts.toml /etc/ember/services.d/loopback.toml /etc/ember/services.d/modules.toml /etc/ember/services.d/sysctl.toml /etc/ember/services.d/postinsts.toml"
    expect "$f" CONFFILES:ember-service-dbus /etc/ember/services.d/dbus.toml
    # Built once per CPU tune: nothing machine-specific in it.
    expect "$f" PACKAGE_ARCH "$(getv "$f" TUNE_PKGARCH)"
    expect "$f" VIRTUAL-RUNTIME_init_manager ember
    expect_lacks "$f" DISTRO_FEATURES sysvinit
    expect_lacks "$f" DISTRO_FEATURES systemd
    echo "SUMMARY: $(getv "$f" PACKAGECONFIG_CONFARGS) -p ember --no-default-features; PACKAGE_ARCH $(getv "$f" PACKAGE_ARCH)"
}

env_image() {
    local f=$LOGS/$1-env-image.txt p
    bb "$1" "bitbake -e ember-image-minimal" >"$f"
    for p in packagegroup-core-boot ember ember-service-getty ember-service-dbus; do
        expect_has "$f" PACKAGE_INSTALL "$p"
    done
    if [[ " ${EXTRA_LAYERS[$1]} " == *" meta-networking "* ]]; then
        expect_has "$f" PACKAGE_INSTALL ember-service-mosquitto
    else
        expect_lacks "$f" PACKAGE_INSTALL ember-service-mosquitto
    fi
    expect_lacks "$f" DISTRO_FEATURES sysvinit
    expect_lacks "$f" DISTRO_FEATURES systemd
    expect "$f" VIRTUAL-RUNTIME_init_manager ember
    expect "$f" VIRTUAL-RUNTIME_initscripts ""
    expect "$f" VIRTUAL-RUNTIME_dev_manager ""
    expect "$f" VIRTUAL-RUNTIME_login_manager busybox
    echo "SUMMARY: PACKAGE_INSTALL = $(getv "$f" PACKAGE_INSTALL | tr -s ' ')"
}

# The image's task graph, as bitbake builds it before it runs anything: every build and
# runtime dependency of the image resolves (a missing DEPENDS or RDEPENDS provider is an
# error here, as in a build), and the tasks are ordered (no cycle). `bitbake -g` builds
# the same runqueue as `bitbake -n` and stops there; a dry run then forks a worker per task
# (thousands) that parses the task's recipe once more and returns: minutes of what
# `bitbake -p` already proved. That is --dry-run.
dep_graph() {
    local build r pkg rootfs='"ember-image-minimal.do_rootfs"'
    build=$(build_dir "$1")
    bb "$1" "bitbake -g ember-image-minimal"
    cp "$build/pn-buildlist" "$LOGS/$1-pn-buildlist.txt"
    for r in ember ember-service-getty ember-image-minimal; do
        grep -qx "$r" "$build/pn-buildlist" || { echo "$r is not in the image's build list"; return 1; }
    done
    # The image's packages (and what they depend on at run time) are written before its
    # rootfs is made: the recipes that make them, resolved.
    for pkg in ember ember-service-getty dbus; do
        grep -q "^$rootfs -> \"$pkg\.do_package_write_" "$build/task-depends.dot" \
            || { echo "the image's do_rootfs does not wait for $pkg's packages"; return 1; }
    done
    if [[ " ${EXTRA_LAYERS[$1]} " == *" meta-networking "* ]]; then
        for pkg in ember-service-mosquitto mosquitto; do
            grep -q "^$rootfs -> \"$pkg\.do_package_write_" "$build/task-depends.dot" \
                || { echo "the image's do_rootfs does not wait for $pkg's packages"; return 1; }
        done
    fi
    echo "SUMMARY: $(grep -c . "$build/pn-buildlist") recipes, $(grep -c '^"[^"]*" \[' "$build/task-depends.dot") tasks"
}

# --dry-run: bitbake -n ember-image-minimal.
dry_run() {
    local f=$LOGS/$1-dry-run.txt r
    bb "$1" "bitbake -n ember-image-minimal" >"$f" 2>&1 || { tail -n 40 "$f"; return 1; }
    for r in ember_0.1.0.bb ember-service-getty_1.0.bb ember-image-minimal.bb; do
        grep -q "/$r:do_package_write" "$f" || grep -q "/$r:do_rootfs" "$f" \
            || { echo "no task of $r in the dry run"; return 1; }
    done
    echo "SUMMARY: $(grep -o 'Running task [0-9]* of [0-9]*' "$f" | tail -n 1 | awk '{print $5}') tasks"
}

fetch_unpack() {
    local before after
    before=$(ls "$CACHE/downloads" | grep -c '\.crate$' || true)
    local recipes="ember ember-service-getty"
    [[ " ${EXTRA_LAYERS[$1]} " != *" meta-networking "* ]] || recipes="$recipes ember-service-mosquitto"
    bb "$1" "bitbake $recipes -c unpack"
    after=$(ls "$CACHE/downloads" | grep -c '\.crate$' || true)
    echo "SUMMARY: $(grep -c 'crate://' "$HERE/meta-ember/recipes-core/ember/ember-crates.inc") crates in the inc; $((after - before)) downloaded now, $after in DL_DIR"
}

# OE-core's do_update_crates, as `bitbake -e ember` shows it, run on the unpacked ${S} with
# the host's python3 for nativepython3 (the class needs tomllib: Python 3.11) and writing
# to a scratch file instead of the layer: its output must be the committed inc.
update_crates_class() {
    local f=$LOGS/$1-env-ember.txt out=$CACHE/update-crates-$1.inc script
    script=$(awk '/^do_update_crates\(\) \{$/ {p=1} p {print} p && /^\}$/ {exit}' "$f" \
        | sed "s|^\([[:space:]]*\)TARGET_FILE=.*|\1TARGET_FILE=\"$out\"|")
    grep -q 'nativepython3' <<<"$script" || { echo "no do_update_crates in bitbake -e ember"; return 1; }
    as_builder "nativepython3() { python3 \"\$@\"; }; bbnote() { echo \"NOTE: \$*\"; }; $script
do_update_crates"
    diff -u "$HERE/meta-ember/recipes-core/ember/ember-crates.inc" "$out"
    echo "SUMMARY: identical to ember-crates.inc"
}

# ---------------------------------------------------------------- the vendored cargo build

VENDOR_ENV=$CACHE/vendored-build.env
configure_vendored() {
    bb "$1" "python3 '$HERE/check-install.py' configure '$VENDOR_ENV'"
    # shellcheck disable=SC1090
    . "$VENDOR_ENV"
    grep -A2 '^\[source.crates-io\]' "$CARGO_HOME/config.toml"
    grep -q 'replace-with = "bitbake"' "$CARGO_HOME/config.toml"
    echo "SUMMARY: $CARGO_HOME/config.toml"
}

# The host's cargo on the unpacked tree: cargo.bbclass's CARGO_BUILD_FLAGS without
# --target (this is a host build) and without --release (a debug build is quicker, and
# proves the same: every crate the recipe's features need is vendored), plus
# PACKAGECONFIG_CONFARGS. CARGO_HOME is a copy of the one cargo.bbclass set up, so
# cargo's own lock files stay out of the build user's tree, and so does the target dir.
CARGO_OUT=$CACHE/cargo-target
cargo_vendored() {
    # shellcheck disable=SC1090
    . "$VENDOR_ENV"
    local flags=() skip=0 a home
    for a in $CARGO_BUILD_FLAGS; do
        if [ $skip = 1 ]; then skip=0; continue; fi
        case "$a" in --target) skip=1 ;; --target=*|--release) ;; *) flags+=("$a") ;; esac
    done
    home=$(mktemp -d)
    # Without its [target.<triple>] tables: they name OE's linker wrappers for the cross
    # and native toolchains, which only exist once those are built.
    awk '/^\[/ { skip = ($0 ~ /^\[target\./) } !skip' "$CARGO_HOME/config.toml" >"$home/config.toml"
    cat "$home/config.toml"
    # shellcheck disable=SC2086
    echo "cargo build ${flags[*]} --offline $PACKAGECONFIG_CONFARGS"
    mkdir -p "$CARGO_OUT"
    # shellcheck disable=SC2086
    CARGO_HOME=$home CARGO_TARGET_DIR=$CARGO_OUT CARGO_TERM_PROGRESS_WHEN=never cargo build "${flags[@]}" --offline $PACKAGECONFIG_CONFARGS
    rm -rf "$home"
    for a in $EMBER_BINARIES; do [ -x "$CARGO_OUT/debug/$a" ] || { echo "no $a built"; return 1; }; done
    echo "SUMMARY: $(cargo --version | cut -d' ' -f1-2), $PACKAGECONFIG_CONFARGS"
}

# config_check ROOT: `ember check` and `ember analyze verify` (which the analyze feature
# brings) on the configuration installed in ROOT, with the ember built from the vendored
# tree; every file of services.d is loaded.
config_check() {
    local out n
    out=$("$CARGO_OUT/debug/ember" check --config "$1/etc/ember/ember.toml" 2>&1) \
        || { echo "$out"; echo "ember check fails on the configuration installed in $1"; return 1; }
    echo "$out"
    n=$(find "$1/etc/ember/services.d" -name '*.toml' | wc -l)
    grep -Eq ": ok, $n services?( |$)" <<<"$out" || { echo "ember check did not load the $n services of $1/etc/ember/services.d"; return 1; }
    "$CARGO_OUT/debug/ember" analyze --config "$1/etc/ember/ember.toml" verify \
        || { echo "ember analyze verify fails on the configuration installed in $1"; return 1; }
}

# installed ROOT PATH... / not_installed ROOT PATH...
installed() {
    local root=$1 f; shift
    for f; do [ -e "$root$f" ] || { echo "not installed: $f"; return 1; }; done
}
not_installed() {
    local root=$1 f; shift
    for f; do [ ! -e "$root$f" ] || { echo "installed, though it should not be: $f"; return 1; }; done
}
# table ROOT NAME yes|no: ember.toml has (or lacks) the table [NAME]
table() {
    if grep -q "^\[$2\]" "$1/etc/ember/ember.toml"; then
        [ "$3" = yes ] || { echo "ember.toml has [$2]"; return 1; }
    else
        [ "$3" = no ] || { echo "ember.toml lacks [$2]"; return 1; }
    fi
}

# The preinsts useradd wrote, run as the rootfs runs them (D set to the root) with the
# host's shadow tools (OE uses its shadow-native), on a scratch /etc: the users and the
# group the adapters run as are made. shadow's --root wants root.
run_preinsts() {
    local dir=$1 scratch p
    shift
    if [ "$(id -u)" != 0 ]; then echo "not root: the preinsts were not run"; return; fi
    scratch=$(mktemp -d)
    mkdir -p "$scratch/etc"
    printf 'root:x:0:0:root:/root:/bin/sh\n' >"$scratch/etc/passwd"
    printf 'root:x:0:\n' >"$scratch/etc/group"
    printf 'root:*:19000:0:99999:7:::\n' >"$scratch/etc/shadow"
    printf 'root:*::\n' >"$scratch/etc/gshadow"
    for p in "$dir"/preinst.*; do D=$scratch sh "$p"; done
    cat "$scratch/etc/passwd" "$scratch/etc/group"
    for p; do
        case "$p" in
            user:*) grep -q "^${p#user:}:x:[0-9]*:[0-9]*::/nonexistent:/bin/false\$" "$scratch/etc/passwd" \
                        || { echo "no system user ${p#user:}"; return 1; } ;;
            group:*) grep -q "^${p#group:}:" "$scratch/etc/group" || { echo "no group ${p#group:}"; return 1; } ;;
        esac
    done
    rm -rf "$scratch"
}

# What each chroot check below runs first, in a mount namespace of its own (`unshare -m
# sh -eu -c '...'"$CHROOT_PRELUDE"'...'`, after setting $svc and $applets): $cmd, the shell
# command of the service file $svc; $t, a tmpfs removed on exit, with busybox in $t/bin
# and a link to it for each applet named in $applets.
CHROOT_PRELUDE='
cmd=$(python3 -c "import tomllib,sys; c=tomllib.load(open(sys.argv[1],\"rb\"))[\"command\"]; assert c[:2]==[\"/bin/sh\",\"-c\"], c; print(c[2])" "$svc")
t=$(mktemp -d); trap "umount -R $t 2>/dev/null || true; rmdir $t 2>/dev/null || true" EXIT
mount -t tmpfs -o mode=0755 tmpfs "$t"
mkdir -p "$t/bin"
cp "$(command -v busybox)" "$t/bin/busybox"
for a in $applets; do ln -s busybox "$t/bin/$a"; done
'

# The boot's file system set-up, which ember leaves to a service (services.d/mounts.toml,
# in the ember package): every other service installed is ordered after it (but lo's,
# sysctl's and those mounts is after), and its
# command, run by busybox (the image's sh and mount) in a chroot on a tmpfs in a mount
# namespace of its own (nothing of the host's is remounted), with OE-core's own fstab
# (base-files') and base-files' /var layout, and the root mounted read-only as a kernel
# command line without `rw` leaves it (and an nfs line, which is left alone: no
# network here): the root ends read-write, /var/volatile a tmpfs,
# /var/log writable, /dev/fd there; and with fstab's root line as OE-core's
# read_only_rootfs_hook rewrites it (read-only-rootfs), the root stays read-only and
# /var/log is still writable. Needs root (mounts); skipped otherwise.
fstab_boot() {
    local root=$1 fstab=$2 svc=$1/etc/ember/services.d/mounts.toml
    [ -f "$svc" ] || { echo "no /etc/ember/services.d/mounts.toml in $root: nothing mounts /etc/fstab's file systems or remounts the root read-write"; return 1; }
    python3 - "$root/etc/ember/services.d" <<'PY2'
import os, sys, tomllib
d = sys.argv[1]
bad = False
# ember's other boot services need no file system of fstab's: lo up, sysctl, and what
# mounts itself is after (the modules).
exempt = {"mounts", "loopback", "sysctl"} | set(tomllib.load(open(os.path.join(d, "mounts.toml"), "rb")).get("after", []))
for f in sorted(os.listdir(d)):
    name = f[:-len(".toml")]
    if not f.endswith(".toml") or name in exempt:
        continue
    spec = tomllib.load(open(os.path.join(d, f), "rb"))
    if "mounts" not in spec.get("after", []) + spec.get("requires", []):
        print("services.d/%s is not ordered after mounts (after = [\"mounts\"])" % f)
        bad = True
    else:
        print("ok: %s after mounts" % name)
sys.exit(1 if bad else 0)
PY2
    if [ "$(id -u)" != 0 ]; then echo "not root: the mounts service was not run"; return; fi
    command -v busybox >/dev/null || { echo "no busybox on the host (busybox-static)"; return 1; }
    local mode
    for mode in rw read-only-rootfs; do
        echo "== mounts.toml's command, fstab's root line: $mode"
        unshare -m --propagation private sh -eu -c '
            svc=$1 fstab=$2 mode=$3 applets="sh mount awk mkdir chmod ln swapon cat touch grep"
            '"$CHROOT_PRELUDE"'
            mkdir -p "$t/bin" "$t/etc" "$t/proc" "$t/dev" "$t/run" "$t/var/volatile/log" "$t/var/volatile/tmp"
            ln -s volatile/log "$t/var/log"; ln -s volatile/tmp "$t/var/tmp"
            cp "$fstab" "$t/etc/fstab"
            # A network file system: left to a service of the board, after its network
            # (mountall.sh leaves them to mountnfs.sh); with no network here, trying it fails.
            echo "server:/export /mnt/nfs nfs defaults 0 0" >>"$t/etc/fstab"; mkdir -p "$t/mnt/nfs"
            if [ "$mode" = read-only-rootfs ]; then
                sed -i -e "/^[#[:space:]]*\/dev\/root/{s/defaults/ro/;s/\([[:space:]]*[[:digit:]]\)\([[:space:]]*\)[[:digit:]]\$/\1\20/}" "$t/etc/fstab"
                grep -q "^/dev/root .* ro " "$t/etc/fstab"
            fi
            # What ember mounts before any service (pid1/early.rs), /dev a tmpfs here.
            mount -t proc proc "$t/proc"
            mount -t tmpfs -o mode=0755 tmpfs "$t/dev"
            mknod -m 666 "$t/dev/null" c 1 3; mkdir "$t/dev/pts"
            mount -t devpts -o newinstance devpts "$t/dev/pts"
            mount -t tmpfs -o mode=0755 tmpfs "$t/run"
            mount -o remount,ro "$t"
            rc=0; chroot "$t" /bin/sh -c "$cmd" || rc=$?
            chroot "$t" /bin/cat /proc/mounts
            [ $rc = 0 ] || { echo "the command exited $rc"; exit 1; }
            chroot "$t" /bin/sh -c "grep -q \"^tmpfs /var/volatile tmpfs \" /proc/mounts" || { echo "/var/volatile is not mounted"; exit 1; }
            ! grep -q " $t/mnt/nfs " /proc/self/mounts || { echo "the nfs entry was mounted"; exit 1; }
            chroot "$t" /bin/touch /var/log/written /var/tmp/written || { echo "/var/log or /var/tmp not writable"; exit 1; }
            [ -L "$t/dev/fd" ] && [ -L "$t/dev/stdin" ] || { echo "no /dev/fd or /dev/stdin"; exit 1; }
            if [ "$mode" = rw ]; then
                chroot "$t" /bin/touch /etc/written || { echo "the root is still read-only"; exit 1; }
            elif chroot "$t" /bin/touch /etc/written 2>/dev/null; then
                echo "the root was remounted read-write, though fstab says ro"; exit 1
            fi
            echo "ok: $mode"
        ' sh "$svc" "$fstab" "$mode"
    done
}

# The system bus's command (services.d/dbus.toml, in ember-service-dbus), run by busybox in
# a chroot on a read-only tmpfs (read-only-rootfs: /var/lib/dbus cannot be written, so
# dbus-uuidgen --ensure fails there, as sysvinit's dbus-1 script lets it) with stand-ins
# for dbus-uuidgen (fails) and dbus-daemon (records that it ran, and whether the socket of
# a previous run was still there: `ready = { file }` would take it for the new one's). The
# daemon must run, on a fresh /run/dbus. Needs root; skipped otherwise.
dbus_command() {
    local svc=$1/etc/ember/services.d/dbus.toml
    if [ "$(id -u)" != 0 ]; then echo "not root: dbus.toml's command was not run"; return; fi
    command -v busybox >/dev/null || { echo "no busybox on the host (busybox-static)"; return 1; }
    unshare -m --propagation private sh -eu -c '
        svc=$1 applets="sh mkdir rm cat echo test"
        '"$CHROOT_PRELUDE"'
        mkdir -p "$t/bin" "$t/usr/bin" "$t/dev" "$t/run" "$t/var/lib/dbus"
        printf "#!/bin/sh\necho \"dbus-uuidgen: cannot write /var/lib/dbus/machine-id: Read-only file system\" >&2\nexit 1\n" >"$t/usr/bin/dbus-uuidgen"
        printf "#!/bin/sh\nif [ -e /run/dbus/system_bus_socket ]; then echo stale >/run/daemon-ran; else echo fresh >/run/daemon-ran; fi\n" >"$t/usr/bin/dbus-daemon"
        chmod 755 "$t/usr/bin/dbus-uuidgen" "$t/usr/bin/dbus-daemon"
        mknod -m 666 "$t/dev/null" c 1 3
        # /run as ember mounts it, with the socket file a previous run of the bus left.
        mount -t tmpfs -o mode=0755 tmpfs "$t/run"
        mkdir "$t/run/dbus"; echo >"$t/run/dbus/system_bus_socket"
        mount -o remount,ro "$t"
        rc=0; chroot "$t" /bin/sh -c "$cmd" || rc=$?
        ran=$(cat "$t/run/daemon-ran" 2>/dev/null || echo no)
        echo "the command exited $rc; dbus-daemon ran: $ran"
        [ "$ran" != no ] || { echo "dbus-daemon was not run: dbus-uuidgen failing stops the bus"; exit 1; }
        [ "$ran" = fresh ] || { echo "dbus-daemon started with the previous run'"'"'s socket file still there (ready = { file } would be met at once)"; exit 1; }
    ' sh "$svc"
}

# The loopback service (services.d/loopback.toml, in the ember package): the services that
# listen on or connect to 127.0.0.1 are ordered after it, and its command, run with
# busybox's applets first on PATH (the image's ip) in a network namespace of its own
# (where, as at boot, lo is down), brings lo up with 127.0.0.1 on it. Needs root; the
# ordering is checked without.
loopback() {
    local root=$1 svc=$1/etc/ember/services.d/loopback.toml
    [ -f "$svc" ] || { echo "no /etc/ember/services.d/loopback.toml in $root: nothing brings lo up, and nothing listens on or connects to 127.0.0.1"; return 1; }
    python3 - "$root/etc/ember" <<'PY2'
import os, sys, tomllib
d = sys.argv[1]
bad = False
main = tomllib.load(open(os.path.join(d, "ember.toml"), "rb"))
if "mqtt" in main and "127.0.0.1" in main["mqtt"].get("url", ""):
    print("ok: [mqtt] url %s (the adapter reconnects until lo is up)" % main["mqtt"]["url"])
for f in sorted(os.listdir(os.path.join(d, "services.d"))):
    text = open(os.path.join(d, "services.d", f)).read()
    if "127.0.0.1" not in text or f == "loopback.toml":
        continue
    spec = tomllib.loads(text)
    if "loopback" not in spec.get("after", []) + spec.get("requires", []):
        print("services.d/%s uses 127.0.0.1 but is not ordered after loopback" % f)
        bad = True
    else:
        print("ok: %s after loopback" % f)
sys.exit(1 if bad else 0)
PY2
    if [ "$(id -u)" != 0 ]; then echo "not root: the loopback service was not run"; return; fi
    command -v busybox >/dev/null || { echo "no busybox on the host (busybox-static)"; return 1; }
    local bin
    bin=$(mktemp -d)
    busybox --install -s "$bin"
    unshare -n env PATH="$bin:$PATH" sh -eu -c '
        svc=$1
        set -- $(python3 -c "import tomllib,sys,shlex; print(shlex.join(tomllib.load(open(sys.argv[1],\"rb\"))[\"command\"]))" "$svc")
        ip -o link show lo | grep -q "[<,]UP[,>]" && { echo "lo is up already in the new namespace"; exit 1; }
        "$@"
        ip -o link show lo
        ip -o link show lo | grep -q "[<,]UP[,>]" || { echo "lo is still down"; exit 1; }
        ip -o addr show dev lo | grep -q " 127.0.0.1/8 " || { echo "no 127.0.0.1 on lo"; exit 1; }
        echo "ok: lo up with 127.0.0.1"
    ' sh "$svc"
    rm -rf "$bin"
}

# The kernel modules service (services.d/modules.toml, in the ember package): mounts is
# after it, and its command, run by busybox in a chroot on a tmpfs in a mount namespace of
# its own with a stand-in modprobe that records its arguments, loads every module of
# /etc/modules and /etc/modules-load.d/*.conf as OE-core writes them for
# KERNEL_MODULE_AUTOLOAD (one name a line), with their arguments, skipping comments, a
# last line without its newline too. Needs root; the ordering is checked without.
kernel_modules() {
    local root=$1 svc=$1/etc/ember/services.d/modules.toml
    [ -f "$svc" ] || { echo "no /etc/ember/services.d/modules.toml in $root: /etc/modules-load.d (KERNEL_MODULE_AUTOLOAD) and /etc/modules are never read"; return 1; }
    python3 -c 'import sys, tomllib; a = tomllib.load(open(sys.argv[1], "rb")).get("after", []); sys.exit(0 if "modules" in a else "services.d/mounts.toml is not after modules")' \
        "$root/etc/ember/services.d/mounts.toml"
    echo "ok: mounts after modules"
    if [ "$(id -u)" != 0 ]; then echo "not root: the modules service was not run"; return; fi
    command -v busybox >/dev/null || { echo "no busybox on the host (busybox-static)"; return 1; }
    unshare -m --propagation private sh -eu -c '
        svc=$1 applets="sh cat echo"
        '"$CHROOT_PRELUDE"'
        mkdir -p "$t/bin" "$t/sbin" "$t/etc/modules-load.d" "$t/dev" "$t/run"
        printf "#!/bin/sh\necho \"\$*\" >>/run/loaded\n[ \"\$1\" != missing ]\n" >"$t/sbin/modprobe"; chmod 755 "$t/sbin/modprobe"
        mknod -m 666 "$t/dev/null" c 1 3
        # As kernel-module-split.bbclass writes KERNEL_MODULE_AUTOLOAD.
        printf "wireguard\n" >"$t/etc/modules-load.d/wireguard.conf"
        printf "# comment\n\nusb-storage delay_use=1\n; also a comment\nmissing\nloop" >"$t/etc/modules-load.d/board.conf"
        printf "i2c-dev\n" >"$t/etc/modules"
        rc=0; PATH=/sbin:/bin chroot "$t" /bin/sh -c "$cmd" || rc=$?
        loaded=$(cat "$t/run/loaded" 2>/dev/null | tr "\n" "," || true)
        echo "the command exited $rc; modprobe ran for: $loaded"
        [ "$loaded" = "i2c-dev,usb-storage delay_use=1,missing,loop,wireguard," ] \
            || { echo "expected modprobe for: i2c-dev,usb-storage delay_use=1,missing,loop,wireguard,"; exit 1; }
        [ $rc = 1 ] || { echo "a module that did not load (missing) did not fail the service"; exit 1; }
        echo "ok: every module loaded, the one missing said"
    ' sh "$svc"
}

# The system log (services.d/syslog.toml, in ember-service-syslog, which ember recommends
# when VIRTUAL-RUNTIME_base-utils-syslog is busybox-syslog, OE-core's default): it is
# after mounts (it writes /var/log/messages), and its command, run by busybox in a chroot
# on a tmpfs with a stand-in syslogd that records its arguments, runs syslogd in the
# foreground with the OPTIONS of /etc/default/busybox-syslog (as busybox-syslog.service
# does for systemd), and without that file too. Needs root; the rest is checked without.
syslog_service() {
    local root=$1 svc=$1/etc/ember/services.d/syslog.toml
    [ -f "$svc" ] || { echo "no /etc/ember/services.d/syslog.toml in $root: busybox-syslog is installed (packagegroup-core-boot recommends it) but its syslogd never runs"; return 1; }
    python3 -c 'import sys, tomllib; a = tomllib.load(open(sys.argv[1], "rb")).get("after", []); sys.exit(0 if "mounts" in a else "services.d/syslog.toml is not after mounts")' "$svc"
    echo "ok: syslog after mounts"
    if [ "$(id -u)" != 0 ]; then echo "not root: the syslog service was not run"; return; fi
    command -v busybox >/dev/null || { echo "no busybox on the host (busybox-static)"; return 1; }
    local defaults
    for defaults in 'OPTIONS="-C"' none; do
        unshare -m --propagation private sh -eu -c '
            svc=$1 defaults=$2 applets="sh echo"
            '"$CHROOT_PRELUDE"'
            mkdir -p "$t/bin" "$t/sbin" "$t/etc/default" "$t/dev" "$t/run"
            printf "#!/bin/sh\nprintf \"%%s\\\\n\" \"\$*\" >/run/syslogd-args\n" >"$t/sbin/syslogd"; chmod 755 "$t/sbin/syslogd"
            mknod -m 666 "$t/dev/null" c 1 3
            [ "$defaults" = none ] || printf "%s\n" "$defaults" >"$t/etc/default/busybox-syslog"
            rc=0; chroot "$t" /bin/sh -c "$cmd" || rc=$?
            args=$(cat "$t/run/syslogd-args" 2>/dev/null || echo "(not run)")
            echo "/etc/default/busybox-syslog: $defaults; syslogd $args"
            want="-n -C"; [ "$defaults" != none ] || want="-n"
            [ "$rc" = 0 ] && [ "$args" = "$want" ] || { echo "expected syslogd $want, exit 0 (it exited $rc)"; exit 1; }
        ' sh "$svc" "$defaults"
    done
}

# Kernel parameters (services.d/sysctl.toml, in the ember package): its command, run by
# busybox in a chroot on a tmpfs with a stand-in sysctl that records its arguments,
# applies each file of /etc/sysctl.d and /etc/sysctl.conf once (procps links the latter
# as sysctl.d/99-sysctl.conf), and fails when one is not applied whole. Needs root.
sysctl_service() {
    local root=$1 svc=$1/etc/ember/services.d/sysctl.toml
    [ -f "$svc" ] || { echo "no /etc/ember/services.d/sysctl.toml in $root: /etc/sysctl.conf and /etc/sysctl.d are never applied"; return 1; }
    if [ "$(id -u)" != 0 ]; then echo "not root: the sysctl service was not run"; return; fi
    command -v busybox >/dev/null || { echo "no busybox on the host (busybox-static)"; return 1; }
    unshare -m --propagation private sh -eu -c '
        svc=$1 applets="sh echo readlink"
        '"$CHROOT_PRELUDE"'
        mkdir -p "$t/bin" "$t/sbin" "$t/etc/sysctl.d" "$t/dev" "$t/run"
        printf "#!/bin/sh\nprintf \"%%s\\\\n\" \"\$*\" >>/run/sysctl-args\n[ \"\$2\" != /etc/sysctl.d/20-bad.conf ]\n" >"$t/sbin/sysctl"; chmod 755 "$t/sbin/sysctl"
        mknod -m 666 "$t/dev/null" c 1 3
        echo "kernel.panic = 10" >"$t/etc/sysctl.d/10-board.conf"
        echo "no.such.key = 1" >"$t/etc/sysctl.d/20-bad.conf"
        echo "net.ipv4.tcp_syncookies = 1" >"$t/etc/sysctl.conf"
        ln -s ../sysctl.conf "$t/etc/sysctl.d/99-sysctl.conf"
        rc=0; chroot "$t" /bin/sh -c "$cmd" || rc=$?
        got=$(tr "\n" "," <"$t/run/sysctl-args" 2>/dev/null || true)
        echo "the command exited $rc; sysctl ran with: $got"
        want="-p /etc/sysctl.d/10-board.conf,-p /etc/sysctl.d/20-bad.conf,-p /etc/sysctl.d/99-sysctl.conf,"
        [ "$got" = "$want" ] || { echo "expected: $want"; exit 1; }
        [ $rc = 1 ] || { echo "a file not applied whole (20-bad.conf) did not fail the service"; exit 1; }
        echo "ok: each file applied once, the bad one said"
    ' sh "$svc"
}

# First-boot package configuration (services.d/postinsts.toml, in the ember package):
# every service of the layer's but ember's boot services is after it, and its command,
# run by busybox in a chroot on a tmpfs, runs /usr/sbin/run-postinsts (a stand-in that
# records it ran) when it is there, and exits 0 when it is not. Needs root; the ordering
# is checked without.
postinsts_service() {
    local root=$1 svc=$1/etc/ember/services.d/postinsts.toml
    [ -f "$svc" ] || { echo "no /etc/ember/services.d/postinsts.toml in $root: run-postinsts (in the image) never runs, and the postinsts left for the first boot never do"; return 1; }
    python3 - "$root/etc/ember/services.d" <<'PY2'
import os, sys, tomllib
d = sys.argv[1]
boot = {"mounts", "loopback", "modules", "sysctl", "postinsts"}
bad = False
for f in sorted(os.listdir(d)):
    name = f[:-len(".toml")]
    if not f.endswith(".toml") or name in boot:
        continue
    if "postinsts" not in tomllib.load(open(os.path.join(d, f), "rb")).get("after", []):
        print("services.d/%s is not after postinsts" % f)
        bad = True
    else:
        print("ok: %s after postinsts" % name)
sys.exit(1 if bad else 0)
PY2
    if [ "$(id -u)" != 0 ]; then echo "not root: the postinsts service was not run"; return; fi
    command -v busybox >/dev/null || { echo "no busybox on the host (busybox-static)"; return 1; }
    local with
    for with in run-postinsts none; do
        unshare -m --propagation private sh -eu -c '
            svc=$1 with=$2 applets="sh"
            '"$CHROOT_PRELUDE"'
            mkdir -p "$t/bin" "$t/usr/sbin" "$t/dev" "$t/run"
            mknod -m 666 "$t/dev/null" c 1 3
            if [ "$with" = run-postinsts ]; then
                printf "#!/bin/sh\n: >/run/postinsts-ran\n" >"$t/usr/sbin/run-postinsts"; chmod 755 "$t/usr/sbin/run-postinsts"
            fi
            rc=0; chroot "$t" /bin/sh -c "$cmd" || rc=$?
            ran=no; [ ! -e "$t/run/postinsts-ran" ] || ran=yes
            echo "with $with: the command exited $rc, run-postinsts ran: $ran"
            [ $rc = 0 ] || exit 1
            if [ "$with" = run-postinsts ]; then [ $ran = yes ] || exit 1; fi
        ' sh "$svc" "$with"
    done
}

# ember's do_install, license check and packaging as bitbake writes and runs them
# (check-install.py), with the recipe's PACKAGECONFIG and with three others; the files in
# each package, the packages' dependencies and users, and `ember check` on what is
# installed, with the binaries built from the vendored tree.
INSTALL_VARIANTS=("" "mqtt" "dbus")
install_check() {
    local out=$CACHE/install-$1 dir facts a said
    as_builder "rm -rf '$out'"
    bb "$1" "python3 '$HERE/check-install.py' install '$CARGO_OUT/debug' '$out' ${INSTALL_VARIANTS[*]@Q}"

    dir=$out/recipe; facts=$dir/facts
    echo "== PACKAGECONFIG as the recipe sets it"
    config_check "$dir/root"
    installed "$dir/root" /sbin/ember /sbin/ember-mqtt /sbin/ember-dbus /etc/ember/ember.toml \
        /etc/ember/services.d/dbus.toml /etc/ember/services.d/mounts.toml /etc/ember/services.d/loopback.toml \
        /etc/ember/services.d/modules.toml /etc/ember/services.d/syslog.toml \
        /etc/ember/services.d/sysctl.toml /etc/ember/services.d/postinsts.toml \
        /etc/ember/services.d/getty-ttyS0.toml \
        /etc/ember/services.d/getty-ttyS1.toml /usr/share/dbus-1/system.d/io.ember.Init1.conf
    table "$dir/root" mqtt yes; table "$dir/root" dbus yes
    # Each adapter in its own package, beside ember (ember looks for it in its own
    # executable's directory); populate_packages found no file left over.
    expect "$facts" FILES_IN:ember "/etc/ember/ember.toml /etc/ember/services.d/loopback.toml /etc/ember/services.d/modules.toml /etc/ember/services.d/mounts.toml /etc/ember/services.d/postinsts.toml /etc/ember/services.d/sysctl.toml /sbin/ember"
    expect "$facts" FILES_IN:ember-mqtt /sbin/ember-mqtt
    expect "$facts" FILES_IN:ember-dbus "/sbin/ember-dbus /usr/share/dbus-1/system.d/io.ember.Init1.conf"
    expect "$facts" FILES_IN:ember-service-dbus /etc/ember/services.d/dbus.toml
    expect "$facts" FILES_IN:ember-service-syslog /etc/ember/services.d/syslog.toml
    expect_has "$facts" RDEPENDS:ember-service-syslog busybox-syslog
    expect "$facts" INHERITS_USERADD 1
    for a in ember-mqtt ember-dbus; do
        expect_has "$facts" RDEPENDS:$a ember
        # useradd's own additions: the preinst needs shadow's tools and base-passwd's files.
        expect_has "$facts" RDEPENDS:$a shadow
        [ -s "$dir/preinst.$a" ] || { echo "no preinst for $a"; return 1; }
        "$CARGO_OUT/debug/$a" --help >/dev/null || { echo "$a --help fails"; return 1; }
    done
    expect_has "$facts" RDEPENDS:ember ember-mqtt
    expect_has "$facts" RDEPENDS:ember ember-dbus
    expect "$facts" GROUPADD_PARAM:ember-dbus "--system ember"
    # /sbin/telinit (an alternative) is ember answering as sysvinit's telinit.
    a=$(mktemp -d); ln -s "$CARGO_OUT/debug/ember" "$a/telinit"
    said=$("$a/telinit" 5 2>&1 || true); echo "telinit 5: $said"
    grep -q 'has no runlevel "5"' <<<"$said" || { echo "ember does not answer as telinit"; return 1; }
    # And /sbin/shutdown as sysvinit's and systemd's (`shutdown -r now`); a later time is refused.
    ln -s "$CARGO_OUT/debug/ember" "$a/shutdown"
    said=$("$a/shutdown" -r +5 2>&1 || true); echo "shutdown -r +5: $said"
    grep -q 'no shutdown at a later time' <<<"$said" || { echo "ember does not answer as shutdown"; return 1; }
    rm -rf "$a"
    run_preinsts "$dir" user:ember-mqtt user:ember-dbus group:ember
    fstab_boot "$dir/root" "$(oe_dir "$1")/meta/recipes-core/base-files/base-files/fstab"
    dbus_command "$dir/root"
    if [[ " ${EXTRA_LAYERS[$1]} " == *" meta-networking "* ]]; then
        expect "$facts" INSTALLED:ember-service-mosquitto 1
        installed "$dir/root" /etc/ember/services.d/mosquitto.toml
    else
        expect "$facts" INSTALLED:ember-service-mosquitto 0
    fi
    loopback "$dir/root"
    kernel_modules "$dir/root"
    syslog_service "$dir/root"
    sysctl_service "$dir/root"
    postinsts_service "$dir/root"
    expect "$facts" PACKAGE_ARCH:ember-service-getty "$(getv "$LOGS/$1-env-ember.txt" MACHINE_ARCH)"

    dir=$out/packageconfig-none; facts=$dir/facts
    echo "== PACKAGECONFIG = \"\": ember alone"
    config_check "$dir/root"
    installed "$dir/root" /sbin/ember /etc/ember/ember.toml /etc/ember/services.d/mounts.toml \
        /etc/ember/services.d/loopback.toml /etc/ember/services.d/modules.toml \
        /etc/ember/services.d/sysctl.toml /etc/ember/services.d/postinsts.toml
    not_installed "$dir/root" /sbin/ember-mqtt /sbin/ember-dbus /usr/share/dbus-1/system.d/io.ember.Init1.conf
    table "$dir/root" mqtt no; table "$dir/root" dbus no
    expect_lacks "$facts" PACKAGES ember-mqtt
    expect_lacks "$facts" PACKAGES ember-dbus
    expect_lacks "$facts" RDEPENDS:ember ember-mqtt
    expect_lacks "$facts" RDEPENDS:ember ember-dbus
    expect "$facts" USERADD_PACKAGES ""
    # The class that refuses a recipe without users to make is not inherited.
    expect "$facts" INHERITS_USERADD 0

    for a in mqtt dbus; do
        local other=dbus; [ $a = mqtt ] || other=mqtt
        dir=$out/packageconfig-$a; facts=$dir/facts
        echo "== PACKAGECONFIG = \"$a\""
        config_check "$dir/root"
        installed "$dir/root" /sbin/ember "/sbin/ember-$a"
        not_installed "$dir/root" "/sbin/ember-$other"
        table "$dir/root" $a yes; table "$dir/root" $other no
        expect "$facts" FILES_IN:ember-$a "$(getv "$out/recipe/facts" FILES_IN:ember-$a)"
        expect_lacks "$facts" PACKAGES ember-$other
        expect "$facts" USERADD_PACKAGES ember-$a
        expect "$facts" INHERITS_USERADD 1
        expect_has "$facts" RDEPENDS:ember ember-$a
        expect_lacks "$facts" RDEPENDS:ember ember-$other
    done
    echo "SUMMARY: packages $(getv "$out/recipe/facts" PACKAGES | tr ' ' '\n' | grep -v -e '-dbg$' -e '-dev$' -e '-staticdev$' -e '-doc$' -e '-locale$' -e '-src$' | xargs); PACKAGECONFIG \"\", mqtt, dbus too; ember check passes on each"
}

yocto_check_layer() {
    local rel=$1 oe ycl layers l deps=()
    oe=$(oe_dir "$rel"); ycl="$CACHE/build-$rel-check-layer"
    # A build directory of its own: yocto-check-layer adds the layers to bblayers.conf
    # itself, starting from OE-core alone, with OE-core's default configuration.
    as_builder "rm -rf '$ycl/conf'"
    write_if_changed "$ycl/conf/bblayers.conf" <<EOF
LCONF_VERSION = "7"
BBPATH = "\${TOPDIR}"
BBFILES ?= ""
BBLAYERS = "$oe/meta"
EOF
    { printf 'MACHINE = "qemux86-64"\nDISTRO = "nodistro"\n'
      sed -n '/^# \.\.\. and what this machine needs/,$p' "$(build_dir "$rel")/conf/local.conf"
    } | write_if_changed "$ycl/conf/local.conf"
    # The dynamic layer is checked too: meta-networking (and its dependencies, found in
    # the meta-openembedded tree) in the build as additional layers, but not tested.
    for l in ${EXTRA_LAYERS[$rel]}; do deps+=("$(extra_dir "$rel")/$l"); done
    as_builder "cd '$oe' && . ./oe-init-build-env '$ycl' >/dev/null && \
        yocto-check-layer '$TREE/yocto/meta-ember' --no-auto-dependency \
            ${deps[*]:+--dependency $(extra_dir "$rel") --additional-layers ${deps[*]}}"
}

for rel in "${RELEASES[@]}"; do
    [ $RELEASE_STEPS = 1 ] || break
    bbv=${BB_TARBALL[$rel]#bitbake-}
    echo "== yocto: $rel (bitbake $bbv)${EXTRA_LAYERS[$rel]:+ with ${EXTRA_LAYERS[$rel]}}"
    step "$rel: build directory" configure_build "$rel"
    step "$rel: bitbake -p" parse "$rel"
    step "$rel: bitbake-layers show-layers" show_layers "$rel"
    step "$rel: bitbake -e ember" env_ember "$rel"
    step "$rel: bitbake -e ember-image-minimal" env_image "$rel"
    step "$rel: bitbake -g ember-image-minimal (dependencies)" dep_graph "$rel"
    [ $DRY_RUN = 0 ] || step "$rel: bitbake -n ember-image-minimal" dry_run "$rel"
    step "$rel: bitbake ember* -c unpack (fetch)" fetch_unpack "$rel"
    step "$rel: OE-core's update_crates on \${S} = ember-crates.inc" update_crates_class "$rel"
    if [ ! -x "$CARGO_OUT/debug/ember" ] || [ "${VENDORED_BUILT:-}" != 1 ]; then
        step "$rel: cargo.bbclass's CARGO_HOME for the vendored crates" configure_vendored "$rel"
        step "cargo build --frozen --offline of the vendored tree" cargo_vendored
        VENDORED_BUILT=1
    fi
    step "$rel: do_install, packages, users; ember check" install_check "$rel"
done

if [ $CHECK_LAYER = 1 ]; then
    for rel in "${RELEASES[@]}"; do
        echo "== yocto: yocto-check-layer, $rel"
        step "$rel: yocto-check-layer meta-ember" yocto_check_layer "$rel"
    done
fi
echo "yocto: all checks passed in $(($(date +%s) - T0)) s (logs: $LOGS)"
