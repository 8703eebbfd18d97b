"""A loopback revocation-list server and a push sender for tests/e2e/test_revocation.py.

    revocation_server.py serve --port 0
        Serves the list at GET /list with an ETag (a 304 for a matching If-None-Match);
        POST /admin/list replaces it (a new ETag), GET /admin/stats counts the answers.
        Prints `listening on 127.0.0.1:PORT` once ready.
    revocation_server.py push --port PORT --path PATH (--logout TOKEN | --set TOKEN)
        POSTs a back-channel logout token (form-encoded) or a Security Event Token
        (application/secevent+jwt) once and prints `status <code> <body>`.

Standard library only; the test starts each process and stops it by pid.
"""

import argparse
import http.client
import json
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STATE = {"list": {"revoked": []}, "version": 1, "served": {}, "not_modified": 0}
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, fmt, *args):  # quiet: the test reads the stats instead
        pass

    def answer(self, status, body=b"", headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        with LOCK:
            if self.path == "/admin/stats":
                body = json.dumps({"version": STATE["version"], "served": STATE["served"],
                                   "not_modified": STATE["not_modified"]}).encode()
                return self.answer(200, body, [("content-type", "application/json")])
            if self.path != "/list":
                return self.answer(404)
            etag = f'"v{STATE["version"]}"'
            if self.headers.get("if-none-match") == etag:
                STATE["not_modified"] += 1
                return self.answer(304, headers=[("etag", etag)])
            version = str(STATE["version"])
            STATE["served"][version] = STATE["served"].get(version, 0) + 1
            body = json.dumps(STATE["list"]).encode()
        self.answer(200, body, [("content-type", "application/json"), ("etag", etag)])

    def do_POST(self):
        if self.path != "/admin/list":
            return self.answer(404)
        length = int(self.headers.get("content-length", "0"))
        listed = json.loads(self.rfile.read(length))
        with LOCK:
            STATE["list"] = listed
            STATE["version"] += 1
            version = STATE["version"]
        self.answer(200, json.dumps({"version": version}).encode())


def serve(port):
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"listening on 127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


def push(port, path, logout, set_token):
    if logout is not None:
        body = urllib.parse.urlencode({"logout_token": logout})
        ctype = "application/x-www-form-urlencoded"
    else:
        body, ctype = set_token, "application/secevent+jwt"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", path, body=body, headers={"content-type": ctype})
        r = conn.getresponse()
        print(f"status {r.status} {r.read().decode(errors='replace')}", flush=True)
    finally:
        conn.close()


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--port", type=int, default=0)
    p = sub.add_parser("push")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", required=True)
    p.add_argument("--logout")
    p.add_argument("--set", dest="set_token")
    args = ap.parse_args()
    if args.command == "serve":
        serve(args.port)
    else:
        push(args.port, args.path, args.logout, args.set_token)


if __name__ == "__main__":
    sys.exit(main())
