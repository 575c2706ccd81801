#!/usr/bin/env python3
"""EC2 emulator for the corosync-eip lab: moto's server, patched for AWS fidelity,
with a JSON-lines request log.

    ec2_emulator.py --host IP --port PORT --request-log FILE [--ready-file FILE]

Patches applied to moto's EC2 model before serving (see patch_moto()):
  (a) AssociateAddress on an already-associated EIP without AllowReassociation
      reassociates (AWS VPC behaviour); an explicit AllowReassociation=false still
      fails with Resource.AlreadyAssociated.
  (b) Associating an EIP by NetworkInterfaceId fills InstanceId (the ENI's
      attached instance) in DescribeAddresses, as AWS does.
  Also: after a move, the previous ENI no longer reports the public IP.
  (c) CreateRoute on a destination the table already has fails with RouteAlreadyExists
      whatever the target (moto skipped that check for NetworkInterfaceId targets and
      silently overwrote the route).
  (d) Routes to an ENI attached to an instance show InstanceId + InstanceOwnerId as well as
      NetworkInterfaceId; routes created with InstanceId show the instance's primary ENI
      as NetworkInterfaceId (moto showed only the id it was given).
  (e) Destination CIDRs are canonicalised (AWS: 100.68.0.18/18 -> 100.68.0.0/18) for
      CreateRoute/ReplaceRoute/DeleteRoute; an invalid CIDR fails with InvalidParameterValue.
  (f) Source/destination check is one flag per ENI: an instance's SourceDestCheck is its
      primary ENI's (moto kept two independent flags, so ModifyInstanceAttribute did not
      show in DescribeNetworkInterfaces and vice versa).
  (g) DryRun on CreateRoute, ReplaceRoute, DeleteRoute and DescribeRouteTables: AWS checks
      permissions and answers DryRunOperation (allowed) or UnauthorizedOperation, changing
      nothing. moto ignored the flag on these four and performed the call: a "DryRun"
      ReplaceRoute really moved the route.
  (h) IAM enforcement (off until the lab posts to /moto-api/reset-auth, see Lab::enforce_iam):
      - the lab's own keys (LAB_ROOT_ACCESS_KEY_ID, default "testing") act as the account's
        root user: AWS never applies identity policies to the root user; moto only knew IAM
        users and rejected any other key, which would lock the lab's own helpers out;
      - a denied EC2 call fails like AWS: HTTP 403, code UnauthorizedOperation, "You are not
        authorized to perform this operation. User: ARN is not authorized to perform:
        ec2:ACTION ..." in EC2's <Response><Errors> envelope; moto answered the IAM/STS-style
        AccessDenied in an <ErrorResponse> envelope.
  (i) Secondary private IPs, as AWS assigns them:
      - AssignPrivateIpAddresses honours AllowReassignment: with it, an address assigned to
        another ENI moves to this one in the same call (moto added it to the new ENI and left
        it on the old one too, so an address sat on two ENIs); without it, the call fails with
        PrivateIpAddressInUse;
      - an address outside the ENI's subnet fails with InvalidParameterValue, and another
        ENI's primary address can never be taken (moto assigned anything it was given);
      - the filters private-ip-address / addresses.private-ip-address of
        DescribeNetworkInterfaces match secondary addresses too (moto matched only the
        primary one), and the values of one filter are ORed; ipv6-addresses.ipv6-address
        filters by IPv6 address (moto did not know it);
      - AssignIpv6Addresses refuses an address still on another ENI (IPv6 has no
        reassignment) or outside the subnet's IPv6 ranges.
  (k) DescribeSubnets writes a subnet's IPv6 association state as AWS does ("associated";
      moto wrote the whole state object into the string).
  (j) Route 53, as AWS answers it:
      - a change is PENDING for a while (LAB_ROUTE53_PENDING_MS, default 500) before GetChange
        reports INSYNC, and every change has its own id (moto answered INSYNC at once, with one
        fixed id for every change);
      - the account's API limit: more than 5 Route 53 requests within one second fail with
        HTTP 400 Throttling ("Rate exceeded"), as AWS does per account (moto had no limit);
      - ChangeInfo carries the change batch's Comment, in ChangeResourceRecordSets' answer and
        in every GetChange for that change, as AWS answers (moto left it out; with the AWS
        CLI's text output the Comment is a column, and ocf:heartbeat:aws-vpc-route53 finds the
        change id by its position after it).
  Lab-only, not an AWS behaviour: a request carrying the header X-Lab-Observer (the
  benchmark's poller, which stands for nobody's account) is neither counted against the
  Route 53 limit nor written to the request log, so observing at 10 ms never throttles the
  systems under test nor fills their call counts.
  Not patched, because moto already matches AWS: ReplaceRoute on a destination the table
  does not have fails with InvalidParameterValue ("There is no route defined for '<cidr>'
  in the route table. Use CreateRoute instead."), not InvalidRoute.NotFound (AWS's real
  answer, see getmoto/moto#6425); DeleteRoute on a missing route fails with
  InvalidRoute.NotFound; an unknown route table gives InvalidRouteTableID.NotFound, an
  unknown ENI InvalidNetworkInterfaceID.NotFound; instances and ENIs start with
  SourceDestCheck true.

Request log: one JSON line per EC2 API request (Route 53's REST calls are logged under their
action names too, STS's as well)
  {"t": arrival unix time, "source": client ip, "action": "AssociateAddress",
   "params": {...form/query params...}, "status": http status, "duration_ms": float,
   "access_key": the access key id that signed it}
"""
import argparse
import io
import json
import logging
import os
import sys
import threading
import time
from urllib.parse import parse_qs

