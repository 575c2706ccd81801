#!/usr/bin/env python3
"""A tiny IMDSv2 responder for one lab node.

    imds.py --host 127.0.0.1 --port 1338 --instance-id i-.. --eni eni-.. \
            --region us-east-1 --az us-east-1a --private-ip 10.0.1.4 [--mac 0e:..]

PUT /latest/api/token needs X-aws-ec2-metadata-token-ttl-seconds (1..21600) and returns a
token; every GET needs a valid, unexpired X-aws-ec2-metadata-token (401 otherwise).

With --events-dir DIR, the documents EC2 serves only while there is an event are read from DIR
at every request (404 while the file is absent, as EC2 does): scheduled.json for
events/maintenance/scheduled, spot.json for spot/instance-action, rebalance.json for
events/recommendations/rebalance.
"""
import os
import argparse
import json
import secrets
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


EVENT_FILES = {
    "/latest/meta-data/events/maintenance/scheduled": "scheduled.json",
    "/latest/meta-data/spot/instance-action": "spot.json",
    "/latest/meta-data/events/recommendations/rebalance": "rebalance.json",
}


def build_handler(meta):
    tokens = {}
    lock = threading.Lock()
    mac = meta["mac"]
    paths = {
        "/latest/meta-data/instance-id": meta["instance_id"],
        "/latest/meta-data/placement/availability-zone": meta["az"],
        "/latest/meta-data/placement/region": meta["region"],
        "/latest/meta-data/mac": mac,
        "/latest/meta-data/local-ipv4": meta["private_ip"],
        "/latest/meta-data/network/interfaces/macs": mac + "/",
        "/latest/meta-data/network/interfaces/macs/" + mac: "device-number\ninterface-id\nlocal-ipv4s\nmac\n",
        "/latest/meta-data/network/interfaces/macs/%s/interface-id" % mac: meta["eni"],
        "/latest/meta-data/network/interfaces/macs/%s/device-number" % mac: "0",
        "/latest/meta-data/network/interfaces/macs/%s/local-ipv4s" % mac: meta["private_ip"],
        "/latest/meta-data/network/interfaces/macs/%s/mac" % mac: mac,
        "/latest/meta-data/instance-type": "t3.micro",
        "/latest/meta-data/ami-id": meta.get("ami", "ami-lab"),
        "/latest/dynamic/instance-identity/document": json.dumps({
            "instanceId": meta["instance_id"],
            "region": meta["region"],
            "availabilityZone": meta["az"],
            "privateIp": meta["private_ip"],
            "accountId": "123456789012",
            "instanceType": "t3.micro",
            "imageId": meta.get("ami", "ami-lab"),
            "architecture": "x86_64",
            "version": "2017-09-30",
        }),
        "/latest/meta-data": "ami-id\ninstance-id\ninstance-type\nlocal-ipv4\nmac\nnetwork/\nplacement/\n",
        "/latest/meta-data/placement": "availability-zone\nregion\n",
    }

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "EC2ws"
        sys_version = ""

        def log_message(self, fmt, *args):
            pass

        def _send(self, code, body, ctype="text/plain", extra=None):
            data = body.encode() if isinstance(body, str) else body
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _drain(self):
            n = int(self.headers.get("Content-Length") or 0)
            if n:
                self.rfile.read(n)

        def do_PUT(self):
            self._drain()
            if self.path.split("?")[0] != "/latest/api/token":
                return self._send(404, "Not Found")
            ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
            try:
                ttl = int(ttl)
            except (TypeError, ValueError):
                return self._send(400, "Bad Request")
            if not 1 <= ttl <= 21600:
                return self._send(400, "Bad Request")
            tok = secrets.token_urlsafe(32)
            with lock:
                tokens[tok] = time.time() + ttl
            self._send(200, tok, extra={"X-aws-ec2-metadata-token-ttl-seconds": str(ttl)})

        def do_GET(self):
            tok = self.headers.get("X-aws-ec2-metadata-token")
            with lock:
                exp = tokens.get(tok) if tok else None
            if exp is None or exp < time.time():
                return self._send(401, "Unauthorized")
            path = self.path.split("?")[0]
            if path != "/" and path.endswith("/"):
                path = path[:-1]
            body = paths.get(path)
            events_dir = meta.get("events_dir")
            if body is None and events_dir and path in EVENT_FILES:
                try:
                    with open(os.path.join(events_dir, EVENT_FILES[path])) as f:
                        body = f.read()
                except FileNotFoundError:
                    body = None
            if body is None:
                return self._send(404, "Not Found")
            ctype = "application/json" if path.endswith("instance-identity/document") else "text/plain"
            self._send(200, body, ctype)

        do_HEAD = do_GET

    return Handler


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=1338)
    ap.add_argument("--instance-id", required=True)
    ap.add_argument("--eni", required=True)
    ap.add_argument("--region", default="us-east-1")
    ap.add_argument("--az", default="us-east-1a")
    ap.add_argument("--private-ip", required=True)
    ap.add_argument("--mac", default="")
    ap.add_argument("--events-dir", default="")
    args = ap.parse_args()
    mac = args.mac or "0e:00:%02x:%02x:%02x:%02x" % tuple(
        int(x) for x in (args.private_ip.split(".") + ["0"] * 4)[:4])
    meta = {"instance_id": args.instance_id, "eni": args.eni, "region": args.region,
            "az": args.az, "private_ip": args.private_ip, "mac": mac,
            "events_dir": args.events_dir}
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.allow_reuse_address = True
    srv = ThreadingHTTPServer((args.host, args.port), build_handler(meta))
    print(f"imds: serving {args.instance_id} on http://{args.host}:{args.port}", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
