#!/bin/sh
# Recompile the pipeline into a temporary directory and fail if the
# checked-in outputs differ:
#   v1model   p4/build/fabric.* and p4/testing/build/{p4rt_test,fabric_v2}.*
#   typecheck p4/tna/fabric_tna.p4 through p4test, Tofino and Tofino 2
#   tofino    p4/build/tofino/   (bf-p4c, --target tofino --arch tna)
#   tofino2   p4/build/tofino2/  (bf-p4c, --target tofino2 --arch t2na)
# Each part whose compiler is missing prints "SKIPPED: <part>: <what is
# missing>" and does not fail the check. Exit status 1 if any part that ran
# failed or differs.
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT INT TERM
status=0

# run PART LOG compile.sh-args...: 0 ran, 1 failed, 2 skipped (tool missing).
run() {
    part=$1; log=$2; shift 2
    rc=0
    p4/compile.sh "$@" >"$log" 2>&1 || rc=$?
    if [ "$rc" -eq 3 ]; then
        echo "SKIPPED: $part: $(grep '^SKIPPED' "$log" | head -n 1 | sed 's/^SKIPPED: //')"
        return 2
    elif [ "$rc" -ne 0 ]; then
        echo "FAILED: $part (p4/compile.sh $*)" >&2
        cat "$log" >&2
        status=1
        return 1
    fi
    if grep -qi 'warning' "$log"; then
        echo "$part: compiler warnings:" >&2
        grep -i -A3 'warning' "$log" >&2
    fi
    return 0
}

# tofino_canon FILE OUT: a bf-p4c output without what changes from run to
# run. JSON: the dates, run ids and command line, and BfRt's snapshot
# tables (bf-p4c lists the ingress and egress ones in either order, with
# ids that follow the order; no P4Runtime or BfRt client of ours uses
# them). The chip binary (pipe/*.bin): its run id (the one context.json of
# the same build names) blanked. Anything else as it is.
tofino_canon() {
    python3 - "$1" "$2" <<'PY'
import json, sys
src, out = sys.argv[1], sys.argv[2]
VOLATILE = {"build_date", "run_id", "compile_command"}
def strip(v):
    if isinstance(v, dict):
        return {k: strip(x) for k, x in v.items() if k not in VOLATILE}
    if isinstance(v, list):
        return [strip(x) for x in v
                if not (isinstance(x, dict) and str(x.get("name", "")).startswith("pipe.snapshot"))]
    return v
if src.endswith(".json"):
    with open(src) as f:
        data = strip(json.load(f))
    with open(out, "w") as f:
        json.dump(data, f, sort_keys=True, indent=1)
else:
    with open(src, "rb") as f:
        blob = f.read()
    if src.endswith(".bin") and "/pipe/" in src:
        with open(src.rsplit("/", 1)[0] + "/context.json") as f:
            run_id = json.load(f).get("run_id", "")
        if run_id:
            blob = blob.replace(run_id.encode(), b"0" * len(run_id))
    with open(out, "wb") as f:
        f.write(blob)
PY
}

# differs CHECKED FRESH: compare one output file, JSON without the fields
# that change from run to run (dates, run ids, the command line).
differs() {
    case "$1" in
        p4/build/tofino*/*)
            # A file that cannot be read the way it should differs.
            tofino_canon "$1" "$TMP/a" && tofino_canon "$2" "$TMP/b" || return 0
            ! cmp -s "$TMP/a" "$TMP/b" ;;
        *.json)
            sed -E '/"(build_date|run_id|compile_command)"/d' "$1" >"$TMP/a"
            sed -E '/"(build_date|run_id|compile_command)"/d' "$2" >"$TMP/b"
            ! cmp -s "$TMP/a" "$TMP/b" ;;
        *) ! cmp -s "$1" "$2" ;;
    esac
}

report() {
    echo "DIFFERS: $1 (run p4/compile.sh${3:+ $3} and commit the outputs)" >&2
    case "$1" in
        *.bin) ;;
        p4/build/tofino*/*) diff -u "$TMP/a" "$TMP/b" | head -n 40 >&2 || true ;;
        *) diff -u "$1" "$2" | head -n 40 >&2 || true ;;
    esac
    status=1
}

# --- v1model -----------------------------------------------------------
if run v1model "$TMP/v1model.log" "$TMP/v1model"; then
    for f in fabric.json fabric.p4info.txt fabric.p4info.bin \
             testing/p4rt_test.json testing/p4rt_test.p4info.txt testing/p4rt_test.p4info.bin \
             testing/fabric_v2.json testing/fabric_v2.p4info.txt testing/fabric_v2.p4info.bin; do
        case "$f" in
            testing/*) checked="p4/testing/build/${f#testing/}" ;;
            *) checked="p4/build/$f" ;;
        esac
        if differs "$checked" "$TMP/v1model/$f"; then report "$checked" "$TMP/v1model/$f" ""; fi
    done
    [ "$status" -eq 0 ] && echo "OK: v1model: p4/build/ matches a fresh compile"
fi

# --- TNA type check (front and mid end) ----------------------------------
# The TNA sources gate CI once a Tofino build is checked in (p4/build/tofino):
# until then they have never been compiled, and a failure here is reported
# loudly without failing the check (docs/pipeline.md says they are unproven).
gating=$status
if run typecheck "$TMP/typecheck.log" typecheck; then
    echo "OK: typecheck: p4/tna/fabric_tna.p4 passes p4test for Tofino and Tofino 2"
fi
if [ ! -d p4/build/tofino ] && [ "$status" -ne "$gating" ]; then
    echo "NOT GATING: typecheck failed, but no Tofino build is checked in yet (p4/tna is unproven)" >&2
    status=$gating
fi

# --- Tofino / Tofino 2 (bf-p4c) ------------------------------------------
for t in tna:tofino t2na:tofino2; do
    target=${t%%:*}; dir=${t#*:}
    before=$status
    # As above: not gating until this target's build is checked in.
    ungated=0
    [ -d "p4/build/$dir" ] || ungated=1
    if run "$dir" "$TMP/$dir.log" "$target" "$TMP/$dir"; then
        if [ ! -d "p4/build/$dir" ]; then
            echo "DIFFERS: p4/build/$dir is not checked in (run p4/compile.sh $target)" >&2
            status=1
        fi
        # Every checked-in output except the compiler's logs (timings).
        for f in $( [ -d "p4/build/$dir" ] && cd "p4/build/$dir" && find . -type f ! -path '*/logs/*' | sed 's@^\./@@' | sort); do
            if [ ! -f "$TMP/$dir/$f" ]; then
                echo "DIFFERS: p4/build/$dir/$f is no longer produced" >&2
                status=1
            elif differs "p4/build/$dir/$f" "$TMP/$dir/$f"; then
                report "p4/build/$dir/$f" "$TMP/$dir/$f" "$target"
            fi
        done
        [ "$status" -eq "$before" ] && echo "OK: $dir: p4/build/$dir matches a fresh compile"
    fi
    if [ "$ungated" -eq 1 ] && [ "$status" -ne "$before" ]; then
        echo "NOT GATING: $dir: no build checked in yet (run p4/compile.sh $target and commit p4/build/$dir)" >&2
        status=$before
    fi
done

exit "$status"
