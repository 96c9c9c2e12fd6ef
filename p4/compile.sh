#!/bin/sh
# Compile the fabric pipeline: p4/fabric.p4 -> bmv2 JSON + P4Info (text, binary).
#
#   p4/compile.sh            write p4/build/fabric.{json,p4info.txt,p4info.bin}
#                            and p4/testing/build/p4rt_test.{...} (the small
#                            program of the P4Runtime client tests)
#   p4/compile.sh DIR        write them into DIR and DIR/testing instead
#                            (used by p4/check.sh)
#
# Uses p4c-bm2-ss from $P4C, else from PATH, else /opt/p4/bin. It does not
# build p4c. Runs from the repository root with relative paths so the
# outputs do not depend on where the checkout lives; the one absolute path
# p4c records (its own p4include directory, in the JSON's source_info) is
# rewritten to "<p4include>" so the outputs do not depend on where p4c is
# installed either.
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-p4/build}
if [ -n "${1:-}" ]; then TOUT="$1/testing"; else TOUT=p4/testing/build; fi

find_p4c() {
    if [ -n "${P4C:-}" ]; then echo "$P4C"; return 0; fi
    if command -v p4c-bm2-ss >/dev/null 2>&1; then command -v p4c-bm2-ss; return 0; fi
    if [ -x /opt/p4/bin/p4c-bm2-ss ]; then echo /opt/p4/bin/p4c-bm2-ss; return 0; fi
    if [ -x /opt/p4/build/p4c/backends/bmv2/p4c-bm2-ss ]; then
        echo /opt/p4/build/p4c/backends/bmv2/p4c-bm2-ss; return 0; fi
    return 1
}

if ! P4C_BIN=$(find_p4c); then
    echo "p4c-bm2-ss not found (set P4C, put it on PATH, or install it under /opt/p4/bin)" >&2
    exit 2
fi

# A p4c used from its build tree (not installed) does not find its
# p4include directory by itself.
if [ -z "${P4C_16_INCLUDE_PATH:-}" ]; then
    for d in "$(dirname "$P4C_BIN")/../share/p4c/p4include" /opt/p4/share/p4c/p4include \
             /opt/p4/src/p4c/p4include; do
        if [ -f "$d/v1model.p4" ]; then export P4C_16_INCLUDE_PATH="$d"; break; fi
    done
fi

cd "$ROOT"
mkdir -p "$OUT" "$TOUT"
echo "+ $P4C_BIN --version: $("$P4C_BIN" --version 2>&1 | tail -n 1)" >&2
set -x
"$P4C_BIN" --arch v1model --std p4-16 \
    --p4runtime-files "$OUT/fabric.p4info.txt,$OUT/fabric.p4info.bin" \
    -o "$OUT/fabric.json" \
    p4/fabric.p4
set +x

set -x
"$P4C_BIN" --arch v1model --std p4-16 \
    --p4runtime-files "$TOUT/p4rt_test.p4info.txt,$TOUT/p4rt_test.p4info.bin" \
    -o "$TOUT/p4rt_test.json" \
    p4/testing/p4rt_test.p4
set +x

# Make source_info independent of the p4c installation directory.
for j in "$OUT/fabric.json" "$TOUT/p4rt_test.json"; do
    sed -i -e 's#"[^"]*/p4include/\([^"/]*\.p4\)"#"<p4include>/\1"#g' "$j"
done
