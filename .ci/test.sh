#!/usr/bin/env bash
# p4fabric's test command (README: "run the tests"). Installs what the tests
# need on a Debian machine, then runs formatting, lints and every test tier:
# unit/property tests, real etcd, simulated P4Runtime switches, and the
# bmv2 tests (which say SKIPPED where simple_switch_grpc is not installed).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: protoc for the proto crate, etcd for the config tests,
# iproute2/ethtool/ping/traceroute for veth-based bmv2 tests, python3-venv for the proto check.
bash .ci/apt-install.sh protobuf-compiler libprotobuf-dev etcd-server iproute2 ethtool iputils-ping traceroute python3-venv openssl
if command -v rustup >/dev/null; then
    rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi

# The official P4Runtime and gNMI descriptors, to check our .proto files against.
venv=target/ci-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import p4, pygnmi' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q p4runtime pygnmi
fi
export P4RUNTIME_PYTHON="$PWD/$venv/bin/python"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== the production library builds without the test kit (src/testkit)"
cargo clippy -p p4fabric --lib --no-default-features -- -D warnings
echo "== compiled P4 outputs match the sources (where p4c is installed)"
for check in p4/check.sh; do
    if [ -f "$check" ]; then bash "$check"; fi
done
echo "== cargo test (everything but the bmv2 tier)"
cargo test --workspace --exclude bmv2-tests -- --test-threads 2
echo "== Neutron ML2 driver inside real Neutron (PyPI), real etcd, p4fabric check"
bash integrations/neutron/run-tests.sh
# The bmv2 tier runs as users run p4fabric: a release build. Where bmv2 is
# missing its tests only print SKIPPED lines, so the quicker debug build does.
if command -v simple_switch_grpc >/dev/null 2>&1 || [ -x /opt/p4/bin/simple_switch_grpc ]; then
    echo "== cargo test --release -p bmv2-tests (real bmv2)"
    cargo test --release -p bmv2-tests -- --test-threads 2
else
    echo "== cargo test -p bmv2-tests (bmv2 not installed: expect SKIPPED lines)"
    cargo test -p bmv2-tests -- --test-threads 2
fi
