#!/usr/bin/env bash
# Builds every libFuzzer target in tests/fuzz with clang (ASan + UBSan) and runs each for a
# bounded time. ctest runs it with FUZZ_SECONDS (default 20); see tests/fuzz/README.md.
#   tests/fuzz/run.sh [BUILD_DIR] [TARGET...]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-$root/build/fuzz}
shift || true
secs=${FUZZ_SECONDS:-20}
mkdir -p "$out"
command -v clang >/dev/null || { echo "fuzz: clang is missing (scripts/deps.sh test)"; exit 1; }
cflags=(-g -O1 -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -fsanitize=fuzzer,address,undefined
        -fno-sanitize-recover=undefined -I"$root/providers" -I"$root/gatewayd")
cxxflags=(-g -O1 -std=c++17 -fsanitize=fuzzer-no-link,address -I"$root/providers")
pc() { pkg-config "$@"; }

# target → sources (besides the target file) and libraries
build() {
    local name=$1; shift
    case $name in
        fuzz_text) clang "${cflags[@]}" "$here/$name.c" "$root/providers/prov_text.c" -o "$out/$name" ;;
        fuzz_phone)
            clang++ "${cxxflags[@]}" -c "$root/providers/prov_phone_shim.cc" -o "$out/prov_phone_shim.o"
            clang "${cflags[@]}" -fno-sanitize=vptr "$here/$name.c" "$out/prov_phone_shim.o" \
                -lphonenumber $(pc --libs icu-uc) -lstdc++ -o "$out/$name" ;;
        fuzz_config)
            clang "${cflags[@]}" "$here/$name.c" "$root/gatewayd/gw_config.c" "$root/gatewayd/gw_log.c" \
                "$root/gatewayd/gw_util.c" $(pc --cflags --libs inih jansson libevent libsodium) \
                -o "$out/$name" ;;
        fuzz_send_body)
            clang++ "${cxxflags[@]}" -c "$root/providers/prov_phone_shim.cc" -o "$out/prov_phone_shim.o"
            clang "${cflags[@]}" -fno-sanitize=vptr "$here/$name.c" "$root/gatewayd/gw_send.c" \
                "$root/gatewayd/gw_config.c" "$root/gatewayd/gw_log.c" "$root/gatewayd/gw_util.c" \
                "$root/providers/prov_text.c" "$out/prov_phone_shim.o" \
                $(pc --cflags --libs inih jansson libevent libsodium) -lphonenumber \
                $(pc --libs icu-uc) -lstdc++ -o "$out/$name" ;;
        fuzz_isendpro_parse)
            clang "${cflags[@]}" "$here/$name.c" "$root/providers/prov_isendpro_parse.c" \
                $(pc --cflags --libs jansson) -o "$out/$name" ;;
        fuzz_flow_match)
            clang "${cflags[@]}" -I"$root/flows" "$here/$name.c" "$root/flows/flow_match.c" \
                -lunistring -o "$out/$name" ;;
        fuzz_ussd_req)
            clang "${cflags[@]}" -I"$root/flows" "$here/$name.c" "$root/flows/ussd_req.c" \
                "$root/providers/prov_text.c" -o "$out/$name" ;;
        fuzz_rfc3339)
            clang "${cflags[@]}" "$here/$name.c" "$root/gatewayd/gw_util.c" $(pc --libs libsodium) \
                -o "$out/$name" ;;
        fuzz_sched_rrule)
            clang "${cflags[@]}" "$here/$name.c" "$root/gatewayd/sched_time.c" \
                $(pc --cflags --libs libical) -o "$out/$name" ;;
        fuzz_http_answer)
            clang "${cflags[@]}" -I"$root/bench" "$here/$name.c" "$root/bench/http_answer.c" \
                -o "$out/$name" ;;
        fuzz_webhook)
            clang++ "${cxxflags[@]}" -c "$root/providers/prov_phone_shim.cc" -o "$out/prov_phone_shim.o"
            clang "${cflags[@]}" -fno-sanitize=vptr "$here/$name.c" "$root/gatewayd/gw_partners_parse.c" \
                "$root/gatewayd/gw_send.c" "$root/gatewayd/gw_config.c" "$root/gatewayd/gw_log.c" \
                "$root/gatewayd/gw_util.c" "$root/providers/prov_text.c" "$out/prov_phone_shim.o" \
                $(pc --cflags --libs inih jansson libevent libsodium) -lphonenumber \
                $(pc --libs icu-uc) -lstdc++ -o "$out/$name" ;;
        fuzz_admin_body | fuzz_admin_csv)
            clang++ "${cxxflags[@]}" -c "$root/providers/prov_phone_shim.cc" -o "$out/prov_phone_shim.o"
            clang "${cflags[@]}" -fno-sanitize=vptr "$here/$name.c" "$root/gatewayd/gw_admin_parse.c" \
                "$root/gatewayd/sched_time.c" "$out/prov_phone_shim.o" \
                $(pc --cflags --libs jansson libevent libical) -lphonenumber $(pc --libs icu-uc) \
                -lstdc++ -o "$out/$name" ;;
        *) echo "fuzz: no build rule for $name"; return 1 ;;
    esac
}

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    for f in "$here"/fuzz_*.c; do targets+=("$(basename "$f" .c)"); done
fi
fail=0
for t in "${targets[@]}"; do
    build "$t"
    corpus="$out/corpus-$t"
    mkdir -p "$corpus"
    seeds=()
    [ -d "$here/seeds/$t" ] && seeds=("$here/seeds/$t")
    echo "fuzz: $t for ${secs}s"
    if ! "$out/$t" -max_total_time="$secs" -print_final_stats=0 -artifact_prefix="$out/$t-" \
            "$corpus" "${seeds[@]}" >"$out/$t.log" 2>&1; then
        echo "fuzz: $t FAILED; see $out/$t.log (crash input saved as $out/$t-crash-*)"
        tail -n 30 "$out/$t.log"
        fail=1
    else
        grep -E '^#[0-9]+.*DONE' "$out/$t.log" | tail -n1 || true
    fi
done
exit $fail
