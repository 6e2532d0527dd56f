# shellcheck shell=bash
# Self-provisioning toolchain shared by ./scripts/test and ./scripts/demo.
#
# Everything heavy lives outside the repository, under $BIOREACTOR_CACHE
# (default ~/.cache/bioreactor-dev), keyed by a hash of the files that define
# it, so a second run with nothing changed only checks stamps.

set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${BIOREACTOR_CACHE:-$HOME/.cache/bioreactor-dev}"
mkdir -p "$CACHE"

say() { printf '\033[1m[toolchain]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[toolchain] error:\033[0m %s\n' "$*" >&2; exit 1; }

# Serialise provisioning between concurrent runs sharing one cache.
with_lock() {
    local lock="$CACHE/.lock"
    exec {LOCK_FD}>"$lock"
    flock "$LOCK_FD"
    "$@"
    flock -u "$LOCK_FD"
}

# Bump when the way venvs are built changes, so cached ones are rebuilt.
VENV_RECIPE=1

# Cache key: the recipe plus the content of the files that define a venv.
venv_key() {
    { echo "recipe $VENV_RECIPE"; cat "$@"; } | sha256sum | cut -c1-16
}

# pip, quietly: its output goes to a log that is shown only when it fails.
pip_quiet() {
    local pip="$1" log="$CACHE/pip.log"
    shift
    if ! "$pip" install --disable-pip-version-check "$@" >"$log" 2>&1; then
        grep -v '^WARNING: Location' "$log" | tail -n 40 >&2
        die "pip install $* failed (full log: $log)"
    fi
}

# True when $1 is a Python >= 3.14.2.
python_ok() {
    "$1" -c 'import sys; raise SystemExit(0 if sys.version_info >= (3, 14, 2) else 1)' 2>/dev/null
}

# The private Python 3.14 recipe (see docs/toolchain.md): Debian sid's
# python3.14 unpacked by debootstrap, patched to use that root's own loader.
PY314_RECIPE=1
PY314_ROOT="$CACHE/py314-root-r$PY314_RECIPE"

provision_private_python() {
    local root="$PY314_ROOT" py="$PY314_ROOT/usr/bin/python3.14"
    if [[ -f "$root/.complete" ]] && python_ok "$py"; then
        printf '%s' "$py"; return
    fi
    say "no Python >= 3.14.2 on PATH: provisioning a private one in $root (one-off, ~1 min)"
    if ! command -v debootstrap >/dev/null || ! command -v patchelf >/dev/null; then
        [[ $(id -u) -eq 0 ]] || die "need debootstrap and patchelf (apt-get install debootstrap patchelf), or a python3.14 >= 3.14.2 on PATH"
        say "installing debootstrap and patchelf from Debian's packages"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap patchelf >&2
    fi
    rm -rf "$root" "$root.tmp"
    debootstrap --variant=minbase \
        --include=python3.14,python3.14-venv,python3.14-dev,ca-certificates \
        sid "$root.tmp" >"$CACHE/debootstrap.log" 2>&1 \
        || die "debootstrap failed; see $CACHE/debootstrap.log"
    patchelf --set-interpreter "$root/lib64/ld-linux-x86-64.so.2" --force-rpath \
        --set-rpath "$root/usr/lib/x86_64-linux-gnu:$root/lib/x86_64-linux-gnu" \
        "$root.tmp/usr/bin/python3.14"
    mv "$root.tmp" "$root"
    # The rpath and loader were written for the final path, so patch again now
    # that the root has moved there.
    patchelf --set-interpreter "$root/lib64/ld-linux-x86-64.so.2" --force-rpath \
        --set-rpath "$root/usr/lib/x86_64-linux-gnu:$root/lib/x86_64-linux-gnu" \
        "$py"
    python_ok "$py" || die "the private python3.14 does not run; see docs/toolchain.md"
    # Headers for packages Home Assistant compiles at start (see docs/toolchain.md).
    mkdir -p "$root/host-include/x86_64-linux-gnu"
    ln -sfn "$root/usr/include/x86_64-linux-gnu/python3.14" "$root/host-include/x86_64-linux-gnu/python3.14"
    touch "$root/.complete"
    printf '%s' "$py"
}

# Prints the path of a Python >= 3.14.2: PATH first, else the private one.
find_python314() {
    local cand
    for cand in python3.14 python3; do
        if command -v "$cand" >/dev/null && python_ok "$(command -v "$cand")"; then
            say "using $(command -v "$cand") ($("$cand" --version)) from PATH for Home Assistant"
            printf '%s' "$(command -v "$cand")"; return
        fi
    done
    local py
    py="$(provision_private_python)"
    say "using the private $("$py" --version) at $py for Home Assistant"
    printf '%s' "$py"
}

# make_venv PYTHON DIR: a venv with a working pip, even from Debian's python.
make_venv() {
    local py="$1" dir="$2"
    rm -rf "$dir"
    "$py" -m venv --without-pip "$dir"
    local wheel
    wheel="$(ls "$(dirname "$(dirname "$py")")"/share/python-wheels/pip-*.whl 2>/dev/null | head -n1 || true)"
    if [[ -n "$wheel" ]]; then
        "$dir/bin/python" "$wheel/pip" install -q --disable-pip-version-check pip >"$CACHE/pip.log" 2>&1 \
            || die "bootstrapping pip failed (log: $CACHE/pip.log)"
    else
        "$dir/bin/python" -m ensurepip -q >&2
    fi
}

