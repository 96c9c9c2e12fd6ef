#!/bin/sh
# Smoke test: start simple_switch_grpc with p4/build/fabric.json (no
# interfaces, loopback gRPC, free ports), check that it loads the program
# and serves, then stop it. Prints SKIPPED where simple_switch_grpc is absent.
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

SS=${SIMPLE_SWITCH_GRPC:-}
if [ -z "$SS" ]; then
    if command -v simple_switch_grpc >/dev/null 2>&1; then SS=$(command -v simple_switch_grpc)
    elif [ -x /opt/p4/bin/simple_switch_grpc ]; then SS=/opt/p4/bin/simple_switch_grpc
    else echo "SKIPPED: simple_switch_grpc not found"; exit 0; fi
fi

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
THRIFT=$(free_port)
GRPC=$(free_port)
LOG=$(mktemp)

"$SS" --log-console --device-id 1 --thrift-port "$THRIFT" p4/build/fabric.json \
    -- --grpc-server-addr "127.0.0.1:$GRPC" --cpu-port 255 >"$LOG" 2>&1 &
PID=$!
cleanup() { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; rm -f "$LOG"; }
trap cleanup EXIT INT TERM

ok=0
for _ in $(seq 1 50); do
    if ! kill -0 "$PID" 2>/dev/null; then break; fi
    if grep -q "Server listening on 127.0.0.1:$GRPC" "$LOG"; then ok=1; break; fi
    sleep 0.2
done
sleep 0.5
cat "$LOG"
if [ "$ok" -eq 1 ] && kill -0 "$PID" 2>/dev/null && ! grep -qE '\[(E|C|error|critical)\]' "$LOG"; then
    echo "OK: simple_switch_grpc loaded p4/build/fabric.json (thrift $THRIFT, grpc $GRPC)"
else
    echo "FAILED: simple_switch_grpc did not come up cleanly" >&2
    exit 1
fi
