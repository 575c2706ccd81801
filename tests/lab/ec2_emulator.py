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

Request log: one JSON line per EC2 API request
  {"t": arrival unix time, "source": client ip, "action": "AssociateAddress",
   "params": {...form/query params...}, "status": http status, "duration_ms": float}
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
        path = environ.get("PATH_INFO", "")
        params = {}
        ctype = environ.get("CONTENT_TYPE", "")
        if body and "x-www-form-urlencoded" in ctype:
            params.update(_flatten(parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)))
        params.update(_flatten(parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)))
        action = params.get("Action")
        if action and not path.startswith("/moto-api"):
            rec = {
                "t": t,
                "source": environ.get("REMOTE_ADDR"),
                "action": action,
                "params": params,
                "status": status.get("code"),
                "duration_ms": round((time.time() - t) * 1000.0, 3),
            }
            with lock:
                logf.write(json.dumps(rec) + "\n")
                logf.flush()
        return chunks

    return app


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
