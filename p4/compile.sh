#!/bin/sh
# Compile the fabric pipeline.
#
#   p4/compile.sh            v1model: p4/fabric.p4 -> p4/build/fabric.{json,
#                            p4info.txt,p4info.bin} and p4/testing/build/
#                            p4rt_test.{...} (the small program of the
#                            P4Runtime client tests) and fabric_v2.{...}
#                            (the fabric plus one table: the second build
#                            of the rolling-upgrade tests)
#   p4/compile.sh DIR        the same into DIR and DIR/testing (p4/check.sh)
#   p4/compile.sh tna [DIR]  Tofino:   p4/tna/fabric_tna.p4 -> p4/build/tofino
#   p4/compile.sh t2na [DIR] Tofino 2: p4/tna/fabric_tna.p4 -> p4/build/tofino2
#                            (P4Info, bfrt.json, context.json, tofino.bin and
#                            bf-p4c's resource and table summaries; nothing else)
#   p4/compile.sh typecheck  p4c's front and mid end (p4test) over the TNA
#                            source for both targets, against the TNA
#                            include files of the installed compiler
#
# v1model uses p4c-bm2-ss from $P4C, else PATH, else /opt/p4/bin (or the
# p4c build tree). tna/t2na use the p4c driver ($P4C_DRIVER, PATH,
# /opt/p4/bin) with the Tofino back end next to it (p4c-barefoot / bf-p4c);
# typecheck uses p4test ($P4TEST, PATH, /opt/p4/bin, the build tree). A
# missing tool: a "SKIPPED: ..." line naming it, exit status 3
# (p4/check.sh turns that into a SKIPPED line of its own). This script
# never builds a compiler and this repository holds no TNA include file.
#
# Runs from the repository root with relative paths so the outputs do not
# depend on where the checkout lives; the one absolute path p4c records in
# the bmv2 JSON (its own p4include directory, in source_info) is rewritten
# to "<p4include>" so they do not depend on where p4c is installed either.
# Tofino CPU port (the device's PCIe CPU port, compiled in; docs/pipeline.md):
# TOFINO_CPU_PORT (default 320: 4-pipe Tofino; 192 for 2-pipe) and
# TOFINO2_CPU_PORT (default 0).
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)

first_tool() {
    # first_tool ENVVALUE NAME... : the env value if set, else NAME on PATH,
    # else /opt/p4/bin/NAME, else the p4c build tree.
    if [ -n "$1" ]; then echo "$1"; return 0; fi
    shift
    for n in "$@"; do
        if command -v "$n" >/dev/null 2>&1; then command -v "$n"; return 0; fi
        for d in /opt/p4/bin /opt/p4/build/p4c /opt/p4/build/p4c/backends/bmv2; do
            if [ -x "$d/$n" ]; then echo "$d/$n"; return 0; fi
        done
    done
    return 1
}

# A p4c used from its build tree (not installed) does not find its
# p4include directory by itself.
core_include() {
    if [ -n "${P4C_16_INCLUDE_PATH:-}" ]; then return 0; fi
    for d in "$(dirname "$1")/../share/p4c/p4include" /opt/p4/share/p4c/p4include \
             /opt/p4/src/p4c/p4include; do
        if [ -f "$d/core.p4" ]; then export P4C_16_INCLUDE_PATH="$d"; return 0; fi
    done
}

# Where the installed compiler keeps tna.p4 / t2na.p4 (never this repo).
tna_include() {
    for d in ${TNA_INCLUDE:-} "$(dirname "$1")/../share/p4c/p4include" \
             /opt/p4/share/p4c/p4include /opt/p4/build/p4c/p4include \
             /opt/p4/src/p4c/backends/tofino/bf-p4c/p4include; do
        if [ -f "$d/tna.p4" ] && [ -f "$d/t2na.p4" ]; then echo "$d"; return 0; fi
    done
    return 1
}

# The p4c driver, if the Tofino back end is installed next to it.
tofino_driver() {
    drv=$(first_tool "${P4C_DRIVER:-}" p4c) || return 1
    for n in p4c-barefoot bf-p4c; do
        if [ -x "$(dirname "$drv")/$n" ] || command -v "$n" >/dev/null 2>&1; then
            echo "$drv"; return 0
        fi
    done
    return 1
}

