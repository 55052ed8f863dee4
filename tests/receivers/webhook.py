"""A webhook receiver for the notice tests: checks each POST's signature
(HMAC-SHA256 over "timestamp.body" with the shared secret) and its
timestamp, and appends what it got to a JSON-lines file. Under /slack it
takes what Slack's and Mattermost's incoming webhooks take (unsigned JSON
with a "text"). While the file named by --down exists it answers 503, as a
receiver that is down."""

import argparse
import hashlib
import hmac
import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

parser = argparse.ArgumentParser()
parser.add_argument("--listen", required=True)
parser.add_argument("--secret-file", required=True)
parser.add_argument("--out", required=True)
parser.add_argument("--down", required=True)
args = parser.parse_args()
secret = open(args.secret_file, "rb").read().strip()


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if os.path.exists(args.down):
            self.send_response(503)
            self.end_headers()
            return
        stamp = self.headers.get("X-Ensuresec-Timestamp", "")
        given = self.headers.get("X-Ensuresec-Signature", "")
        want = "v1=" + hmac.new(secret, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        fresh = stamp.isdigit() and abs(time.time() - int(stamp)) < 300
        parsed = json.loads(body or b"null")
        if self.path.startswith("/slack"):
            valid = isinstance(parsed, dict) and isinstance(parsed.get("text"), str)
        else:
            valid = hmac.compare_digest(given, want) and fresh
        record = {
            "path": self.path,
            "key": self.headers.get("Idempotency-Key"),
            "valid": valid,
            "body": parsed,
        }
        with open(args.out, "a") as out:
            out.write(json.dumps(record) + "\n")
        self.send_response(200 if record["valid"] else 401)
        self.end_headers()

    def log_message(self, *_):
        pass


host, port = args.listen.rsplit(":", 1)
ThreadingHTTPServer((host, int(port)), Handler).serve_forever()