_tls = threading.local()


def patch_moto():
    from moto.ec2.models.elastic_ip_addresses import ElasticAddressBackend
    from moto.ec2.responses.elastic_ip_addresses import ElasticIPAddresses

    orig_response = ElasticIPAddresses.associate_address
    orig_model = ElasticAddressBackend.associate_address

    def associate_address_response(self):
        # EC2 uses automated parameter parsing: the value is a bool when present.
        explicit = self._get_param("AllowReassociation", None)
        _tls.implicit_reassociation = explicit is None
        try:
            return orig_response(self)
        finally:
            _tls.implicit_reassociation = False

    def associate_address_model(self, instance=None, eni=None, address=None,
                                allocation_id=None, reassociate=False):
        if getattr(_tls, "implicit_reassociation", False):
            reassociate = True
        if eni is not None and instance is None and getattr(eni, "instance", None) is not None:
            instance = eni.instance
        previous_eni = None
        try:
            if address:
                previous_eni = self.address_by_ip([address])[0].eni
            elif allocation_id:
                previous_eni = self.address_by_allocation([allocation_id])[0].eni
        except Exception:
            previous_eni = None
        eip = orig_model(self, instance=instance, eni=eni, address=address,
                         allocation_id=allocation_id, reassociate=reassociate)
        if previous_eni is not None and previous_eni is not eip.eni \
                and getattr(previous_eni, "public_ip", None) == eip.public_ip:
            previous_eni.public_ip = None
        return eip

    ElasticIPAddresses.associate_address = associate_address_response
    ElasticAddressBackend.associate_address = associate_address_model

    patch_routes()
    patch_source_dest_check()
    patch_route_dry_run()
    patch_secondary_ips()
    patch_subnet_ipv6_state()
    patch_route53_changes()
    patch_iam()


def _canonical_cidr(cidr):
    """AWS stores a destination in canonical form (host bits cleared). None/'' pass through;
    an unparsable IPv4 CIDR fails like AWS (InvalidParameterValue)."""
    import ipaddress
    from moto.ec2.exceptions import InvalidDestinationCIDRBlockParameterError

    if not cidr:
        return cidr
    try:
        return str(ipaddress.IPv4Network(str(cidr), strict=False))
    except ValueError:
        raise InvalidDestinationCIDRBlockParameterError(cidr) from None