# The files that decide which of Home Assistant's runtime requirements the HA
# venv needs: the configurations and the manifest whose integrations' requirements
# Home Assistant would otherwise pip-install when it starts (see
# scripts/lib/ha_requirements.py).
HA_RUNTIME_INPUTS=(
    scripts/lib/ha_requirements.py
    scripts/lib/demo_configuration.yaml
    tests/support/hass_configuration.yaml
    custom_components/bioreactor/manifest.json
)

_ha_venv() {
    local key py dir
    key="$(venv_key "$REPO_ROOT/requirements_test.txt")"
    dir="$CACHE/venv-ha-$key"
    if [[ ! -f "$dir/.complete" ]]; then
        py="$(find_python314)"
        say "creating the Home Assistant venv $dir (one-off, a few minutes)"
        make_venv "$py" "$dir"
        pip_quiet "$dir/bin/pip" -r "$REPO_ROOT/requirements_test.txt"
        touch "$dir/.complete"
    fi
    HA_VENV="$dir"
    # Home Assistant's runtime requirements (frontend, recorder, the voice stack the
    # frontend pulls in...), so `hass --skip-pip` starts fully and offline. Stamped
    # by the files that decide them; pip adds only what is missing.
    local stamp
    stamp="$dir/.runtime-$(venv_key "${HA_RUNTIME_INPUTS[@]/#/$REPO_ROOT/}")"
    [[ -f "$stamp" ]] && return
    "$dir/bin/python" "$REPO_ROOT/scripts/lib/ha_requirements.py" \
        --configuration "$REPO_ROOT/scripts/lib/demo_configuration.yaml" \
        --configuration "$REPO_ROOT/tests/support/hass_configuration.yaml" \
        --custom-integration "$REPO_ROOT/custom_components/bioreactor" >"$dir/ha-runtime-requirements.txt"
    say "installing Home Assistant's runtime requirements ($(wc -l <"$dir/ha-runtime-requirements.txt") packages, some compiled)"
    ha_build_env
    pip_quiet "$dir/bin/pip" -r "$dir/ha-runtime-requirements.txt" \
        -c "$("$dir/bin/python" -c 'import homeassistant, os; print(os.path.join(os.path.dirname(homeassistant.__file__), "package_constraints.txt"))')"
    touch "$stamp"
}

_edge_venv() {
    local key dir py="${EDGE_PYTHON:-python3.11}"
    command -v "$py" >/dev/null || py=python3
    "$py" -c 'import sys; raise SystemExit(0 if sys.version_info >= (3, 11) else 1)' \
        || die "the edge agent needs Python >= 3.11 (found $("$py" --version))"
    # The package is installed editable, so the venv belongs to one checkout:
    # its path is part of the key and clones sharing the cache never collide.
    key="$(venv_key "$REPO_ROOT/requirements_edge_test.txt" "$REPO_ROOT/edge_firmware/pyproject.toml" <(echo "$REPO_ROOT"))"
    dir="$CACHE/venv-edge-$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')-$key"
    if [[ -f "$dir/.complete" ]]; then
        EDGE_VENV="$dir"; return
    fi
    say "creating the edge venv $dir on $("$py" --version)"
    rm -rf "$dir"
    "$py" -m venv "$dir"
    pip_quiet "$dir/bin/pip" -r "$REPO_ROOT/requirements_edge_test.txt"
    pip_quiet "$dir/bin/pip" -e "$REPO_ROOT/edge_firmware"
    touch "$dir/.complete"
    EDGE_VENV="$dir"
}

ensure_ha_venv() { with_lock _ha_venv; }
ensure_edge_venv() { with_lock _edge_venv; }

# CPPFLAGS for packages that Home Assistant compiles when it starts.
ha_build_env() {
    if [[ -d "$PY314_ROOT/host-include" ]] && [[ "$(readlink -f "$HA_VENV/bin/python")" == "$PY314_ROOT"* ]] \
        && [[ "${CPPFLAGS:-}" != *"$PY314_ROOT/host-include"* ]]; then
        export CPPFLAGS="-I$PY314_ROOT/host-include ${CPPFLAGS:-}"
    fi
}

# Debian's chromium for the real-browser end-to-end test (Playwright drives it;
# it never downloads a browser of its own).
CHROMIUM=/usr/bin/chromium
_chromium() {
    [[ -x "$CHROMIUM" ]] && return
    [[ $(id -u) -eq 0 ]] || die "the browser test needs chromium: sudo apt-get install chromium fonts-dejavu-core"
    say "installing Debian's chromium for the browser test (one-off)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        chromium fonts-dejavu-core >"$CACHE/apt-chromium.log" 2>&1 \
        || die "installing chromium failed (log: $CACHE/apt-chromium.log)"
}
ensure_chromium() { with_lock _chromium; }
