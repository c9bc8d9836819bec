#!/usr/bin/env bash
# The Yocto layer's checks (tests/run.sh runs this): ember-crates.inc matches Cargo.lock,
# and oelint-adv finds nothing in meta-ember against the oldest release it supports.
# Needs python3; installs oelint-adv with pip when it is missing. Downloads no toolchain.
set -euo pipefail
cd "$(dirname "$0")"

# The oldest release the layer supports: the first of LAYERSERIES_COMPAT_ember.
OLDEST=$(sed -n 's/^LAYERSERIES_COMPAT_ember = "\([a-z]*\).*/\1/p' meta-ember/conf/layer.conf)
[ -n "$OLDEST" ] || { echo "no LAYERSERIES_COMPAT_ember in meta-ember/conf/layer.conf" >&2; exit 1; }

python3 update-crates.py --check

# The recipe's version (ember_<version>.bb) follows Cargo.toml's.
version=$(sed -n 's/^version = "\(.*\)"/\1/p' ../Cargo.toml | head -1)
if [ ! -e "meta-ember/recipes-core/ember/ember_$version.bb" ]; then
    echo "Cargo.toml says version $version: rename meta-ember/recipes-core/ember/ember_*.bb to ember_$version.bb" >&2
    exit 1
fi

if ! command -v oelint-adv >/dev/null; then
    if ! python3 -m pip --version >/dev/null 2>&1; then
        SUDO=""
        if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
        $SUDO apt-get update -qq
        $SUDO apt-get install -y -qq --no-install-recommends python3-pip
    fi
    # Debian and Ubuntu's python3 is externally managed (PEP 668).
    python3 -m pip install --quiet --user oelint-adv 2>/dev/null \
        || python3 -m pip install --quiet oelint-adv 2>/dev/null \
        || python3 -m pip install --quiet --user --break-system-packages oelint-adv
    PATH="$(python3 -m site --user-base)/bin:$PATH"
fi

cd meta-ember
# homepageping needs the network; inconspaces/notneededspace fire only on the generated
# ember-crates.inc, written as `bitbake -c update_crates` writes it (SRC_URI += " \).
mapfile -t files < <(find . \( -name '*.bb' -o -name '*.bbappend' -o -name '*.inc' -o -name '*.conf' \) | sort)
oelint-adv --quiet --release "$OLDEST" --hide info \
    --suppress oelint.vars.homepageping \
    --suppress oelint.vars.inconspaces --suppress oelint.vars.notneededspace \
    "${files[@]}"
echo "oelint-adv --release $OLDEST: ${#files[@]} files clean"
cd ..

# No bitbake here: run do_install as shell, and `ember check` what it installs
# (EMBER_BIN, when given, is the ember binary to check with).
python3 check-install.py