compile_v1model() {
    OUT=${1:-p4/build}
    if [ -n "${1:-}" ]; then TOUT="$1/testing"; else TOUT=p4/testing/build; fi
    if ! P4C_BIN=$(first_tool "${P4C:-}" p4c-bm2-ss); then
        echo "SKIPPED: p4c-bm2-ss not found (set P4C, put it on PATH, or install it under /opt/p4/bin)" >&2
        exit 3
    fi
    core_include "$P4C_BIN"
    mkdir -p "$OUT" "$TOUT"
    echo "+ $P4C_BIN --version: $("$P4C_BIN" --version 2>&1 | tail -n 1)" >&2
    set -x
    "$P4C_BIN" --arch v1model --std p4-16 \
        --p4runtime-files "$OUT/fabric.p4info.txt,$OUT/fabric.p4info.bin" \
        -o "$OUT/fabric.json" \
        p4/fabric.p4
    "$P4C_BIN" --arch v1model --std p4-16 \
        --p4runtime-files "$TOUT/p4rt_test.p4info.txt,$TOUT/p4rt_test.p4info.bin" \
        -o "$TOUT/p4rt_test.json" \
        p4/testing/p4rt_test.p4
    "$P4C_BIN" --arch v1model --std p4-16 \
        --p4runtime-files "$TOUT/fabric_v2.p4info.txt,$TOUT/fabric_v2.p4info.bin" \
        -o "$TOUT/fabric_v2.json" \
        p4/testing/fabric_v2.p4
    { set +x; } 2>/dev/null
    # Make source_info independent of the p4c installation directory.
    for j in "$OUT/fabric.json" "$TOUT/p4rt_test.json" "$TOUT/fabric_v2.json"; do
        sed -i -e 's#"[^"]*/p4include/\([^"/]*\.p4\)"#"<p4include>/\1"#g' "$j"
    done
}

# compile_tofino tofino|tofino2 tna|t2na CPU_PORT OUT EXTRA-FLAGS
compile_tofino() {
    if ! DRV=$(tofino_driver); then
        echo "SKIPPED: no p4c driver with the Tofino back end (p4c + p4c-barefoot/bf-p4c; set P4C_DRIVER)" >&2
        exit 3
    fi
    OUT=$4
    rm -rf "$OUT"
    mkdir -p "$OUT"
    echo "+ $DRV --version: $("$DRV" --target "$1" --arch "$2" --version 2>&1 | tail -n 1)" >&2
    set -x
    # A failing compile exits 1 whatever the driver returns: status 3 means
    # "compiler missing" to p4/check.sh.
    "$DRV" --target "$1" --arch "$2" --std p4-16 -g \
        -DCPU_PORT_ID="$3" $5 \
        --p4runtime-files "$OUT/p4info.txt,$OUT/p4info.bin" \
        --p4runtime-force-std-externs \
        -o "$OUT" \
        p4/tna/fabric_tna.p4 || { rc=$?; { set +x; } 2>/dev/null; echo "FAILED: $DRV exited with $rc" >&2; exit 1; }
    { set +x; } 2>/dev/null
    # Keep what a switch loads and what docs/pipeline.md quotes: P4Info,
    # bfrt.json, context.json, the binary and the compiler's resource and
    # table summaries. The rest (IR dumps, assembly, graphs, other logs)
    # is intermediate and large.
    find "$OUT" -type f | while read -r f; do
        case "${f#"$OUT"/}" in
            p4info.txt|p4info.bin|bfrt.json|pipe/context.json|pipe/tofino.bin|pipe/tofino2.bin) ;;
            pipe/logs/mau.resources.log|pipe/logs/mau.characterize.log|pipe/logs/table_summary.log) ;;
            *) rm -f "$f" ;;
        esac
    done
    find "$OUT" -depth -type d -empty -delete
}

typecheck() {
    if ! P4TEST=$(first_tool "${P4TEST:-}" p4test); then
        echo "SKIPPED: p4test not found (set P4TEST, put it on PATH, or install it under /opt/p4/bin)" >&2
        exit 3
    fi
    core_include "$P4TEST"
    if ! INC=$(tna_include "$P4TEST"); then
        echo "SKIPPED: TNA include files (tna.p4, t2na.p4) not found (set TNA_INCLUDE)" >&2
        exit 3
    fi
    for t in 1 2; do
        set -x
        "$P4TEST" --std p4-16 -I "$INC" -D__TARGET_TOFINO__=$t p4/tna/fabric_tna.p4
        { set +x; } 2>/dev/null
        echo "typecheck: __TARGET_TOFINO__=$t OK (p4test, include $INC)" >&2
    done
}

cd "$ROOT"
case "${1:-}" in
    tna)       compile_tofino tofino tna "${TOFINO_CPU_PORT:-320}" "${2:-p4/build/tofino}" "" ;;
    # Tofino 2 without CLOTs: with them, bf-p4c 1.2.5.16's assembler
    # rejects the egress deparser it generates ("No length for clot N").
    t2na)      compile_tofino tofino2 t2na "${TOFINO2_CPU_PORT:-0}" "${2:-p4/build/tofino2}" "-Xp4c=--no-clot" ;;
    typecheck) typecheck ;;
    v1model)   compile_v1model "${2:-}" ;;
    *)         compile_v1model "${1:-}" ;;
esac
