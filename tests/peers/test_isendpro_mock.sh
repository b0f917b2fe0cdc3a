#!/usr/bin/env bash
# Self-test of the iSendPro mock (tests/peers/isendpro_mock.c): starts it on a free port with a
# small delivery-report listener, checks every documented behaviour with curl, asserts on status
# codes and JSON with python3, stops both, exits non-zero on any failure.
# usage: test_isendpro_mock.sh path/to/isendpro_mock
set -u
MOCK=${1:?usage: test_isendpro_mock.sh path/to/isendpro_mock}
KEY=KEYsecret4242
TMP=$(mktemp -d)
MOCK_PID=
DLR_PID=
PASSED=0
FAILED=0
# the system interpreter: version-manager shims (pyenv) cost about a second per start
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3)

cleanup() {
    [ -n "$MOCK_PID" ] && kill "$MOCK_PID" 2>/dev/null
    [ -n "$DLR_PID" ] && kill "$DLR_PID" 2>/dev/null
    wait 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT

# ---- helpers ---------------------------------------------------------------------------------

cat >"$TMP/check.py" <<'EOF'
import json, sys
status, bodyfile, expr, rc, elapsed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
raw = open(bodyfile, 'rb').read()
b = raw.decode('utf-8', 'replace')
try:
    j = json.loads(b)
except Exception:
    j = None
s = int(status) if status.isdigit() else 0
def etat(j):
    return j["etat"]["etat"]
def first(j):
    e = j["etat"]
    if "etat" in e:
        e = e["etat"]
    return e[0] if isinstance(e, list) else e
def codes(j):
    return [e["code"] for e in etat(j)]
try:
    ok = bool(eval(expr))
except Exception as ex:
    print("      exception: %r" % ex)
    ok = False
if not ok:
    print("      status=%s curl_rc=%d elapsed=%.2fs body=%s" % (status, rc, elapsed, b[:500]))
sys.exit(0 if ok else 1)
EOF

# call METHOD PATH [curl args...] -> $STATUS, $CURL_RC, $ELAPSED, body in $TMP/body
call() {
    local m=$1 p=$2
    shift 2
    : >"$TMP/body"
    local out
    out=$(curl -sS -m 10 -o "$TMP/body" -w '%{http_code} %{time_total}' -X "$m" "$BASE$p" "$@" \
        2>"$TMP/curl.err")
    CURL_RC=$?
    STATUS=${out%% *}
    ELAPSED=${out##* }
    [ -n "$ELAPSED" ] || ELAPSED=0
}
post_json() { call POST "$1" -H 'Content-Type: application/json' --data-binary "$2"; }
sms() { post_json /cgi-bin/sms "$1"; }
multi() { post_json /cgi-bin/smsmulti "$1"; }
ctl() { post_json "/_mock/$1" "$2"; }

# expect "description" 'python expression over s (status), j (json), b (body), rc, elapsed'
expect() {
    if "$PY" "$TMP/check.py" "$STATUS" "$TMP/body" "$2" "$CURL_RC" "$ELAPSED"; then
        PASSED=$((PASSED + 1))
        echo "ok   - $1"
    else
        FAILED=$((FAILED + 1))
        echo "FAIL - $1"
    fi
}

# poll GET PATH until the python expression holds (5 s), then assert it
eventually() {
    local path=$1 desc=$2 expr=$3
    for _ in $(seq 1 50); do
        call GET "$path"
        "$PY" "$TMP/check.py" "$STATUS" "$TMP/body" "$expr" "$CURL_RC" "$ELAPSED" \
            >/dev/null 2>&1 && break
        sleep 0.1
    done
    expect "$desc" "$expr"
}

# rep TEXT N: TEXT repeated N times
rep() {
    local out= i
    for ((i = 0; i < $2; i++)); do out+=$1; done
    printf '%s' "$out"
}
# body '{"num":...}': the same JSON object with the test keyid first
body() { printf '{"keyid":"%s",%s' "$KEY" "${1#\{}"; }

free_port() {
    "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# ---- delivery-report listener ------------------------------------------------------------------

cat >"$TMP/dlr.py" <<'EOF'
import http.server, json, sys, urllib.parse
log, portfile = sys.argv[1], sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        u = urllib.parse.urlparse(self.path)
        params = dict(urllib.parse.parse_qsl(u.query, keep_blank_values=True))
        with open(log, 'a') as f:
            f.write(json.dumps({"path": u.path, "params": params}) + "\n")
        code = 500 if params.get("tracker", "").startswith("fail") else 200
        self.send_response(code)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *a):
        pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
with open(portfile + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
import os
os.rename(portfile + ".tmp", portfile)
srv.serve_forever()
EOF
: >"$TMP/dlr.log"
"$PY" "$TMP/dlr.py" "$TMP/dlr.log" "$TMP/dlr.port" &
DLR_PID=$!
for _ in $(seq 1 50); do [ -s "$TMP/dlr.port" ] && break; sleep 0.1; done
DLR_PORT=$(cat "$TMP/dlr.port" 2>/dev/null)
[ -n "$DLR_PORT" ] || { echo "FAIL - delivery-report listener did not start"; exit 1; }

# ---- start the mock --------------------------------------------------------------------------

"$MOCK" --listen 127.0.0.1:0 --keyid "$KEY" --keyid SECONDKEY \
    --dlr-url "http://127.0.0.1:$DLR_PORT/dlr?src=mock" --dlr-delay-ms 100 --credit 5 \
    --record "$TMP/record.jsonl" 2>"$TMP/mock.log" &
MOCK_PID=$!
PORT=
for _ in $(seq 1 50); do
    PORT=$(sed -n 's|.*listening on http://127\.0\.0\.1:\([0-9]*\).*|\1|p' "$TMP/mock.log")
    [ -n "$PORT" ] && break
    sleep 0.1
done
[ -n "$PORT" ] || { echo "FAIL - mock did not start"; cat "$TMP/mock.log"; exit 1; }
BASE="http://127.0.0.1:$PORT"
echo "# mock on $BASE, delivery-report listener on port $DLR_PORT"

# ---- /sms: success and envelope ---------------------------------------------------------------

sms "$(body '{"num":"0612345678","sms":"Bonjour"}')"
expect "sms national number: 200, documented success shape, tel international" \
    's == 200 and j == {"etat":{"etat":[{"code":0,"tel":"33612345678","message":"OK","smslong":"1"}]}}'
sms "$(body '{"num":"447700900123","sms":"Hello"}')"
expect "sms international number without +" 's == 200 and first(j)["tel"] == "447700900123" and first(j)["code"] == 0'
call POST /cgi-bin/sms -H 'Content-Type: text/plain' --data-binary "$(body '{"num":"0612345678","sms":"x"}')"
expect "JSON body parsed whatever the content type" 's == 200 and first(j)["code"] == 0'
call POST /cgi-bin/sms --data-urlencode "keyid=$KEY" --data-urlencode num=0612345678 \
    --data-urlencode 'sms=Bonjour à tous' --data-urlencode emetteur=MAIRIE
expect "form-encoded /sms accepted" 's == 200 and first(j)["code"] == 0'

# ---- general errors (HTTP 400, no tel) -----------------------------------------------------------

sms '{"keyid":"wrong","num":"0612345678","sms":"x"}'
expect "unknown keyid: 400 code \"1\", no tel" 's == 400 and first(j)["code"] == "1" and "tel" not in first(j) and first(j)["message"]'
sms '{"num":"0612345678","sms":"x"}'
expect "missing keyid: 400 code 1" 's == 400 and first(j)["code"] == "1"'
sms '{"keyid":"SECONDKEY","num":"0612345678","sms":"x"}'
expect "second --keyid accepted" 's == 200'
call POST /cgi-bin/sms -H 'Content-Type: application/json' --data-binary '{"keyid": bad'
expect "invalid JSON: 400 code 16" 's == 400 and first(j)["code"] == "16"'

for e in ABC ABCDEFGHIJKL mairie 12345 'MAIRIE-75'; do
    sms "$(body "{\"num\":\"0612345678\",\"sms\":\"x\",\"emetteur\":\"$e\"}")"
    expect "emetteur '$e' rejected: code 3" 's == 400 and first(j)["code"] == "3" and "tel" not in first(j)'
done
for e in 'MAIRIE 75' ABCD 1234567890A; do
    sms "$(body "{\"num\":\"0612345678\",\"sms\":\"x\",\"emetteur\":\"$e\"}")"
    expect "emetteur '$e' accepted" 's == 200'
done

for n in +33612345678 '06 12 34 56 78' 0612 00612345678 33abc 3361234567 336123456789; do
    sms "$(body "{\"num\":\"$n\",\"sms\":\"x\"}")"
    expect "num '$n' rejected: code 10" 's == 400 and first(j)["code"] == "10"'
done
sms "$(body '{"sms":"x"}')"
expect "missing num: code 10" 's == 400 and first(j)["code"] == "10"'
sms "$(body '{"num":"0612345678"}')"
expect "missing sms: code 4" 's == 400 and first(j)["code"] == "4"'
sms "$(body '{"num":["0612345678"],"sms":"x"}')"
expect "/sms with a num array: code 10" 's == 400 and first(j)["code"] == "10"'

# ---- GSM 03.38 / UCS-2 -----------------------------------------------------------------------

for t in 'être' 'ça' '🙂' 'a`b'; do
    sms "$(body "{\"num\":\"0612345678\",\"sms\":\"$t\"}")"
    expect "non-GSM text '$t' without ucs2: code 5" 's == 400 and first(j)["code"] == "5"'
done
sms "$(body '{"num":"0612345678","sms":"Été à 5€ {ok} [x] ~^|\\ @£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ!¤%&¡ÄÖÑÜ§¿äöñüà"}')"
expect "all of GSM 03.38 default + extension accepted" 's == 200 and first(j)["code"] == 0'
sms "$(body '{"num":"447700900123","sms":"Привет 🙂","ucs2":"1"}')"
expect "ucs2:\"1\" to a non-French number accepted" 's == 200 and first(j)["smslong"] == "1"'
sms "$(body '{"num":"0612345678","sms":"être","ucs2":"1"}')"
expect "ucs2 to metropolitan France: code 13" 's == 400 and first(j)["code"] == "13"'

# ---- long SMS ---------------------------------------------------------------------------------

sms "$(body "{\"num\":\"0612345678\",\"sms\":\"$(rep a 160)\"}")"
expect "160 GSM chars: one part" 's == 200 and first(j)["smslong"] == "1"'
sms "$(body "{\"num\":\"0612345678\",\"sms\":\"$(rep a 161)\"}")"
expect "161 GSM chars without smslong: code 6" 's == 400 and first(j)["code"] == "6"'
sms "$(body "{\"num\":\"0612345678\",\"sms\":\"$(rep a 161)\",\"smslong\":\"2\"}")"
expect "161 chars, smslong 2: two parts" 's == 200 and first(j)["smslong"] == "2"'
sms "$(body "{\"num\":\"0612345678\",\"sms\":\"$(rep a 306)\",\"smslong\":2}")"
expect "306 chars (2x153), smslong 2 (integer): accepted" 's == 200 and first(j)["smslong"] == "2"'
sms "$(body "{\"num\":\"0612345678\",\"sms\":\"$(rep a 307)\",\"smslong\":\"2\"}")"
expect "307 chars, smslong 2: code 6" 's == 400 and first(j)["code"] == "6"'
sms "$(body "{\"num\":\"0612345678\",\"sms\":\"$(rep a 307)\",\"smslong\":\"999\"}")"
expect "smslong 999 computes the parts (3)" 's == 200 and first(j)["smslong"] == "3"'
sms "$(body "{\"num\":\"0612345678\",\"sms\":\"$(rep a 918)\",\"smslong\":\"999\"}")"
expect "918 chars: 6 parts" 's == 200 and first(j)["smslong"] == "6"'
sms "$(body "{\"num\":\"0612345678\",\"sms\":\"$(rep a 919)\",\"smslong\":\"999\"}")"
expect "919 chars: more than 6 parts, code 6" 's == 400 and first(j)["code"] == "6"'
sms "$(body '{"num":"0612345678","sms":"x","smslong":"7"}')"
expect "smslong 7: code 7" 's == 400 and first(j)["code"] == "7"'
sms "$(body "{\"num\":\"0612345678\",\"sms\":\"$(rep € 80)\"}")"
expect "80 euro signs = 160 septets: one part" 's == 200 and first(j)["smslong"] == "1"'
sms "$(body "{\"num\":\"0612345678\",\"sms\":\"$(rep € 81)\"}")"
expect "81 euro signs = 162 septets: code 6" 's == 400 and first(j)["code"] == "6"'
sms "$(body "{\"num\":\"0612345678\",\"sms\":\"$(rep € 81)\",\"smslong\":\"999\"}")"
expect "81 euro signs with 999: two parts" 's == 200 and first(j)["smslong"] == "2"'
sms "$(body "{\"num\":\"447700900123\",\"sms\":\"$(rep é 70)\",\"ucs2\":\"1\"}")"
expect "70 UCS-2 chars: one part" 's == 200 and first(j)["smslong"] == "1"'
sms "$(body "{\"num\":\"447700900123\",\"sms\":\"$(rep é 71)\",\"ucs2\":\"1\"}")"
expect "71 UCS-2 chars without smslong: code 6" 's == 400 and first(j)["code"] == "6"'
sms "$(body "{\"num\":\"447700900123\",\"sms\":\"$(rep é 135)\",\"ucs2\":\"1\",\"smslong\":\"999\"}")"
expect "135 UCS-2 chars: three parts (67 per part)" 's == 200 and first(j)["smslong"] == "3"'

# STOP mention (12 characters) with a custom sender
sms "$(body "{\"num\":\"0612345678\",\"sms\":\"$(rep a 148)\",\"emetteur\":\"MAIRIE\"}")"
expect "148 chars + STOP mention with emetteur: one part" 's == 200 and first(j)["smslong"] == "1"'
sms "$(body "{\"num\":\"0612345678\",\"sms\":\"$(rep a 149)\",\"emetteur\":\"MAIRIE\"}")"
expect "149 chars + STOP mention: code 6" 's == 400 and first(j)["code"] == "6"'
sms "$(body "{\"num\":\"0612345678\",\"sms\":\"$(rep a 149)\",\"emetteur\":\"MAIRIE\",\"nostop\":\"1\"}")"
expect "nostop ignored while the account restriction is on" 's == 400 and first(j)["code"] == "6"'
ctl account '{"nostop_lifted": true}'
sms "$(body "{\"num\":\"0612345678\",\"sms\":\"$(rep a 160)\",\"emetteur\":\"MAIRIE\",\"nostop\":\"1\"}")"
expect "nostop honoured once lifted" 's == 200 and first(j)["smslong"] == "1"'
ctl account '{"nostop_lifted": false}'

# ---- date_envoi, gmt_zone, tracker ---------------------------------------------------------

sms "$(body '{"num":"0612345678","sms":"x","date_envoi":"2030-01-15 09:30","gmt_zone":"Europe/Brussels"}')"
expect "date_envoi YYYY-MM-DD hh:mm with gmt_zone accepted" 's == 200'
for d in '2030-01-15T09:30' '2030-02-30 09:30' '15/01/2030 09:30' '2030-01-15 24:00' '2030-01-15 09:30:00'; do
    sms "$(body "{\"num\":\"0612345678\",\"sms\":\"x\",\"date_envoi\":\"$d\"}")"
    expect "date_envoi '$d': code 8" 's == 400 and first(j)["code"] == "8"'
done
sms "$(body '{"num":"0612345678","sms":"x","date_envoi":"2030-01-15 09:30","gmt_zone":"Europe/Paris"}')"
expect "gmt_zone Europe/Paris (not in iSendPro's list): code 9" 's == 400 and first(j)["code"] == "9"'
sms "$(body '{"num":"0612345678","sms":"x","tracker":"abc-123"}')"
expect "tracker with '-': code 12" 's == 400 and first(j)["code"] == "12"'
sms "$(body "{\"num\":\"0612345678\",\"sms\":\"x\",\"tracker\":\"$(rep a 50)\"}")"
expect "tracker of 50 chars: code 12" 's == 400 and first(j)["code"] == "12"'
sms "$(body "{\"num\":\"0612345678\",\"sms\":\"x\",\"tracker\":\"$(rep a 49)\"}")"
expect "tracker of 49 chars accepted" 's == 200'

# ---- per-number outcomes ---------------------------------------------------------------------

ctl blacklist '{"num":"0611111111"}'
expect "/_mock/blacklist normalises 06... to 336..." 's == 200 and "33611111111" in j["blacklist"]'
ctl unassigned '{"num":"33622222222"}'
expect "/_mock/unassigned" 's == 200 and j["unassigned"] == ["33622222222"]'
sms "$(body '{"num":"33611111111","sms":"x"}')"
expect "blacklisted number: 200 with code 11 and tel" 's == 200 and etat(j) == [{"code":11,"tel":"33611111111","message":first(j)["message"]}]'
sms "$(body '{"num":"0622222222","sms":"x"}')"
expect "unassigned number: 200 with code 21 and tel" 's == 200 and first(j)["code"] == 21 and first(j)["tel"] == "33622222222"'

multi "$(body '{"num":["33612345678","0611111111","33622222222"],"sms":["hello"],"tracker":["T1","T2","T3"]}')"
expect "smsmulti mixes codes 0, 11, 21 (one element per number)" \
    's == 200 and codes(j) == [0, 11, 21] and [e["tel"] for e in etat(j)] == ["33612345678","33611111111","33622222222"] and etat(j)[0]["smslong"] == "1"'
multi "$(body '{"num":["33612345678","447700900123"],"sms":["un","deux"],"tracker":["M1","M2"]}')"
expect "smsmulti with one text per number" 's == 200 and codes(j) == [0, 0]'
multi "$(body '{"num":["33612345678","447700900123","33633333333"],"sms":["un","deux"]}')"
expect "smsmulti with 2 texts for 3 numbers: code 14" 's == 400 and first(j)["code"] == "14"'
multi "$(body '{"num":["33612345678","447700900123"],"sms":["x"],"tracker":["M1"]}')"
expect "smsmulti with 1 tracker for 2 numbers: code 14" 's == 400 and first(j)["code"] == "14"'
call POST /cgi-bin/smsmulti --data-urlencode "keyid=$KEY" --data-urlencode 'num[]=0612345678' \
    --data-urlencode 'num[]=447700900123' --data-urlencode 'sms[]=salut'
expect "form-encoded smsmulti with num[]" 's == 200 and codes(j) == [0, 0]'

# ---- comptage --------------------------------------------------------------------------------

post_json /cgi-bin/comptage "$(body '{"num":"0612345678","sms":"Compte-moi","comptage":"1"}')"
expect "comptage: nb_caractere, nb_sms, tel" 's == 200 and etat(j) == [{"nb_caractere":10,"nb_sms":1,"tel":"33612345678"}]'
post_json /cgi-bin/comptage "$(body "{\"num\":\"0612345678\",\"sms\":\"$(rep a 200)\",\"comptage\":\"1\",\"emetteur\":\"MAIRIE\"}")"
expect "comptage counts the STOP mention and parts" 's == 200 and first(j)["nb_caractere"] == 212 and first(j)["nb_sms"] == 2'
post_json /cgi-bin/comptage "$(body '{"num":"0612345678","sms":"Bonjour"}')"
expect "comptage without comptage=1: code 15" 's == 400 and first(j)["code"] == "15"'
call GET /_mock/sent
expect "comptage sends nothing" 's == 200 and not any(e["sms"] == "Compte-moi" for e in j)'

# ---- credit ----------------------------------------------------------------------------------

ctl credit '{"credit": 1}'
call POST /cgi-bin/credit --data-urlencode "keyid=$KEY" -d credit=1
expect "credit=1: euros as a string" 's == 200 and j == {"etat":{"credit":"1.00"}}'
sms "$(body "{\"num\":\"0612345678\",\"sms\":\"$(rep a 200)\",\"smslong\":\"2\"}")"
call GET "/cgi-bin/credit?keyid=$KEY&credit=2"
expect "a 2-part SMS costs 0.10; credit=2 adds quantite (GET with query)" 's == 200 and j == {"etat":{"credit":"0.90","quantite":"18"}}'
multi "$(body '{"num":["33612345678","0611111111"],"sms":["x"]}')"
call POST /cgi-bin/credit --data-urlencode "keyid=$KEY" -d credit=1
expect "blacklisted numbers are not charged" 's == 200 and j["etat"]["credit"] == "0.85"'
call POST /cgi-bin/credit -d keyid=wrong -d credit=1
expect "credit with a bad keyid: code 1" 's == 400 and first(j)["code"] == "1"'
call POST /cgi-bin/credit --data-urlencode "keyid=$KEY"
expect "credit without credit=1|2: code 15" 's == 400 and first(j)["code"] == "15"'
ctl credit '{"credit": 0.05}'
sms "$(body "{\"num\":\"0612345678\",\"sms\":\"$(rep a 200)\",\"smslong\":\"2\"}")"
expect "not enough credit for 2 parts: code 2" 's == 400 and first(j)["code"] == "2" and "tel" not in first(j)'
sms "$(body '{"num":"0612345678","sms":"x"}')"
expect "last 0.05 spent" 's == 200'
sms "$(body '{"num":"0612345678","sms":"x"}')"
expect "at 0 credit: general error code 2" 's == 400 and first(j)["code"] == "2"'
ctl credit '{"credit": 5}'

# ---- blacklist API ---------------------------------------------------------------------------

call POST "/cgi-bin/setlistenoire?keyid=$KEY&setlisteNoire=1&num=0633333333"
expect "setlistenoire answer" 's == 200 and j == {"etat":{"etat":[{"code":0,"message":"OK"}]}}'
call GET /_mock/state
expect "setlistenoire normalised 06... to 336..." '"33633333333" in j["blacklist"]'
sms "$(body '{"num":"33633333333","sms":"x"}')"
expect "number blacklisted through the API: code 11" 's == 200 and first(j)["code"] == 11'
call POST /cgi-bin/getlistenoire --data-urlencode "keyid=$KEY" -d getListeNoire=1
"$PY" - "$TMP/body" <<'EOF' >"$TMP/zip.txt" 2>&1
import io, sys, zipfile
z = zipfile.ZipFile(io.BytesIO(open(sys.argv[1], 'rb').read()))
print(z.testzip() is None, sorted(z.read(n).decode() for n in z.namelist()))
EOF
STATUS=200 && cp "$TMP/zip.txt" "$TMP/body"
expect "getlistenoire: a valid zip whose CSV lists the blacklist" '"True" in b and "33633333333" in b and "33611111111" in b'
call POST "/cgi-bin/dellistenoire?keyid=$KEY&delListeNoire=1&num=33633333333"
expect "dellistenoire (delListeNoire)" 's == 200 and first(j)["code"] == 0 and first(j)["message"] == "OK"'
call GET /_mock/state
expect "number removed from the blacklist" '"33633333333" not in j["blacklist"]'
call POST "/cgi-bin/setlistenoire?keyid=$KEY&setlisteNoire=1&num=33633333333"
call POST "/cgi-bin/dellistenoire?keyid=$KEY&dellisteNoire=1&num=0633333333"
expect "dellistenoire with the PHP SDK spelling dellisteNoire, national form" 's == 200'
call GET /_mock/state
expect "removed again" '"33633333333" not in j["blacklist"]'
call POST "/cgi-bin/setlistenoire?keyid=nope&setlisteNoire=1&num=0633333333"
expect "setlistenoire with a bad keyid: code 1" 's == 400 and first(j)["code"] == "1"'
call POST "/cgi-bin/setlistenoire?keyid=$KEY&num=0633333333"
expect "setlistenoire without setlisteNoire=1: code 15" 's == 400 and first(j)["code"] == "15"'

# ---- other paths ---------------------------------------------------------------------------

call POST /cgi-bin/nothing -d x=1
expect "unknown /cgi-bin path: 404" 's == 404'
call POST /cgi-bin/hlr -d x=1
expect "/hlr (undocumented answer): 501" 's == 501'
call GET "/cgi-bin/sms?keyid=$KEY&num=0612345678&sms=x"
expect "GET /sms: 405" 's == 405'

# ---- envelope shapes -------------------------------------------------------------------------

ctl mode '{"shape":"object"}'
sms "$(body '{"num":"0612345678","sms":"x"}')"
expect "shape object: etat.etat is one object" 's == 200 and j["etat"]["etat"] == {"code":0,"tel":"33612345678","message":"OK","smslong":"1"}'
multi "$(body '{"num":["0612345678","447700900123"],"sms":["x"]}')"
expect "shape object with two numbers stays an array" 's == 200 and isinstance(j["etat"]["etat"], list)'
ctl mode '{"shape":"flat"}'
sms "$(body '{"num":"0612345678","sms":"x"}')"
expect "shape flat: {\"etat\":{\"code\":\"0\",...}}" 's == 200 and j == {"etat":{"code":"0","tel":"33612345678","message":"OK","smslong":"1"}}'
ctl mode '{"shape":"string_codes"}'
multi "$(body '{"num":["0612345678","0611111111"],"sms":["x"]}')"
expect "shape string_codes: codes are strings" 's == 200 and codes(j) == ["0", "11"]'
ctl mode '{"shape":"object,string_codes"}'
sms "$(body '{"num":"0612345678","sms":"x"}')"
expect "shapes combine" 's == 200 and j["etat"]["etat"]["code"] == "0"'
ctl mode '{"shape":"array"}'
sms "$(body '{"num":"0612345678","sms":"x"}')"
expect "shape array restored" 's == 200 and isinstance(j["etat"]["etat"], list) and first(j)["code"] == 0'
ctl mode '{"shape":"weird"}'
expect "unknown shape rejected" 's == 400'

# ---- fault modes ----------------------------------------------------------------------------

ctl mode '{"mode":"slow","delay_ms":700,"count":1}'
expect "/_mock/mode slow" 's == 200 and j["mode"] == "slow" and j["count"] == 1'
sms "$(body '{"num":"0612345678","sms":"slow"}')"
expect "slow: answered after delay_ms" 's == 200 and first(j)["code"] == 0 and elapsed >= 0.65'
sms "$(body '{"num":"0612345678","sms":"x"}')"
expect "count 1: next request is normal again" 's == 200 and elapsed < 0.5'

ctl mode '{"mode":"slow","delay_ms":3000}'
call POST /cgi-bin/sms --max-time 0.5 -H 'Content-Type: application/json' --data-binary "$(body '{"num":"0612345678","sms":"slow2"}')"
expect "slow: a client giving up first gets nothing (curl exit 28)" 'rc == 28'
eventually /_mock/state "slow: the held connection is released when the client hangs up" 's == 200 and j["held"] == 0'
call GET /_mock/sent
expect "slow: the request was processed anyway" 's == 200 and j[-1]["sms"] == "slow2"'
ctl mode '{"mode":"timeout","count":1}'
call POST /cgi-bin/sms --max-time 0.5 -H 'Content-Type: application/json' --data-binary "$(body '{"num":"0612345678","sms":"t1"}')"
expect "timeout count 1: no answer" 'rc == 28'
sms "$(body '{"num":"0612345678","sms":"x"}')"
expect "timeout count 1: then normal" 's == 200'

ctl mode '{"mode":"error500","count":2}'
call GET /_mock/state
SENT_BEFORE=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["sent"])' "$TMP/body")
sms "$(body '{"num":"0612345678","sms":"e1"}')"
expect "error500: HTTP 500 with an HTML body" 's == 500 and j is None and "<html" in b.lower()'
sms "$(body '{"num":"0612345678","sms":"e2"}')"
expect "error500: second of count 2" 's == 500'
sms "$(body '{"num":"0612345678","sms":"e3"}')"
expect "error500 over after count" 's == 200'
call GET /_mock/state
expect "error500 requests were not processed" "s == 200 and j['sent'] == $SENT_BEFORE + 1"
ctl mode '{"mode":"error500","count":1,"process":true}'
sms "$(body '{"num":"0612345678","sms":"e4"}')"
expect "error500 with process:true still answers 500" 's == 500'
call GET /_mock/sent
expect "... but the SMS was sent (answer lost after processing)" 's == 200 and j[-1]["sms"] == "e4"'

ctl mode '{"mode":"timeout"}'
curl -sS -m 3 -o /dev/null -H 'Content-Type: application/json' \
    --data-binary "$(body '{"num":"0612345678","sms":"t"}')" "$BASE/cgi-bin/sms" 2>/dev/null &
CURL_BG=$!
eventually /_mock/state "timeout: the mock holds the request" 's == 200 and j["held"] == 1'
wait "$CURL_BG" 2>/dev/null
call POST /cgi-bin/sms --max-time 1 -H 'Content-Type: application/json' --data-binary "$(body '{"num":"0612345678","sms":"t"}')"
expect "timeout: no answer, the client gives up (curl exit 28)" 'rc == 28'
eventually /_mock/state "timeout: held connections released once clients hang up" 's == 200 and j["held"] == 0'
ctl mode '{"mode":"normal"}'
sms "$(body '{"num":"0612345678","sms":"x"}')"
expect "normal mode again" 's == 200'

ctl mode '{"mode":"reset","count":1}'
sms "$(body '{"num":"0612345678","sms":"r"}')"
expect "reset: connection closed without an answer (curl 52 or 56)" 'rc in (52, 56) and s == 0'
sms "$(body '{"num":"0612345678","sms":"x"}')"
expect "reset over after count 1" 's == 200'
call GET /_mock/state
expect "no held connection left" 's == 200 and j["held"] == 0 and j["mode"] == "normal"'
ctl mode '{"mode":"sideways"}'
expect "unknown mode rejected" 's == 400'

# ---- delivery reports -------------------------------------------------------------------------

ctl undeliverable '{"num":"0655555555"}'
sms "$(body '{"num":"0644444444","sms":"dlr","tracker":"DLR1"}')"
sms "$(body '{"num":"0655555555","sms":"dlr","tracker":"DLR2"}')"
sms "$(body '{"num":"0666666666","sms":"dlr","tracker":"fail500"}')"
eventually /_mock/dlr "DLR delivered: accepted by the listener (HTTP 200)" \
    'any(d["tracker"] == "DLR1" and d["tel"] == "33644444444" and d["status"] == "delivered" and d["http_status"] == 200 and d["accepted"] is True for d in j)'
eventually /_mock/dlr "DLR undeliverable number: status undelivered" \
    'any(d["tracker"] == "DLR2" and d["status"] == "undelivered" and d["accepted"] is True for d in j)'
eventually /_mock/dlr "DLR refused by the listener (HTTP 500): accepted false" \
    'any(d["tracker"] == "fail500" and d["http_status"] == 500 and d["accepted"] is False for d in j)'
cp "$TMP/dlr.log" "$TMP/body"
STATUS=200
expect "listener got GET <url>?src=mock&tracker=..&tel=..&status=.." \
    '{"path": "/dlr", "params": {"src": "mock", "tracker": "DLR1", "tel": "33644444444", "status": "delivered"}} in [json.loads(l) for l in b.splitlines()]'
expect "listener got the undelivered report" \
    'any(json.loads(l)["params"].get("tracker") == "DLR2" and json.loads(l)["params"]["status"] == "undelivered" for l in b.splitlines())'
DEAD_PORT=$(free_port)
ctl account "{\"dlr_url\":\"http://127.0.0.1:$DEAD_PORT/dlr\"}"
sms "$(body '{"num":"0612345678","sms":"dlr","tracker":"DEAD1"}')"
eventually /_mock/dlr "DLR to a closed port: failed, accepted false" \
    'any(d["tracker"] == "DEAD1" and d["state"] == "failed" and d["http_status"] is None and d["accepted"] is False for d in j)'

# ---- records ---------------------------------------------------------------------------------

call GET /_mock/requests
expect "/_mock/requests: keyid replaced by *** with keyid_ok" \
    's == 200 and len(j) > 50 and all(r["fields"].get("keyid", "***") == "***" for r in j) and any(r["keyid_ok"] is False for r in j) and any(r["keyid_ok"] is True for r in j)'
expect "/_mock/requests: path, method, fault, http_status" \
    'all({"path","method","fields","keyid_ok","fault","http_status"} <= set(r) for r in j) and any(r["fault"] == "timeout" and r["http_status"] is None for r in j)'
expect "/_mock/requests never shows the key" "'$KEY' not in b"
call GET /_mock/sent
expect "/_mock/sent: num, sms, tracker, emetteur, parts, at" \
    's == 200 and any(e["num"] == "33644444444" and e["sms"] == "dlr" and e["tracker"] == "DLR1" and e["parts"] == 1 and e["at"] for e in j) and any(e.get("emetteur") == "MAIRIE" for e in j)'
cp "$TMP/mock.log" "$TMP/body"
expect "stderr log: keyid=*** and never the key" "'keyid=***' in b and '$KEY' not in b and 'SECONDKEY' not in b"
cp "$TMP/record.jsonl" "$TMP/body"
expect "--record file: JSON lines, no key" \
    "all(json.loads(l)['kind'] in ('request','sent','dlr') for l in b.splitlines()) and '$KEY' not in b and len(b.splitlines()) > 50"

# ---- keyid control and reset -----------------------------------------------------------------

ctl account '{"dlr_delay_ms": 60000}'
sms "$(body '{"num":"0612345678","sms":"later","tracker":"LATER1"}')"
call GET /_mock/state
expect "a delivery report is pending" 's == 200 and j["dlr_jobs"] >= 1'
ctl keyid '{"keyid":"ADDEDKEY"}'
sms '{"keyid":"ADDEDKEY","num":"0612345678","sms":"x"}'
expect "/_mock/keyid adds an accepted key" 's == 200'
ctl mode '{"mode":"error500","shape":"flat"}'
ctl reset '{}'
expect "/_mock/reset" 's == 200 and j["dlr_jobs"] == 0 and j["dlr_delay_ms"] == 100 and j["mode"] == "normal" and j["shape"] == "array" and j["blacklist"] == [] and j["credit"] == "5.00" and j["requests"] == 0 and j["sent"] == 0 and j["dlr_url"] == "http://127.0.0.1:%s/dlr?src=mock" % '"$DLR_PORT"
sms '{"keyid":"ADDEDKEY","num":"0612345678","sms":"x"}'
expect "after reset the added key is gone" 's == 400 and first(j)["code"] == "1"'
sms "$(body '{"num":"0611111111","sms":"x"}')"
expect "after reset the blacklist is empty and the shape is array" 's == 200 and etat(j)[0]["code"] == 0'
call GET /_mock/dlr
expect "after reset /_mock/dlr only has the new report" 's == 200 and len(j) == 1'
call GET /_mock/requests
expect "after reset /_mock/requests only has the new requests" 's == 200 and len(j) == 2'

# ---- shutdown --------------------------------------------------------------------------------

ctl account '{"dlr_delay_ms": 60000}'
sms "$(body '{"num":"0612345678","sms":"pending at exit"}')"
ctl mode '{"mode":"timeout"}'
curl -sS -m 5 -o /dev/null -H 'Content-Type: application/json' \
    --data-binary "$(body '{"num":"0612345678","sms":"held at exit"}')" "$BASE/cgi-bin/sms" 2>/dev/null &
CURL_BG=$!
sleep 0.3
kill -TERM "$MOCK_PID"
wait "$MOCK_PID"
RC=$?
MOCK_PID=
wait "$CURL_BG" 2>/dev/null
STATUS=200
echo "$RC" >"$TMP/body"
expect "SIGTERM with a held request and a pending report: clean exit 0 (no leak reported under ASan)" 'b.strip() == "0"'

echo "# $PASSED passed, $FAILED failed"
if [ "$FAILED" -ne 0 ]; then
    echo "# mock log tail:"
    tail -n 20 "$TMP/mock.log" 2>/dev/null
    exit 1
fi
exit 0
