"""A stand-in for the GitHub Actions ID-token endpoint, for scripts/demo.

Serves GET ...?audience=AUD with `Authorization: bearer REQUEST_TOKEN` as the runner's
endpoint does, answering {"value": JWT} with GitHub's claims, HS256-signed (moto does
not verify signatures; GitHub's are RS256). The subject has the immutable form that
github.com gives repositories created since 2026-07-15:
repo:OWNER@OWNER_ID/REPO@REPO_ID:ref:refs/heads/main.
Usage: oidc_endpoint.py PORT REQUEST_TOKEN
"""
import base64, hashlib, hmac, json, sys, time
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlparse

PORT, REQUEST_TOKEN = int(sys.argv[1]), sys.argv[2]
OWNER_ID, REPO_ID = "190583734", "873419205"  # scripts/demo sets the same GITHUB_REPOSITORY_*ID


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(audience: str) -> str:
    now = int(time.time())
    claims = {
        "iss": "https://token.actions.githubusercontent.com",
        "aud": audience,
        "sub": f"repo:octo-org@{OWNER_ID}/octo-repo@{REPO_ID}:ref:refs/heads/main",
        "repository": "octo-org/octo-repo",
        "repository_id": REPO_ID,
        "repository_owner": "octo-org",
        "repository_owner_id": OWNER_ID,
        "ref": "refs/heads/main",
        "ref_type": "branch",
        "event_name": "push",
        "workflow_ref": "octo-org/octo-repo/.github/workflows/release.yml@refs/heads/main",
        "job_workflow_ref": "octo-org/octo-repo/.github/workflows/release.yml@refs/heads/main",
        "runner_environment": "github-hosted",
        "sha": "0123456789abcdef0123456789abcdef01234567",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
    }
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    sig = hmac.new(b"demo-key", f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        audience = parse_qs(urlparse(self.path).query).get("audience", [None])[0]
        if self.headers.get("Authorization", "").lower() != f"bearer {REQUEST_TOKEN}".lower():
            self.send_response(401)
            body = b'{"message":"bad bearer token"}'
        elif not audience:
            self.send_response(400)
            body = b'{"message":"audience missing"}'
        else:
            self.send_response(200)
            body = json.dumps({"value": jwt(audience)}).encode()
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


HTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
