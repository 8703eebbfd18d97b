"""A loopback RFC 7662 introspection endpoint for the e2e tests (stdlib only).

`python3 introspection_server.py PORT` listens on 127.0.0.1:PORT (0: any free port) and
prints `listening on 127.0.0.1:<port>`. POST /introspect with HTTP Basic `gateway:s3cret`
and a form body `token=...&token_type_hint=access_token` answers: tokens starting with
`active-` active (sub = the token's rest, aud https://api.test, exp in an hour, scope
`read:messages`), anything else inactive; other client credentials 401. GET /stats answers
the calls per token as JSON, the way the tests count them.
"""

import base64
import json
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CREDENTIALS = "Basic " + base64.b64encode(b"gateway:s3cret").decode()
CALLS: dict[str, int] = {}
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self, status: int, body: dict):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path != "/stats":
            return self.answer(404, {})
        with LOCK:
            self.answer(200, dict(CALLS))

    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        form = urllib.parse.parse_qs(self.rfile.read(length).decode(), strict_parsing=True)
        if self.path != "/introspect":
            return self.answer(404, {})
        if self.headers.get("authorization") != CREDENTIALS:
            return self.answer(401, {"error": "invalid_client"})
        if self.headers.get("content-type") != "application/x-www-form-urlencoded":
            return self.answer(400, {"error": "invalid_request"})
        token = form["token"][0]
        with LOCK:
            CALLS[token] = CALLS.get(token, 0) + 1
        if form.get("token_type_hint") != ["access_token"] or not token.startswith("active-"):
            return self.answer(200, {"active": False})
        self.answer(200, {"active": True, "sub": token.removeprefix("active-"),
                          "aud": "https://api.test", "iss": "https://issuer.test/",
                          "scope": "read:messages", "exp": int(time.time()) + 3600})

    def log_message(self, *args):
        pass


def main():
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    print(f"listening on 127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