def patch_routes():
    from moto.ec2.exceptions import RouteAlreadyExistsError
    from moto.ec2.models.route_tables import Route, RouteBackend
    from moto.ec2.utils import generate_route_id

    orig_create = RouteBackend.create_route
    orig_replace = RouteBackend.replace_route
    orig_delete = RouteBackend.delete_route

    # (c) + (e). AWS: CreateRoute for a destination that already has a route in the table
    # fails with RouteAlreadyExists ("The route identified by <cidr> already exists"), also
    # when the target is the same. moto 5.2 checks this only in the branch for targets other
    # than NetworkInterfaceId: with an ENI target it replaced the existing route silently, so
    # a "create, and if it exists replace" client would never see its replace path run.
    def create_route(self, route_table_id, destination_cidr_block, *args, **kwargs):
        destination_cidr_block = _canonical_cidr(destination_cidr_block)
        local = kwargs.get("local", args[2] if len(args) > 2 else False)
        if not local:
            table = self.get_route_table(route_table_id)
            ipv6 = kwargs.get("destination_ipv6_cidr_block", args[0] if args else None)
            plist = kwargs.get("destination_prefix_list_id", args[1] if len(args) > 1 else None)
            rid = generate_route_id(table.id, destination_cidr_block, ipv6, plist)
            if rid in table._routes:
                raise RouteAlreadyExistsError(destination_cidr_block or ipv6 or plist)
        return orig_create(self, route_table_id, destination_cidr_block, *args, **kwargs)

    def replace_route(self, route_table_id, destination_cidr_block, *args, **kwargs):
        return orig_replace(self, route_table_id, _canonical_cidr(destination_cidr_block),
                            *args, **kwargs)

    def delete_route(self, route_table_id, destination_cidr_block, *args, **kwargs):
        return orig_delete(self, route_table_id, _canonical_cidr(destination_cidr_block),
                           *args, **kwargs)

    RouteBackend.create_route = create_route
    RouteBackend.replace_route = replace_route
    RouteBackend.delete_route = delete_route

    # (d) AWS: DescribeRouteTables shows a route whose target is an ENI attached to an
    # instance with NetworkInterfaceId, InstanceId and InstanceOwnerId; a route created with
    # InstanceId targets the instance's primary ENI and shows the same three fields. moto
    # showed only the field it was created with.
    def route_instance(route):
        if route.instance is not None:
            return route.instance
        if route.interface is not None:
            return getattr(route.interface, "instance", None)
        return None

    def instance_id(self):
        inst = route_instance(self)
        return inst.id if inst is not None else None

    def instance_owner_id(self):
        inst = route_instance(self)
        return getattr(inst, "owner_id", None) if inst is not None else None

    def network_interface_id(self):
        if self.interface is not None:
            return self.interface.id
        if self.instance is not None:
            primary = getattr(self.instance, "nics", {}).get(0)
            return primary.id if primary is not None else None
        return None

    Route.instance_id = property(instance_id)
    Route.instance_owner_id = property(instance_owner_id)
    Route.network_interface_id = property(network_interface_id)


def patch_source_dest_check():
    from moto.ec2.models.instances import Instance

    # (f) AWS: source/destination checking is an attribute of a network interface; an
    # instance's SourceDestCheck (DescribeInstances, DescribeInstanceAttribute,
    # ModifyInstanceAttribute) is that of its primary ENI (device index 0). moto 5.2 kept a
    # separate flag on the instance, so the two views drifted apart after either Modify call.
    # Instance.__init__ assigns the attribute before its ENIs exist: keep it aside until then.
    def _as_bool(value):
        if isinstance(value, str):
            return value.strip().lower() == "true"
        return bool(value)

    def get_sdc(self):
        nics = self.__dict__.get("nics") or {}
        if 0 in nics:
            return nics[0].source_dest_check
        return self.__dict__.get("_lab_source_dest_check", True)

    def set_sdc(self, value):
        value = _as_bool(value)
        self.__dict__["_lab_source_dest_check"] = value
        nics = self.__dict__.get("nics") or {}
        if 0 in nics:
            nics[0].source_dest_check = value

    Instance.source_dest_check = property(get_sdc, set_sdc)


