#!/usr/bin/env bash
# The Neutron driver's tests: Neutron from PyPI in a venv this script
# creates (target/neutron-venv, reused while test-requirements.txt is
# unchanged), the driver installed into it like any pip package, a real
# etcd per test module (Debian's etcd-server), the p4fabric binary built
# with cargo for the loop-closing check. Exits non-zero on any failure.
#
#   bash integrations/neutron/run-tests.sh [pytest args]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${P4FABRIC_NEUTRON_VENV:-$repo/target/neutron-venv}"
python="${PYTHON:-python3}"
start=$(date +%s)

if ! command -v etcd >/dev/null && [ -z "${P4FABRIC_ETCD_BIN:-}" ]; then
    echo "neutron tests: FAILED: etcd not installed (apt-get install etcd-server)" >&2
    exit 1
fi

# The venv: rebuilt when the pinned requirements change (their hash is
# stored inside it), otherwise reused as is.
want="$(sha256sum "$here/test-requirements.txt" | cut -d' ' -f1)"
if [ "$(cat "$venv/.requirements-sha256" 2>/dev/null)" != "$want" ]; then
    echo "== creating $venv (Neutron from PyPI; a few minutes)"
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$here/test-requirements.txt"
    echo "$want" > "$venv/.requirements-sha256"
fi
# Run from outside the source tree, so the installed package is what is
# tested and nothing is built inside the checkout.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# The driver itself, installed as an operator would (non-editable, so the
# entry point ML2 loads is the installed one), built from a copy.
cp -r "$here" "$work/src"
rm -rf "$work/src/build" "$work/src"/*.egg-info
"$venv/bin/pip" install -q --disable-pip-version-check --no-deps \
    --no-build-isolation --force-reinstall "$work/src" >/dev/null 2>&1 || {
    echo "neutron tests: FAILED: cannot install the driver into $venv" >&2
    "$venv/bin/pip" install --no-deps --no-build-isolation "$work/src" >&2
    exit 1
}

echo "== building p4fabric"
(cd "$repo" && cargo build -q --bin p4fabric)
export P4FABRIC_BIN="${CARGO_TARGET_DIR:-$repo/target}/debug/p4fabric"

cd "$work"
status=0
"$venv/bin/python" -W ignore::DeprecationWarning -m pytest -q -p no:cacheprovider \
    --pyargs networking_p4fabric.tests -rs "$@" 2>&1 | tee "$work/out" || status=$?
summary="$(grep -E '[0-9]+ (passed|failed|error)' "$work/out" | tail -1 | sed 's/=//g; s/^ *//')"
secs=$(( $(date +%s) - start ))
if [ "$status" -eq 0 ] && grep -q ' passed' <<<"$summary" && ! grep -qE 'failed|error|skipped' <<<"$summary"; then
    echo "neutron tests: OK ($summary) in ${secs}s"
else
    echo "neutron tests: FAILED (${summary:-no summary}) in ${secs}s"
    exit 1
fi
