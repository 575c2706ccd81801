#!/usr/bin/env python3
"""A fault-injecting HTTP proxy in front of the EC2 emulator.

The daemon talks to the proxy (its endpoint_url); the proxy forwards to moto unless a rule
says otherwise. Rules are set by the test through the proxy's own endpoints:

  POST /_faults   JSON list of rules, replacing the current ones:
                  {"action": "AssociateAddress" | "*", "mode": "throttle" | "error500" |
                   "error503" | "denied" | "latency" | "drop" | "apply_then_hang",
                   "count": N (omit: forever),
                   "latency_ms": M,
                   "body_contains": "text" (omit: any request of the action)}
  GET  /_calls    JSON list of every EC2 call seen: {"t", "source", "action", "fault"}

Modes: throttle answers RequestLimitExceeded (HTTP 503, like EC2); error500/error503 answer
InternalError/Unavailable; denied answers UnauthorizedOperation (HTTP 403: a role that lacks
the permission for a while; Route 53 calls get AccessDenied in Route 53's own error
format); latency delays then forwards; drop closes the connection without an
answer; apply_then_hang forwards (EC2 applies the call) and then never answers, so the client
times out after the change was made.
"""
import argparse
import http.client
import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
RULES = []
CALLS = []
UPSTREAM = None

ERRORS = {
    "throttle": (503, "RequestLimitExceeded", "Request limit exceeded."),
    "error500": (500, "InternalError", "An internal error has occurred."),
    "error503": (503, "Unavailable", "The server is overloaded."),
    "denied": (403, "UnauthorizedOperation", "You are not authorized to perform this operation."),
}


def route53_action(method, path):
    """The Route 53 operation of a REST request (EC2 names its action in the form instead)."""
    path = path.split("?", 1)[0].rstrip("/")
    if not path.startswith("/2013-04-01/"):
        return ""
    if path.startswith("/2013-04-01/change/"):
        return "GetChange"
    if path.endswith("/rrset"):
        return "ChangeResourceRecordSets" if method == "POST" else "ListResourceRecordSets"
    if path.startswith("/2013-04-01/hostedzone/") and method == "GET":
        return "GetHostedZone"
    return ""


def take_rule(action, body):
    with LOCK:
        for rule in RULES:
            if "body_contains" in rule and rule["body_contains"].encode() not in body:
                continue
            if rule.get("action") in ("*", action) and rule.get("count", 1) > 0:
                if "count" in rule:
                    rule["count"] -= 1
                return dict(rule)
    return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _reply(self, status, body, ctype="application/json"):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = True

    def do_GET(self):
        if self.path == "/_calls":
            with LOCK:
                self._reply(200, json.dumps(CALLS))
        else:
            self._forward(b"")

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path == "/_faults":
            global RULES
            with LOCK:
                RULES = json.loads(body or b"[]")
            self._reply(200, "{}")
            return
        self._forward(body)

    def _forward(self, body):
        form = urllib.parse.parse_qs(body.decode(errors="replace"))
        action = (form.get("Action") or [""])[0] or route53_action(self.command, self.path)
        rule = take_rule(action, body)
        mode = rule["mode"] if rule else None
        with LOCK:
            CALLS.append({"t": time.time(), "source": self.client_address[0], "action": action, "fault": mode})
        if mode in ERRORS:
            status, code, message = ERRORS[mode]
            if self.path.startswith("/2013-04-01/"):
                code = {"denied": "AccessDenied", "throttle": "Throttling"}.get(mode, "ServiceUnavailable")
                xml = (f'<?xml version="1.0" encoding="UTF-8"?><ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code>'
                       f"<Message>{message}</Message></Error><RequestId>lab-fault</RequestId></ErrorResponse>")
            else:
                xml = (f'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>{code}</Code>'
                       f"<Message>{message}</Message></Error></Errors><RequestID>lab-fault</RequestID></Response>")
            self._reply(status, xml, "text/xml")
            return
        if mode == "drop":
            self.close_connection = True
            try:
                self.connection.shutdown(2)
            except OSError:
                pass
            return
        if mode == "latency":
            time.sleep(rule.get("latency_ms", 200) / 1000)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "host")}
        conn = http.client.HTTPConnection(UPSTREAM[0], UPSTREAM[1], timeout=30)
        try:
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        if mode == "apply_then_hang":
            # EC2 made the change; the client never hears about it.
            time.sleep(30)
            self.close_connection = True
            return
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("connection", "content-length", "transfer-encoding", "server", "date"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = True


def main():
    global UPSTREAM
    p = argparse.ArgumentParser()
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--upstream", required=True, help="host:port of the emulator")
    args = p.parse_args()
    host, port = args.upstream.rsplit(":", 1)
    UPSTREAM = (host, int(port))
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
