#!/usr/bin/env bash
# Prepares a machine for corosync-eip development and the multi-node test lab.
# Idempotent: safe to run again.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y \
    corosync libcorosync-common-dev libcpg-dev libquorum-dev libvotequorum-dev \
    libcfg-dev libcmap-dev iproute2 iptables procps python3-venv util-linux
# Packaging checks (tests/packaging.rs, scripts/build-rpm.sh): rpmbuild, the SELinux
# reference-policy Makefile, systemd-analyze; qdevice/qnetd for the 2-node corosync.conf
# sample (tests/corosync_conf.rs). Recommends would pull in setools' plotting stack.
# systemd-container: systemd-nspawn, for lab nodes that boot systemd (tests/systemd.rs).
$SUDO apt-get install -y --no-install-recommends \
    rpm checkpolicy selinux-policy-dev systemd systemd-container corosync-qdevice corosync-qnetd

# The lab runs its own corosync processes inside network namespaces: the host's
# service must not be running (it would also bind knet ports on the host).
if command -v systemctl >/dev/null 2>&1; then
    $SUDO systemctl disable --now corosync >/dev/null 2>&1 || true
    # the lab runs its own qnetd; the host's would hold /run/corosync-qnetd
    $SUDO systemctl disable --now corosync-qdevice corosync-qnetd >/dev/null 2>&1 || true
fi
if [ -x /usr/sbin/service ] && [ ! -d /run/systemd/system ]; then
    $SUDO /usr/sbin/service corosync stop >/dev/null 2>&1 || true
    $SUDO /usr/sbin/service corosync-qdevice stop >/dev/null 2>&1 || true
    $SUDO /usr/sbin/service corosync-qnetd stop >/dev/null 2>&1 || true
fi

# Python venv for the EC2 emulator (moto) and lab helpers.
PY=/usr/bin/python3
[ -x "$PY" ] || PY="$(command -v python3)"
# Pinned versions (tests/lab/requirements.txt): the emulator patches moto's internals.
REQUIREMENTS="$ROOT/tests/lab/requirements.txt"
# The venv is reused only when every pin is installed at its version (extras are harmless).
missing_pins() { comm -13 <("$VENV/bin/pip" freeze 2>/dev/null | sort) <(grep -v '^#' "$REQUIREMENTS" | sort); }
if [ -x "$VENV/bin/moto_server" ] && [ -z "$(missing_pins)" ]; then
    echo "setup: $VENV already matches $REQUIREMENTS"
else
    if [ ! -x "$VENV/bin/python" ]; then
        "$PY" -m venv "$VENV"
    fi
    "$VENV/bin/pip" install --upgrade pip >/dev/null 2>&1 || true
    "$VENV/bin/pip" install -r "$REQUIREMENTS"
    "$VENV/bin/python" -c 'import moto.server, boto3'
fi
echo "setup: done"
