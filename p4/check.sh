#!/bin/sh
# Recompile the pipeline into a temporary directory and fail if the
# checked-in outputs under p4/build/ differ. Prints SKIPPED (and exits 0)
# where p4c-bm2-ss is not installed.
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

if [ -z "${P4C:-}" ] && ! command -v p4c-bm2-ss >/dev/null 2>&1 \
        && [ ! -x /opt/p4/bin/p4c-bm2-ss ] \
        && [ ! -x /opt/p4/build/p4c/backends/bmv2/p4c-bm2-ss ]; then
    echo "SKIPPED: p4c-bm2-ss not found"
    exit 0
fi

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT INT TERM

p4/compile.sh "$TMP" 2>"$TMP/compile.log" || { cat "$TMP/compile.log" >&2; exit 1; }

status=0
for f in fabric.json fabric.p4info.txt fabric.p4info.bin \
         testing/p4rt_test.json testing/p4rt_test.p4info.txt testing/p4rt_test.p4info.bin; do
    case "$f" in
        testing/*) checked="p4/testing/build/${f#testing/}" ;;
        *) checked="p4/build/$f" ;;
    esac
    if ! cmp -s "$checked" "$TMP/$f"; then
        echo "DIFFERS: $checked (run p4/compile.sh and commit the outputs)" >&2
        case "$f" in
            *.bin) ;;
            *) diff -u "$checked" "$TMP/$f" | head -n 40 >&2 || true ;;
        esac
        status=1
    fi
done
if grep -qi 'warning' "$TMP/compile.log"; then
    echo "p4c warnings:" >&2
    grep -i -A3 'warning' "$TMP/compile.log" >&2
fi
[ "$status" -eq 0 ] && echo "OK: p4/build/ matches a fresh compile"
exit "$status"
