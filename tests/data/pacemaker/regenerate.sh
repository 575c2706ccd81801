#!/bin/bash
# Writes the Pacemaker 2.1 CIBs that tests/import_pacemaker.rs imports, with Pacemaker's own
# tools working offline on a file (CIB_file): no cluster, no daemon, nothing started.
#
#   apt-get install -y --no-install-recommends pacemaker-cli-utils crmsh resource-agents
#   tests/data/pacemaker/regenerate.sh
#
# Each scenario starts from `cibadmin --empty`, is configured with `crm configure` (which
# checks every parameter against the agent's meta-data and runs crm_verify before it commits)
# or with `cibadmin --create`, and ends with `crm_verify -x`. The versions that wrote the files
# go to 2.1/VERSIONS. The files in other-versions/ are written by hand in the shape of older
# Pacemaker and pcs releases; this script leaves them alone.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out="$here/2.1"
mkdir -p "$out"
for tool in cibadmin crm crm_verify; do
    command -v "$tool" >/dev/null || { echo "$0: $tool is missing (apt-get install pacemaker-cli-utils crmsh resource-agents)" >&2; exit 1; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# scenario NAME: reads crm shell commands on stdin and writes $out/NAME.xml.
scenario() {
    local name=$1 file="$work/$1.xml"
    cibadmin --empty > "$file"
    {
        # No fencing device is configured in these files (fence_aws is not what is imported),
        # and crm refuses to commit a configuration crm_verify rejects.
        echo "property stonith-enabled=false"
        echo "node 1: node1"
        echo "node 2: node2"
        cat
    } > "$work/$name.crm"
    CIB_file="$file" crm configure load update "$work/$name.crm" 2> "$work/$name.log" \
        || { cat "$work/$name.log" >&2; echo "$0: crm refused scenario $name" >&2; exit 1; }
    if [ -n "${EXTRA:-}" ]; then
        CIB_file="$file" cibadmin --create -o constraints -X "$EXTRA"
    fi
    if [ -n "${STANDBY:-}" ]; then
        CIB_file="$file" crm_attribute --node "$STANDBY" --name standby --update on --lifetime forever
    fi
    # crm_verify returns non-zero only for errors; the warnings about quorum of a cluster that
    # never ran are expected.
    crm_verify -x "$file" 2>/dev/null || { crm_verify -V -x "$file"; echo "$0: $name does not verify" >&2; exit 1; }
    cp "$file" "$out/$name.xml"
}

scenario awseip <<'CRM'
primitive web-eip ocf:heartbeat:awseip \
    params elastic_ip=203.0.113.10 allocation_id=eipalloc-0a1b2c3d4e5f60718 \
        private_ip_address=10.0.1.20 api_delay=3 awscli=/usr/local/bin/aws profile=cluster \
    op monitor interval=20s timeout=30s
rsc_defaults resource-stickiness=INFINITY
CRM

scenario awsvip <<'CRM'
primitive app-vip ocf:heartbeat:awsvip \
    params secondary_private_ip=10.0.1.50 api_delay=5 \
    op monitor interval=30s timeout=30s
primitive app-ip ocf:heartbeat:IPaddr2 \
    params ip=10.0.1.50 nic=eth1 cidr_netmask=32 iflabel=app \
    op monitor interval=10s timeout=20s
group app app-vip app-ip
rsc_defaults resource-stickiness=INFINITY
CRM

scenario aws-vpc-move-ip <<'CRM'
primitive db-vip ocf:heartbeat:aws-vpc-move-ip \
    params ip=172.31.255.10 routing_table=rtb-0a1b2c3d4e5f60718,rtb-0f1e2d3c4b5a69788 \
        interface=eth0 iflabel=db monapi=true lookup_type=NetworkInterfaceId \
        routing_table_role=arn:aws:iam::123456789012:role/routes region=eu-west-1 \
    op monitor interval=60s timeout=30s
location db-vip-on-node1 db-vip 100: node1
rsc_defaults resource-stickiness=200
CRM

scenario aws-vpc-route53 <<'CRM'
primitive www-dns ocf:heartbeat:aws-vpc-route53 \
    params hostedzoneid=Z0123456789ABCDEFGHIJ fullname=www.example.com. ip=public ttl=30 \
    op monitor interval=300s timeout=180s
CRM

# The usual shape of a service front: an Elastic IP, a VIP and the record that names it, one
# group, preferred on node2 and then node1, never moved back.
scenario group-location <<'CRM'
primitive front-eip ocf:heartbeat:awseip \
    params elastic_ip=198.51.100.7 allocation_id=eipalloc-0123456789abcdef0 \
    op monitor interval=15s timeout=30s
primitive front-vip ocf:heartbeat:aws-vpc-move-ip \
    params ip=172.31.255.20 routing_table=rtb-0123456789abcdef0 interface=eth0 \
    op monitor interval=15s timeout=30s
primitive front-secondary ocf:heartbeat:awsvip params secondary_private_ip=10.0.1.60 \
    op monitor interval=15s
primitive front-secondary-ip ocf:heartbeat:IPaddr2 params ip=10.0.1.60 \
    op monitor interval=15s
primitive front-dns ocf:heartbeat:aws-vpc-route53 \
    params hostedzoneid=Z0123456789ABCDEFGHIJ fullname=front.example.com. ip=10.0.1.60 \
    op monitor interval=15s timeout=180s
group front front-eip front-vip front-secondary front-secondary-ip front-dns
location front-on-node2 front 200: node2
location front-on-node1 front 100: node1
rsc_defaults resource-stickiness=INFINITY
CRM

# Address resources next to things that are not imported: a service of its own and a clone;
# node2 in standby (crm_attribute).
STANDBY=node2 scenario unrelated-resources <<'CRM'
primitive api-eip ocf:heartbeat:awseip \
    params elastic_ip=203.0.113.20 allocation_id=eipalloc-0fedcba9876543210 \
    op monitor interval=20s
primitive batch ocf:heartbeat:Dummy op monitor interval=10s
clone batch-clone batch
CRM

# Refused: a service in the same group as its address.
scenario refuse-service-in-group <<'CRM'
primitive web-eip ocf:heartbeat:awseip \
    params elastic_ip=203.0.113.10 allocation_id=eipalloc-0a1b2c3d4e5f60718 \
    op monitor interval=20s
primitive web-server ocf:heartbeat:apache params configfile=/etc/apache2/apache2.conf \
    op monitor interval=10s
group web web-eip web-server
CRM

# Refused: an address agent cloned (it would be active on every node at once).
scenario refuse-clone <<'CRM'
primitive shared-vip ocf:heartbeat:awsvip params secondary_private_ip=10.0.1.70
clone shared-vip-clone shared-vip
CRM

# Refused: a location constraint that bans a node, and one written as a rule.
scenario refuse-location <<'CRM'
primitive db-vip ocf:heartbeat:aws-vpc-move-ip \
    params ip=172.31.255.30 routing_table=rtb-0123456789abcdef0 interface=eth0
location db-vip-not-node2 db-vip -inf: node2
location db-vip-rule db-vip rule 50: #uname eq node1
CRM

# Refused: the address follows a service (colocation and order written with cibadmin).
EXTRA='<rsc_colocation id="vip-with-db" rsc="db-vip" with-rsc="db" score="INFINITY"/>' \
scenario refuse-colocation-service <<'CRM'
primitive db-vip ocf:heartbeat:aws-vpc-move-ip \
    params ip=172.31.255.40 routing_table=rtb-0123456789abcdef0 interface=eth0
primitive db ocf:heartbeat:Dummy op monitor interval=10s
order db-before-vip Mandatory: db db-vip
CRM

{
    echo "# The tools that wrote the files in this directory (tests/data/pacemaker/regenerate.sh)."
    cibadmin --version | head -1
    crm --version | head -1
    echo "resource-agents $(dpkg-query -W -f '${Version}' resource-agents 2>/dev/null || echo unknown)"
    if [ -r /etc/debian_version ]; then echo "Debian $(cat /etc/debian_version)"; fi
} > "$out/VERSIONS"
echo "wrote $(ls "$out"/*.xml | wc -l) CIBs to $out"
