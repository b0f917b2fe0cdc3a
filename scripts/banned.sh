#!/usr/bin/env bash
# Fails when a tracked C/C++ source calls a banned function (see README "Code style").
set -u
cd "$(dirname "$0")/.."
hits=$(grep -rn -E '\b(sprintf|vsprintf|strcpy|strcat|strtok|atoi|atol|gets)\s*\(' \
        --include='*.c' --include='*.h' --include='*.cc' \
        gatewayd providers flows admin tests bench 2>/dev/null \
      | grep -v -E '^\S+:[0-9]+:\s*(//|\*|/\*)')
if [ -n "$hits" ]; then
    echo "banned functions in use (use snprintf, strtol, strtok_r, memcpy with a bound):"
    echo "$hits"
    exit 1
fi
echo "banned-function check: clean"