def patch_route_dry_run():
    from moto.ec2.responses.route_tables import RouteTables

    # (g) AWS: every EC2 action takes DryRun; the answer is DryRunOperation (allowed) or
    # UnauthorizedOperation, and nothing changes. moto 5.2's RouteTables handlers for these four
    # never looked at the flag, so a DryRun ReplaceRoute/CreateRoute/DeleteRoute was performed.
    def with_dry_run(orig):
        def handler(self):
            self.error_on_dryrun()
            return orig(self)
        handler.__name__ = orig.__name__
        return handler

    for name in ("create_route", "replace_route", "delete_route", "describe_route_tables"):
        setattr(RouteTables, name, with_dry_run(getattr(RouteTables, name)))


def patch_subnet_ipv6_state():
    from moto.ec2.models.subnets import Subnet

    # DescribeSubnets: moto wrote the whole state object into Ipv6CidrBlockState.State
    # ("{'State': 'associated'}"); AWS writes "associated".
    def ipv6_cidr_block_association_set(self):
        return [
            {
                "ipv6CidrBlock": a["ipv6CidrBlock"],
                "associationId": a["associationId"],
                "ipv6CidrBlockState": {"state": a["ipv6CidrBlockState"]["State"]},
            }
            for a in self.ipv6_cidr_block_associations.values()
            if a["ipv6CidrBlockState"]["State"] == "associated"
        ]

    Subnet.ipv6_cidr_block_association_set = property(ipv6_cidr_block_association_set)


