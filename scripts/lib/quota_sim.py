"""One AWS account's ECR request quotas, in front of moto: a proxy that admits each
ECR call only while its action's token bucket has a token, and answers the rest as ECR
does when the account's quota is spent (HTTP 400, ThrottlingException, "Rate
exceeded"). The buckets belong to the whole "account", so every process pushing
through the proxy shares them, as every job of an organisation shares ECR's.

Rates are ECR's published defaults per account and region (the "Amazon ECR service
quotas" page of the ECR user guide: PutImage 10 a second, InitiateLayerUpload and
CompleteLayerUpload 100, UploadLayerPart 500, BatchCheckLayerAvailability 1,000,
BatchGetImage 2,000, GetAuthorizationToken 500), all scaled by one factor (--scale) so
that a test can meet a quota with a few pushes. A bucket holds --burst seconds of its
rate (at least one token). Calls of other actions, and STS, pass unmetered.

Used by the integration tests (tests/it/support/quota.rs) and `scripts/bench quota`.
It prints `listening on 127.0.0.1:PORT` once ready. `GET /__quota__` answers what it
counted: per action, the quota (calls a second), the calls admitted and refused, and
the times (seconds since start) at which each was (`times`, `refused_times`).

Usage: quota_sim.py --upstream PORT [--scale F] [--burst SECONDS] [--port PORT]
"""
import argparse
import http.client
import http.server
import json
import sys
import threading
import time
import uuid

QUOTAS = {
    "PutImage": 10,
    "InitiateLayerUpload": 100,
    "CompleteLayerUpload": 100,
    "UploadLayerPart": 500,
    "BatchCheckLayerAvailability": 1000,
    "BatchGetImage": 2000,
    "GetAuthorizationToken": 500,
}

# Hop-by-hop headers, which a proxy does not pass on.
HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}


class Bucket:
    def __init__(self, rate, burst):
        self.rate = rate
        self.capacity = max(1.0, rate * burst)
        self.tokens = self.capacity
        self.at = time.monotonic()
        self.admitted = []
        self.refused = []
        self.lock = threading.Lock()

    def take(self, now, since):
        with self.lock:
            self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
            self.at = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                self.admitted.append(round(now - since, 4))
                return True
            self.refused.append(round(now - since, 4))
            return False

    def counts(self):
        with self.lock:
            return {
                "quota": self.rate,
                "burst": self.capacity,
                "admitted": len(self.admitted),
                "refused": len(self.refused),
                "times": list(self.admitted),
                "refused_times": list(self.refused),
            }


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, reason, headers, body):
        self.send_response(status, reason)
        for name, value in headers:
            if name.lower() not in HOP and name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def relay(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path == "/__quota__":
            counts = {a: b.counts() for a, b in self.server.buckets.items()}
            report = {"scale": self.server.scale, "actions": counts}
            data = json.dumps(report).encode()
            self.answer(200, "OK", [("Content-Type", "application/json")], data)
            return
        target = self.headers.get("X-Amz-Target", "")
        action = target.rsplit(".", 1)[-1] if target.startswith("AmazonEC2ContainerRegistry") else ""
        bucket = self.server.buckets.get(action)
        if bucket and not bucket.take(time.monotonic(), self.server.started):
            data = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode()
            headers = [
                ("Content-Type", "application/x-amz-json-1.1"),
                ("x-amzn-RequestId", str(uuid.uuid4())),
            ]
            self.answer(400, "Bad Request", headers, data)
            return
        upstream = http.client.HTTPConnection("127.0.0.1", self.server.upstream, timeout=300)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
            upstream.request(self.command, self.path, body=body, headers=headers)
            response = upstream.getresponse()
            data = response.read()
            self.answer(response.status, response.reason, response.getheaders(), data)
        finally:
            upstream.close()

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = relay


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    # Many processes open connections at once; the default backlog of 5 would refuse some.
    request_queue_size = 256


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", type=int, required=True, help="moto's port")
    parser.add_argument("--scale", type=float, default=1.0, help="factor on every quota")
    parser.add_argument("--burst", type=float, default=1.0, help="seconds of rate a bucket holds")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = Server(("127.0.0.1", args.port), Handler)
    server.upstream = args.upstream
    server.scale = args.scale
    server.started = time.monotonic()
    server.buckets = {a: Bucket(q * args.scale, args.burst) for a, q in QUOTAS.items()}
    print(f"listening on 127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
