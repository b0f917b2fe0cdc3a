#!/usr/bin/env bash
# ctest bench_loadgen_http: loadgen's own HTTP/1.1 client against a peer that answers in every
# framing a server may use (Content-Length, chunked, Connection: close, HTTP/1.0 read to close),
# refuses with 503, or drops connections without an answer. Checks loadgen's JSON summary and
# its --ids-out file: every request accepted once, every id written, retries and connection
# errors counted.
#
#   bench/test_loadgen.sh LOADGEN
set -euo pipefail
loadgen=${1:?usage: test_loadgen.sh LOADGEN}
tmp=$(mktemp -d)
peer=""
cleanup() { [ -z "$peer" ] || kill "$peer" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# The peer: a raw socket server (python3) so that the bytes on the wire are exactly these.
# MODE mixed: request n gets framing n % 4; MODE busy: the first request on each connection gets
# 503, then 202; MODE drop: every 5th request is closed without an answer.
cat >"$tmp/peer.py" <<'PY'
import json, socket, socketserver, sys, threading
from urllib.parse import parse_qs, urlsplit
mode = sys.argv[1]
expect_text = sys.argv[2]
lock = threading.Lock()
count = [0]
def next_n():
    with lock:
        count[0] += 1
        return count[0]
class H(socketserver.BaseRequestHandler):
    def handle(self):
        buf = b""
        first = True
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            while b"\r\n\r\n" not in buf:
                d = self.request.recv(65536)
                if not d:
                    return
                buf += d
            head, _, rest = buf.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"content-length":
                    length = int(v)
            while len(rest) < length:
                d = self.request.recv(65536)
                if not d:
                    return
                rest += d
            buf, req = rest[length:], rest[:length]
            if b"/api/v1/messages" in head.split(b"\r\n")[0]:
                # the body must be the JSON the API expects, with the text as given
                try:
                    j = json.loads(req)
                    good = (j["to"].startswith("+") and j["text"].startswith(expect_text)
                            and set(j) <= {"to", "text", "idempotency_key"})
                except Exception:
                    good = False
            else:
                # a form body (--inbound) or a query (--get): from/to and text, URL-encoded
                line = head.split(b"\r\n")[0].decode()
                fields = parse_qs(req.decode() if req else urlsplit(line.split(" ")[1]).query)
                num = (fields.get("from") or fields.get("to") or [""])[0]
                good = num.startswith("+33") and fields.get("text", [""])[0].startswith(expect_text)
            if not good:
                self.request.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                continue
            n = next_n()
            ok = b"200 OK" if b"/providers/" in head.split(b"\r\n")[0] else b"202 Accepted"
            body = b'{"id":%d,"status":"queued"}' % n
            if mode == "busy" and first:
                first = False
                msg = b'{"error":"busy"}'
                self.request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: %d\r\n\r\n%s" % (len(msg), msg))
                continue
            if mode == "drop" and n % 5 == 0:
                return
            kind = n % 4 if mode == "mixed" else 0
            if kind == 0:
                self.request.sendall(b"HTTP/1.1 " + ok + b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            elif kind == 1:
                half = len(body) // 2
                self.request.sendall(b"HTTP/1.1 " + ok + b"\r\nTransfer-Encoding: chunked\r\n\r\n")
                self.request.sendall(b"%x\r\n%s\r\n" % (half, body[:half]))
                self.request.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body) - half, body[half:]))
            elif kind == 2:
                self.request.sendall(b"HTTP/1.1 " + ok + b"\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                return
            else:
                self.request.sendall(b"HTTP/1.0 " + ok + b"\r\n\r\n" + body)
                return
class S(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
s = S(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
PY

start_peer() {
    if [ -n "$peer" ]; then # the old peer gone, and its port file with it
        kill "$peer" 2>/dev/null || true
        wait "$peer" 2>/dev/null || true
    fi
    rm -f "$tmp/port"
    python3 "$tmp/peer.py" "$1" "$text_start" >"$tmp/port" &
    peer=$!
    for _ in $(seq 50); do [ -s "$tmp/port" ] && break; sleep 0.1; done
    port=$(cat "$tmp/port")
    [ -n "$port" ] || fail "the peer did not start"
}

# field NAME of the JSON summary in $tmp/out
field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$tmp/out" "$1"; }

run() { # mode, count, extra loadgen args...
    local mode=$1 count=$2
    shift 2
    start_peer "$mode"
    rm -f "$tmp/ids"
    set +e
    "$loadgen" --url "http://127.0.0.1:$port" --count "$count" --concurrency 4 \
        --json --max-seconds 60 "$@" >"$tmp/out"
    rc=$?
    set -e
    echo "$mode: $(cat "$tmp/out")"
}

# every framing: all accepted, one id per request, no error
# a text JSON must escape: quotes, a backslash, a tab, and UTF-8 as is
text_start=$(printf 'Dit "bonjour" \\ \t\xc3\xa0 ')
run mixed 400 --key k --ids-out "$tmp/ids" --text "$text_start%d fois"
[ "$rc" = 0 ] || fail "mixed: loadgen exited $rc"
[ "$(field accepted)" = 400 ] || fail "mixed: $(field accepted) of 400 accepted"
[ "$(field connection_errors)" = 0 ] || fail "mixed: connection errors $(field connection_errors)"
[ "$(wc -l <"$tmp/ids")" = 400 ] || fail "mixed: $(wc -l <"$tmp/ids") ids written, not 400"
[ "$(sort -u "$tmp/ids" | wc -l)" = 400 ] || fail "mixed: the ids written are not 400 distinct ones"

text_start="Bonjour" # loadgen's default text from here on

# the two other request shapes, over the same framings
run mixed 100 --inbound sim --ids-out "$tmp/ids"
[ "$rc" = 0 ] && [ "$(field accepted)" = 100 ] || fail "inbound: $(field accepted) of 100 accepted"
[ "$(wc -l <"$tmp/ids")" = 100 ] || fail "inbound: $(wc -l <"$tmp/ids") ids written, not 100"
run mixed 100 --get '/cgi-bin/sendsms?to={to}&text={text}'
[ "$rc" = 0 ] && [ "$(field accepted)" = 100 ] || fail "get: $(field accepted) of 100 accepted"

# 503 without --retry is a failure; with --retry it is sent again
run busy 50 --key k
[ "$rc" = 1 ] || fail "busy without --retry: loadgen exited $rc, not 1"
[ "$(field failed)" -ge 4 ] || fail "busy without --retry: $(field failed) failed, expected at least 4"
run busy 50 --key k --retry --idempotency-prefix t
[ "$rc" = 0 ] || fail "busy with --retry: loadgen exited $rc"
[ "$(field accepted)" = 50 ] || fail "busy with --retry: $(field accepted) of 50 accepted"
[ "$(field retries)" -ge 4 ] || fail "busy with --retry: $(field retries) retries, expected at least 4"

# connections dropped without an answer: connection errors, then retried
run drop 100 --key k --retry --idempotency-prefix t
[ "$rc" = 0 ] || fail "drop with --retry: loadgen exited $rc"
[ "$(field accepted)" = 100 ] || fail "drop with --retry: $(field accepted) of 100 accepted"
[ "$(field connection_errors)" -ge 10 ] || fail "drop: $(field connection_errors) connection errors, expected at least 10"

# nobody listening: every request a connection error, no hang
kill "$peer"; wait "$peer" 2>/dev/null || true; peer=""
set +e
"$loadgen" --url "http://127.0.0.1:$port" --key k --count 5 --concurrency 2 --json >"$tmp/out"
rc=$?
set -e
echo "refused: $(cat "$tmp/out")"
[ "$rc" = 1 ] || fail "refused: loadgen exited $rc, not 1"
[ "$(field connection_errors)" = 5 ] || fail "refused: $(field connection_errors) connection errors, not 5"
echo "PASS"
