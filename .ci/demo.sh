#!/usr/bin/env bash
# The README's main command: a demo fabric on this machine.
#
# Installs the Debian packages the demo needs, builds p4fabric, and runs
# `p4fabric demo` (arguments are passed on, e.g. --once). With bmv2's
# simple_switch_grpc on PATH or in /opt/p4/bin it builds 2 spines + 4 leaves
# of real bmv2 switches with namespace hosts (needs root: it re-runs itself
# with sudo); without bmv2 it says what is missing and runs the SIMULATED
# demo (in-process switches, forwarding checked, no packets sent).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

bash .ci/apt-install.sh protobuf-compiler libprotobuf-dev etcd-server iproute2 ethtool iputils-ping

# A debug build compiles much faster and is quick enough for six switches.
cargo build --bin p4fabric
bin="${CARGO_TARGET_DIR:-target}/debug/p4fabric"

have_bmv2() {
    command -v simple_switch_grpc >/dev/null || [ -x /opt/p4/bin/simple_switch_grpc ]
}
if [ -n "$SUDO" ] && have_bmv2; then
    # veth pairs and namespaces need root.
    exec sudo env "PATH=$PATH" "$bin" demo "$@"
fi
exec "$bin" demo "$@"