def patch_secondary_ips():
    import ipaddress
    from moto.ec2.exceptions import EC2ClientError
    from moto.ec2.models.elastic_network_interfaces import NetworkInterfaceBackend
    from moto.ec2.responses.elastic_network_interfaces import ElasticNetworkInterfaces

    orig_response = ElasticNetworkInterfaces.assign_private_ip_addresses

    def assign_response(self):
        self.error_on_dryrun()
        _tls.allow_reassignment = str(self._get_param("AllowReassignment", False)).lower() == "true"
        try:
            return orig_response(self)
        finally:
            _tls.allow_reassignment = False

    def assign_model(self, eni_id, private_ip_addresses=None, secondary_ips_count=None):
        eni = self.get_network_interface(eni_id)
        if private_ip_addresses:
            subnet = ipaddress.ip_network(eni.subnet.cidr_block)
            for ip in private_ip_addresses:
                if ipaddress.ip_address(ip) not in subnet:
                    raise EC2ClientError("InvalidParameterValue",
                                         f"Address {ip} does not fall within the subnet's address range")
            for other in self.get_all_network_interfaces():
                if other is eni:
                    continue
                for item in list(other.private_ip_addresses):
                    if item.get("PrivateIpAddress") not in private_ip_addresses:
                        continue
                    if item.get("Primary") or other.private_ip_address == item.get("PrivateIpAddress"):
                        raise EC2ClientError("InvalidParameterValue",
                                             f"Address {item['PrivateIpAddress']} is the primary address of {other.id}")
                    if not getattr(_tls, "allow_reassignment", False):
                        raise EC2ClientError("PrivateIpAddressInUse",
                                             f"Address {item['PrivateIpAddress']} is in use.")
            for other in self.get_all_network_interfaces():
                if other is not eni:
                    other.private_ip_addresses[:] = [
                        item for item in other.private_ip_addresses
                        if item.get("Primary") or item.get("PrivateIpAddress") not in private_ip_addresses]
            assigned = [item.get("PrivateIpAddress") for item in eni.private_ip_addresses]
            eni.private_ip_addresses.extend(
                {"Primary": False, "PrivateIpAddress": ip}
                for ip in private_ip_addresses if ip not in assigned)
            return eni
        return orig_model(self, eni_id, private_ip_addresses, secondary_ips_count)

    # AWS ORs the values of one filter: an ENI matches when any of its addresses is listed.
    # moto's generic matcher compared the sets by inclusion, only the primary IPv4 address, and
    # knew no IPv6 address filter.
    address_filters = ("addresses.private-ip-address", "private-ip-address")
    ipv6_filters = ("ipv6-addresses.ipv6-address", "ipv6-address")

    def get_all_network_interfaces(self, eni_ids=None, filters=None):
        wanted, wanted6 = None, None
        if filters:
            filters = dict(filters)
            for name in address_filters + ipv6_filters:
                values = filters.pop(name, None)
                if values is None:
                    continue
                values = set(values if isinstance(values, list) else [values])
                if name in ipv6_filters:
                    values = {str(ipaddress.ip_address(v)) for v in values}
                    wanted6 = values if wanted6 is None else wanted6 & values
                else:
                    wanted = values if wanted is None else wanted & values
        enis = orig_get_all(self, eni_ids, filters or None)
        if wanted is not None:
            enis = [eni for eni in enis
                    if wanted & ({item.get("PrivateIpAddress") for item in eni.private_ip_addresses}
                                 | {eni.private_ip_address})]
        if wanted6 is not None:
            enis = [eni for eni in enis
                    if wanted6 & {str(ipaddress.ip_address(a)) for a in eni.ipv6_addresses if a}]
        return enis

    # AWS refuses an IPv6 address still assigned to another ENI (there is no reassignment for
    # IPv6) and one outside the subnet's IPv6 ranges; moto assigned anything it was given.
    orig_assign6 = NetworkInterfaceBackend.assign_ipv6_addresses

    def assign_ipv6_addresses(self, eni_id, ipv6_addresses=None, ipv6_count=None):
        eni = self.get_network_interface(eni_id)
        if ipv6_addresses:
            ranges = [ipaddress.ip_network(a.get("ipv6CidrBlock"))
                      for a in eni.subnet.ipv6_cidr_block_associations.values() if a.get("ipv6CidrBlock")]
            for ip in ipv6_addresses:
                if not any(ipaddress.ip_address(ip) in r for r in ranges):
                    raise EC2ClientError("InvalidParameterValue",
                                         f"Address {ip} does not fall within the subnet's address range")
                for other in self.get_all_network_interfaces():
                    if other is not eni and ip in other.ipv6_addresses:
                        raise EC2ClientError("InvalidParameterValue", f"Address {ip} is in use.")
        return orig_assign6(self, eni_id, ipv6_addresses, ipv6_count)

    NetworkInterfaceBackend.assign_ipv6_addresses = assign_ipv6_addresses

    orig_get_all = NetworkInterfaceBackend.get_all_network_interfaces
    NetworkInterfaceBackend.get_all_network_interfaces = get_all_network_interfaces
    orig_model = NetworkInterfaceBackend.assign_private_ip_addresses
    ElasticNetworkInterfaces.assign_private_ip_addresses = assign_response
    NetworkInterfaceBackend.assign_private_ip_addresses = assign_model


ROUTE53_PENDING = float(os.environ.get("LAB_ROUTE53_PENDING_MS", "500")) / 1000.0
ROUTE53_RATE = 5


