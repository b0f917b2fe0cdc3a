#!/usr/bin/env bash
# Keeps the manual pages and the README true (ctest style_docs):
# - every command word of `gatewayctl --help` appears in man/gatewayctl.1;
# - every configuration key gatewayd reads (gatewayd/gw_config.c) appears in man/gatewayd.8
#   and in the README's configuration tables;
# - groff renders both pages without a warning (-ww).
#   scripts/check_docs.sh GATEWAYCTL
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
CTL=${1:?usage: check_docs.sh PATH/TO/gatewayctl}
fail=0
bad() { printf 'check_docs: %s\n' "$*" >&2; fail=1; }

# the first word of each command line of the usage ("  centre create …" → "centre create")
mapfile -t cmds < <("$CTL" --help | sed -n 's/^  \([a-z][a-z]*\)\( [a-z][a-z|]*\)\{0,1\} .*/\1\2/p' |
    sed "s/|.*//" | grep -v "^man " | sort -u)
[ "${#cmds[@]}" -ge 20 ] || bad "found only ${#cmds[@]} commands in gatewayctl --help"
# the page as text, roff escapes dropped
page=$(sed -e 's/\\f[BIRP]//g' -e 's/\\-/-/g' -e 's/^\.[A-Z]* *//' "$REPO/man/gatewayctl.1" |
    tr -d '"' | tr -s ' ')
for c in "${cmds[@]}"; do
    if ! grep -q -- "$c" <<<"$page"; then
        bad "man/gatewayctl.1 does not describe '$c'"
    fi
done
# every command must have its --help
for c in "${cmds[@]}"; do
    "$CTL" ${c%% *} --help >/dev/null 2>&1 || bad "gatewayctl ${c%% *} --help fails"
done

# keys compared one by one (!strcmp(key, "…")) or listed in a table ({"…", &c->…})
mapfile -t keys < <(grep -oE '!strcmp\(key, "[a-z_]*"\)|\{"[a-z_]+", &c->' \
    "$REPO/gatewayd/gw_config.c" | sed 's/[^"]*"\([a-z_]*\)".*/\1/' | sort -u)
[ "${#keys[@]}" -ge 20 ] || bad "found only ${#keys[@]} configuration keys in gw_config.c"
man8=$(sed -e 's/\\f[BIRP]//g' -e 's/\\-/-/g' "$REPO/man/gatewayd.8")
for k in "${keys[@]}"; do
    grep -qw -- "$k" <<<"$man8" || bad "man/gatewayd.8 does not list the configuration key '$k'"
    grep -q -- "\`$k\`" "$REPO/README.md" || bad "README.md does not document the configuration key '$k'"
done

if command -v groff >/dev/null; then
    for p in "$REPO/man/gatewayctl.1" "$REPO/man/gatewayd.8"; do
        out=$(groff -man -ww -z "$p" 2>&1) || bad "groff failed on $p"
        [ -z "$out" ] || bad "groff warns on $p: $out"
    done
else
    printf 'check_docs: groff not installed: rendering not checked\n' >&2
fi
[ "$fail" -eq 0 ] && printf 'check_docs: %d commands, %d configuration keys documented\n' \
    "${#cmds[@]}" "${#keys[@]}"
exit "$fail"
