#!/usr/bin/env bash
# Installs the Debian packages Passerelle needs, and only those that are missing.
#
#   scripts/deps.sh [build|runtime|test|all ...]     (no argument = all)
#
# Each package is checked with dpkg-query; `apt-get update` runs once, and only
# when something is missing. Needs root, or sudo when run as another user.
set -euo pipefail

info() { printf 'passerelle: %s\n' "$*" >&2; }
die() { printf 'passerelle: error: %s\n' "$*" >&2; exit 1; }

usage() {
    cat >&2 <<'EOF'
usage: scripts/deps.sh [build|runtime|test|all ...]
  build    compilers, CMake and the -dev libraries gatewayd links against
  runtime  PostgreSQL, gammu, curl
  test     cmocka, clang and its sanitizer/libFuzzer runtime, and for the browser tests
           chromium, Node.js and npm; groff (the manual pages check)
  all      all of the above (the default)
EOF
}

BUILD_PKGS=(build-essential cmake pkg-config libevent-dev libpq-dev libcurl4-openssl-dev
            libjansson-dev libsodium-dev libinih-dev libphonenumber-dev libicu-dev
            libgammu-dev libical-dev libunistring-dev uthash-dev libsystemd-dev)
RUNTIME_PKGS=(postgresql postgresql-contrib gammu curl)
TEST_PKGS=(libcmocka-dev clang libclang-rt-14-dev python3 chromium nodejs npm groff-base)

# A package also counts as present when the command it exists for is already on the PATH:
# a Node.js from another source (NodeSource's `nodejs` bundles npm and conflicts with Debian's
# `npm` package) must not make us install, or fight, a second one.
declare -A PKG_COMMAND=([nodejs]=node [npm]=npm [chromium]=chromium [groff-base]=groff)

if [ "$#" -eq 0 ]; then
    set -- all
fi

wanted=()
groups=()
for group in "$@"; do
    case "$group" in
        build) wanted+=("${BUILD_PKGS[@]}") ;;
        runtime) wanted+=("${RUNTIME_PKGS[@]}") ;;
        test) wanted+=("${TEST_PKGS[@]}") ;;
        all) wanted+=("${BUILD_PKGS[@]}" "${RUNTIME_PKGS[@]}" "${TEST_PKGS[@]}") ;;
        -h | --help) usage; exit 0 ;;
        *) usage; die "unknown package group '$group'" ;;
    esac
    groups+=("$group")
done

command -v dpkg-query >/dev/null 2>&1 ||
    die "dpkg-query not found: this script is for Debian 12 (bookworm) and its derivatives"

missing=()
declare -A seen=()
for pkg in "${wanted[@]}"; do
    [ -n "${seen[$pkg]:-}" ] && continue
    seen[$pkg]=1
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    if [ "$status" != "install ok installed" ] &&
        ! { [ -n "${PKG_COMMAND[$pkg]:-}" ] && command -v "${PKG_COMMAND[$pkg]}" >/dev/null 2>&1; }; then
        missing+=("$pkg")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    info "dependencies (${groups[*]}): all ${#seen[@]} packages already installed"
    exit 0
fi

as_root=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        as_root=(sudo)
        info "not running as root: using sudo to install packages"
    else
        die "missing packages: ${missing[*]}
  Installing them needs root and sudo is not installed. Run as root:
    apt-get update && apt-get install -y ${missing[*]}"
    fi
fi

info "installing ${#missing[@]} missing package(s) for ${groups[*]}: ${missing[*]}"
info "running apt-get update"
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q ||
    die "apt-get update failed (is the Debian mirror reachable?)"
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o Dpkg::Use-Pty=0 "${missing[@]}" ||
    die "apt-get install failed for: ${missing[*]}"
info "installed: ${missing[*]}"