def patch_route53_changes():
    import itertools
    from moto.core.responses import ActionResult
    from moto.route53.responses import Route53

    orig_change = Route53.change_resource_record_sets
    submitted = {}
    counter = itertools.count(1)
    lock = threading.Lock()

    comments = {}

    def change_info(change_id, status, at):
        info = {"Id": change_id, "Status": status, "SubmittedAt": _utc(at)}
        if comments.get(change_id):
            info["Comment"] = comments[change_id]
        return {"ChangeInfo": info}

    def change_resource_record_sets(self):
        orig_change(self)
        comment = self._get_param("ChangeBatch.Comment")
        with lock:
            change_id = "/change/CLAB%012d" % next(counter)
            submitted[change_id] = time.time()
            if comment:
                comments[change_id] = comment
        return ActionResult(change_info(change_id, "PENDING", submitted[change_id]))

    def get_change(self):
        change_id = self._get_param("Id")
        if not change_id.startswith("/change/"):
            change_id = "/change/" + change_id
        with lock:
            at = submitted.get(change_id)
        if at is None:
            from moto.route53.exceptions import Route53ClientError
            raise Route53ClientError("NoSuchChange", f"Could not find resource with ID: {change_id}")
        status = "INSYNC" if time.time() - at >= ROUTE53_PENDING else "PENDING"
        return ActionResult(change_info(change_id, status, at))

    Route53.change_resource_record_sets = change_resource_record_sets
    Route53.get_change = get_change


def _utc(t):
    import datetime
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc)


def route53_action(method, path):
    """The action name of a Route 53 REST request, for the request log and the rate limit."""
    parts = [p for p in path.split("/") if p]
    if len(parts) < 2 or parts[0] != "2013-04-01":
        return None
    if parts[1] == "change":
        return "GetChange"
    if parts[1] == "hostedzone" and len(parts) >= 4 and parts[3] == "rrset":
        return "ChangeResourceRecordSets" if method == "POST" else "ListResourceRecordSets"
    if parts[1] == "hostedzone":
        return {"POST": "CreateHostedZone", "DELETE": "DeleteHostedZone"}.get(method, "GetHostedZone" if len(parts) >= 3 else "ListHostedZones")
    return parts[1]


def patch_iam():
    import secrets
    from xml.sax.saxutils import escape

    from werkzeug.exceptions import HTTPException

    import moto.iam.access_control as ac

    root_key = os.environ.get("LAB_ROOT_ACCESS_KEY_ID", "testing")
    root_secret = os.environ.get("LAB_ROOT_SECRET_ACCESS_KEY", "testing")

    class RootAccessKey:
        """(h) The account root user's access key: signature checked, no policy applies."""

        is_lab_root = True

        def __init__(self, account_id, partition):
            self.arn = f"arn:{partition}:iam::{account_id}:root"

        def create_credentials(self):
            from botocore.credentials import Credentials
            return Credentials(root_key, root_secret)

        def collect_policies(self):
            return []

    orig_create_access_key = ac.create_access_key

    def create_access_key(account_id, partition, access_key_id, headers):
        if access_key_id == root_key:
            return RootAccessKey(account_id, partition)
        return orig_create_access_key(account_id, partition, access_key_id, headers)

    ac.create_access_key = create_access_key

    orig_check = ac.IAMRequestBase.check_action_permitted

    def check_action_permitted(self, resource):
        if getattr(self._access_key, "is_lab_root", False):
            return
        return orig_check(self, resource)

    ac.IAMRequestBase.check_action_permitted = check_action_permitted

    class UnauthorizedOperation(HTTPException):
        code = 403

        def __init__(self, user_arn, action):
            super().__init__()
            message = (
                "You are not authorized to perform this operation. "
                f"User: {user_arn} is not authorized to perform: {action} "
                f"because no identity-based policy allows the {action} action. "
                f"Encoded authorization failure message: lab-{secrets.token_hex(16)}"
            )
            self.description = (
                '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error>'
                "<Code>UnauthorizedOperation</Code>"
                f"<Message>{escape(message)}</Message>"
                "</Error></Errors>"
                f"<RequestID>{secrets.token_hex(8)}</RequestID></Response>"
            )

        def get_headers(self, *args, **kwargs):
            return [("Content-Type", "text/xml;charset=UTF-8")]

        def get_body(self, *args, **kwargs):
            return self.description

    orig_denied = ac.IAMRequest._raise_access_denied

    def raise_access_denied(self):
        if self._service == "ec2":
            raise UnauthorizedOperation(self._access_key.arn, self._action)
        return orig_denied(self)

    ac.IAMRequest._raise_access_denied = raise_access_denied


