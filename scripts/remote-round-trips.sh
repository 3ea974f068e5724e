#!/usr/bin/env bash
# Counts the requests a remote-mode server sends its libSQL primary for one signup, login,
# refresh, second login and logout: sqld logs every HTTP request it gets at debug level. The
# audit writer's batch that follows an audited operation (one request) is counted with it.
#
# Usage: scripts/remote-round-trips.sh [edge-idp binary, default target/debug/edge-idp]
# sqld: SQLD_BIN, else sqld on PATH, else ../shared/tools/sqld.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${1:-target/debug/edge-idp}")
SQLD=${SQLD_BIN:-$(command -v sqld || echo ../shared/tools/sqld)}
T=$(mktemp -d); SP=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
AP=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
RUST_LOG=libsql_server=debug "$SQLD" --db-path $T/p.sqld --http-listen-addr 127.0.0.1:$SP --no-welcome > $T/sqld.log 2>&1 &
S=$!
for i in $(seq 1 100); do curl -fsS http://127.0.0.1:$SP/health >/dev/null 2>&1 && break; sleep 0.1; done
"$BIN" --listen-addr 127.0.0.1:$AP --data-dir $T/d --mfa-encryption-key YmVuY2gtb25seS1tYXN0ZXIta2V5LTAwMDAwMDAwMDA --database-url http://127.0.0.1:$SP --argon2-memory-kib 1024 --argon2-iterations 1 --key-check-interval-secs 240 --log-format json > $T/app.log 2>&1 &
A=$!
for i in $(seq 1 100); do curl -fsS http://127.0.0.1:$AP/healthz >/dev/null 2>&1 && break; sleep 0.1; done
# Let the start's own writes (first key check, audit writer) settle before counting; each
# operation below is followed by a pause for its audit batch.
sleep 1
count() { grep -c "got request: POST /v" $T/sqld.log; }
# Transactions left open across requests end with a COMMIT sent on its own: none should.
commits() { grep -c 'Execute(ExecuteStreamReq { stmt: Stmt { sql: Some("COMMIT")' $T/sqld.log || true; }
aud() { grep -c "audit_events" $T/sqld.log || true; }
B=http://127.0.0.1:$AP
c0=$(commits); n0=$(count); a0=$(aud); curl -s -o /dev/null -X POST $B/auth/signup -H 'content-type: application/json' -d '{"email":"rt@example.com","password":"correct horse battery staple"}'; sleep 0.3; n1=$(count); a1=$(aud)
R=$(curl -s -X POST $B/auth/login -H 'content-type: application/json' -d '{"email":"rt@example.com","password":"correct horse battery staple"}'); sleep 0.3; n2=$(count); a2=$(aud)
RT=$(echo "$R" | python3 -c 'import json,sys; print(json.load(sys.stdin)["refresh_token"])')
curl -s -o /dev/null -X POST $B/auth/refresh -H 'content-type: application/json' -d "{\"refresh_token\":\"$RT\"}"; sleep 0.3; n3=$(count); a3=$(aud)
R2=$(curl -s -X POST $B/auth/login -H 'content-type: application/json' -d '{"email":"rt@example.com","password":"correct horse battery staple"}'); sleep 0.3; n4=$(count); a4=$(aud)
RT2=$(echo "$R2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["refresh_token"])')
curl -s -o /dev/null -X POST $B/auth/logout -H 'content-type: application/json' -d "{\"refresh_token\":\"$RT2\"}"; sleep 0.3; n5=$(count); a5=$(aud)
# MFA verify: enroll and confirm as the second login's session would, then a login that asks
# for the second factor and the verify that answers it (a TOTP code computed here).
TOTP='import base64,hashlib,hmac,struct,sys,time
k=base64.b32decode(sys.argv[1]+"="*(-len(sys.argv[1])%8)); t=int(time.time())//30+int(sys.argv[2])
h=hmac.new(k,struct.pack(">Q",t),hashlib.sha1).digest(); o=h[19]&15
print("%06d"%((struct.unpack(">I",h[o:o+4])[0]&0x7fffffff)%1000000))'
L=$(curl -s -X POST $B/auth/login -H 'content-type: application/json' -d '{"email":"rt@example.com","password":"correct horse battery staple"}')
AT=$(echo "$L" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
SEC=$(curl -s -X POST $B/auth/mfa/enroll -H "authorization: Bearer $AT" | python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])')
curl -s -o /dev/null -X POST $B/auth/mfa/confirm -H "authorization: Bearer $AT" -H 'content-type: application/json' -d "{\"code\":\"$(python3 -c "$TOTP" $SEC 0)\"}"
MT=$(curl -s -X POST $B/auth/login -H 'content-type: application/json' -d '{"email":"rt@example.com","password":"correct horse battery staple"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["mfa_token"])')
sleep 0.3; n6=$(count); a6=$(aud)
curl -s -o /dev/null -w "verify %{http_code}\n" -X POST $B/auth/mfa/verify -H 'content-type: application/json' -d "{\"mfa_token\":\"$MT\",\"code\":\"$(python3 -c "$TOTP" $SEC 1)\"}"
sleep 0.3; n7=$(count); a7=$(aud)
echo "requests to the primary, each operation (with the audit writer's batch, one request, when the operation wrote an audit row; log lines naming audit_events: $((a1-a0)) $((a2-a1)) $((a3-a2)) $((a4-a3)) $((a5-a4)))"; echo "signup $((n1-n0)) login $((n2-n1)) refresh $((n3-n2)) login-again $((n4-n3)) logout $((n5-n4)) mfa-verify $((n7-n6)) (audit lines $((a7-a6)))"
echo "COMMITs sent on their own after the start: $(( $(commits) - c0 ))"
kill $A $S; wait 2>/dev/null; rm -rf $T
