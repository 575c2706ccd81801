#!/usr/bin/env bash
# Extra packages for the baseline side of the benchmark (Pacemaker + ocf:heartbeat:awseip,
# awsvip + IPaddr2, aws-vpc-route53 + the AWS CLI; aws-vpc-route53 checks for `dig` before every
# operation). Run after scripts/setup.sh. Idempotent.
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
need=()
for p in pacemaker resource-agents crmsh awscli bind9-dnsutils; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    $SUDO apt-get update
    $SUDO apt-get install -y --no-install-recommends "${need[@]}"
fi
# The lab runs pacemaker inside its node namespaces: the host's services must not run.
for s in pacemaker corosync; do
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        $SUDO systemctl disable --now "$s" >/dev/null 2>&1 || true
    elif [ -x /usr/sbin/service ]; then
        $SUDO /usr/sbin/service "$s" stop >/dev/null 2>&1 || true
    fi
done
echo "bench setup: done ($(dpkg-query -W -f='${Package} ${Version}\n' pacemaker resource-agents awscli | tr '\n' ' '))"