def _flatten(qs):
    return {k: (v[0] if len(v) == 1 else v) for k, v in qs.items()}


def logging_middleware(inner, log_path):
    lock = threading.Lock()
    logf = open(log_path, "a", buffering=1)

    def app(environ, start_response):
        t = time.time()
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        body = environ["wsgi.input"].read(length) if length > 0 else b""
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        status = {}
        path = environ.get("PATH_INFO", "")
        r53 = route53_action(environ.get("REQUEST_METHOD", "GET"), path)
        observer = bool(environ.get("HTTP_X_LAB_OBSERVER"))
        if observer:
            return inner(environ, start_response)
        if r53 is not None:
            # (j) the account's Route 53 limit: 5 requests per second.
            with lock:
                recent = [x for x in route53_times if t - x < 1.0]
                throttled = len(recent) >= ROUTE53_RATE
                if not throttled:
                    recent.append(t)
                route53_times[:] = recent
            if throttled:
                body_out = (b'<?xml version="1.0"?>\n<ErrorResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/">'
                            b"<Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error>"
                            b"<RequestId>lab-throttled</RequestId></ErrorResponse>")
                start_response("400 Bad Request", [("Content-Type", "text/xml"), ("Content-Length", str(len(body_out)))])
                _log(logf, lock, t, environ, r53, {"Path": path}, 400)
                return [body_out]

        def sr(st, headers, exc_info=None):
            status["code"] = int(st.split()[0])
            if exc_info is not None:
                return start_response(st, headers, exc_info)
            return start_response(st, headers)

        result = inner(environ, sr)
        try:
            chunks = list(result)
        finally:
            if hasattr(result, "close"):
                result.close()
        params = {}
        ctype = environ.get("CONTENT_TYPE", "")
        if body and "x-www-form-urlencoded" in ctype:
            params.update(_flatten(parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)))
        params.update(_flatten(parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)))
        action = params.get("Action") or r53
        if action and not path.startswith("/moto-api"):
            if r53 is not None:
                params["Path"] = path
                if body:
                    params["Body"] = body.decode("utf-8", "replace")
            _log(logf, lock, t, environ, action, params, status.get("code"))
        return chunks

    route53_times = []
    return app


def _access_key(environ):
    """The access key id that signed the request (SigV4 `Credential=AKID/...`), so tests can
    tell a node's own credentials from a role it assumed."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    marker = "Credential="
    if marker not in auth:
        return None
    return auth.split(marker, 1)[1].split("/", 1)[0]


def _log(logf, lock, t, environ, action, params, status):
    rec = {
        "t": t,
        "source": environ.get("REMOTE_ADDR"),
        "action": action,
        "params": params,
        "status": status,
        "duration_ms": round((time.time() - t) * 1000.0, 3),
        "access_key": _access_key(environ),
    }
    with lock:
        logf.write(json.dumps(rec) + "\n")
        logf.flush()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=5000)
    ap.add_argument("--request-log", required=True)
    ap.add_argument("--ready-file")
    args = ap.parse_args()

    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)

    patch_moto()
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from moto.moto_server.werkzeug_app import MotoRequestHandler  # noqa
    from werkzeug.serving import make_server

    app = logging_middleware(DomainDispatcherApplication(create_backend_app), args.request_log)
    server = make_server(args.host, args.port, app, threaded=True,
                         request_handler=MotoRequestHandler)
    print(f"ec2_emulator: serving on http://{args.host}:{args.port}", flush=True)
    if args.ready_file:
        with open(args.ready_file + ".tmp", "w") as f:
            f.write(f"http://{args.host}:{args.port}\n")
        os.rename(args.ready_file + ".tmp", args.ready_file)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
