#!/usr/bin/env bash
# Builds Passerelle with the sanitizers and runs the whole test suite against a
# throwaway PostgreSQL cluster. What `make check` and CI (.ci/run) run.
#
#   scripts/check.sh [ctest args...]      e.g. scripts/check.sh -L unit
#
# Exported to the tests:
#   PASSERELLE_TEST_PG       libpq conninfo of the cluster (dbname=postgres; tests
#                            create their own databases)
#   PASSERELLE_PGCTL         absolute path of scripts/pgctl.sh
#   PASSERELLE_BUILD         absolute path of the build directory
#   PASSERELLE_TEST_TMPDIR   a scratch directory (mode 755, removed afterwards) where
#                            tests can put their own clusters or files
set -euo pipefail

info() { printf 'passerelle: %s\n' "$*" >&2; }
die() { printf 'passerelle: error: %s\n' "$*" >&2; exit 1; }

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$REPO"
PGCTL=$REPO/scripts/pgctl.sh
BUILD=${PASSERELLE_BUILD_DIR:-$REPO/build/check} # another directory lets two checks run side by side
JOBS=2

# shellcheck disable=SC2317 # called from the EXIT trap
elapsed() {
    local s=$SECONDS
    printf '%dm%02ds' $((s / 60)) $((s % 60))
}

PGTMP=""
PGDIR=""
# shellcheck disable=SC2317 # called from the EXIT trap
cleanup() {
    local rc=$?
    trap - EXIT
    trap '' INT TERM # a second Ctrl-C must not leave the cluster behind
    if [ -n "$PGDIR" ]; then
        bash "$PGCTL" stop "$PGDIR" || info "warning: could not stop the test cluster in $PGDIR"
    fi
    if [ -n "$PGTMP" ]; then
        rm -rf -- "$PGTMP"
    fi
    info "check finished with status $rc in $(elapsed)"
    exit "$rc"
}
trap cleanup EXIT
trap 'info "interrupted"; exit 130' INT
trap 'info "terminated"; exit 143' TERM

info "installing missing dependencies (build runtime test)"
bash "$REPO/scripts/deps.sh" build runtime test

info "configuring $BUILD (Debug, sanitizers on)"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Debug -DPASSERELLE_SANITIZE=ON
info "building with -j$JOBS"
cmake --build "$BUILD" -j"$JOBS"

PGTMP=$(mktemp -d /tmp/passerelle-pg.XXXXXX)
# PostgreSQL runs as the `passerelle` user when we are root: it must be able to get in.
chmod 755 "$PGTMP"
PGDIR=$PGTMP/pg
bash "$PGCTL" init "$PGDIR"

port=""
for _ in $(seq 1 50); do
    candidate=$((55400 + RANDOM % 1000))
    if [ ! -e "$PGDIR/run/.s.PGSQL.$candidate" ] &&
        [ ! -e "/tmp/.s.PGSQL.$candidate" ] &&
        [ ! -e "/var/run/postgresql/.s.PGSQL.$candidate" ]; then
        port=$candidate
        break
    fi
done
[ -n "$port" ] || die "could not find a free port for the test cluster in 55400-56399"
bash "$PGCTL" start "$PGDIR" "$port"

PASSERELLE_TEST_PG=$(bash "$PGCTL" conninfo "$PGDIR" "$port" postgres)
export PASSERELLE_TEST_PG
export PASSERELLE_PGCTL=$PGCTL
export PASSERELLE_BUILD=$BUILD
export PASSERELLE_TEST_TMPDIR=$PGTMP
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
if [ -f "$REPO/tests/lsan.supp" ]; then
    export LSAN_OPTIONS=suppressions=$REPO/tests/lsan.supp
fi

info "PASSERELLE_TEST_PG=$PASSERELLE_TEST_PG"
info "running ctest${*:+ (extra args: $*)}"
status=0
ctest --test-dir "$BUILD" --output-on-failure -j"$JOBS" --timeout 900 "$@" || status=$?
if [ "$status" -ne 0 ]; then
    info "ctest failed with status $status"
fi
exit "$status"
