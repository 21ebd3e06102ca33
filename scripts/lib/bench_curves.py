#!/usr/bin/env python3
"""Cost curves (`scripts/bench curves`, issue 18): wall, CPU and peak RSS of a push against
image size, layer count, tags, platforms and targets, for ecr-push, for skopeo where it can
do the same work, and for the limit (the same blobs PUT by curl, one monolithic upload
each, as many at once as ecr-push runs); and ECR's API calls per action, from the tool's own
counters, pushing the same point into moto.

    bench_curves.py BIN RUNS        measure, write docs/bench/curves.json and the plots,
                                    print the tables
    bench_curves.py --report [JSON] the plots and tables again from a results file

BENCH_CURVES=size,layers,… picks curves (default: all, and `concurrency`, the registry push
of 8 × 128 MiB and 1 × 2 GiB at concurrency 4 and 16); BENCH_CURVES_QUICK=1 makes every
point tiny (a check of the script, not a measurement; its results go to a scratch file).
Images are written per point, seeded, as OCI layouts, and deleted when the point is done.
"""
import hashlib
import json
import os
import platform as host_platform
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "docs", "bench")
KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
CONCURRENCY = 4
QUICK = os.environ.get("BENCH_CURVES_QUICK", "") not in ("", "0")
CURVES = ["size", "layers", "tags", "platforms", "targets", "concurrency"]
ACCOUNT = "123456789012"  # moto's
ECR_HOST = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"
ARCHES = [("amd64", None), ("arm64", "v8"), ("arm", "v7"), ("ppc64le", None),
          ("s390x", None), ("386", None), ("riscv64", None), ("mips64le", None)]

# Each curve: the points (x, what to build), and the largest x pushed into moto too.
if QUICK:
    POINTS = {
        "size": [(s, {"layers": [s // 2] * 2}) for s in (2 * MiB, 8 * MiB)],
        "layers": [(n, {"layers": [16 * MiB // n] * n}) for n in (1, 4)],
        "tags": [(n, {"layers": [MiB] * 2, "tags": n}) for n in (1, 10)],
        "platforms": [(n, {"layers": [MiB] * 2, "platforms": n}) for n in (1, 2)],
        "targets": [(n, {"layers": [2 * MiB] * 2, "targets": n}) for n in (1, 2)],
        "concurrency": [((name, c), {"layers": sizes, "concurrency": c})
                        for name, sizes in (("8 × 2 MiB", [2 * MiB] * 8), ("1 × 16 MiB", [16 * MiB]))
                        for c in (4, 16)],
    }
    ECR_MAX = {"size": 8 * MiB}
else:
    POINTS = {
        # Size in 8 equal layers.
        "size": [(s, {"layers": [s // 8] * 8}) for s in (64 * MiB, 256 * MiB, GiB, 4 * GiB, 8 * GiB)],
        # 1 GiB in N equal layers.
        "layers": [(n, {"layers": [GiB // n] * n}) for n in (1, 4, 16, 64, 256)],
        # A small image (2 × 8 MiB) under N tags.
        "tags": [(n, {"layers": [8 * MiB] * 2, "tags": n}) for n in (1, 10, 100, 1000)],
        # An index of N small images (2 × 8 MiB each, every platform its own bytes).
        "platforms": [(n, {"layers": [8 * MiB] * 2, "platforms": n}) for n in (1, 2, 4, 8)],
        # 256 MiB in 8 layers to N docker-registry servers.
        "targets": [(n, {"layers": [32 * MiB] * 8, "targets": n}) for n in (1, 2, 3, 4)],
        # The two images of `scripts/bench registry`, at concurrency 4 and 16.
        "concurrency": [((name, c), {"layers": sizes, "concurrency": c})
                        for name, sizes in (("8 × 128 MiB", [128 * MiB] * 8), ("1 × 2 GiB", [2 * GiB]))
                        for c in (4, 16)],
    }
    # moto is one Python process that keeps every part in memory: the size curve goes into
    # it up to 1 GiB; the call counts of larger points follow from the part count.
    ECR_MAX = {"size": GiB}


def log(*args):
    print(*args, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- images


class Layout:
    """An OCI layout under DIR, written from a seeded generator."""

    def __init__(self, path, seed):
        self.path = path
        self.rng = random.Random(seed)
        self.dir = os.path.join(path, "blobs", "sha256")
        os.makedirs(self.dir)
        self.blobs = []      # (digest, path): every blob, config included
        self.manifests = []  # (digest, media type, path), children before the index
        self.bytes = 0

    def put(self, data):
        digest = hashlib.sha256(data).hexdigest()
        path = os.path.join(self.dir, digest)
        with open(path, "wb") as f:
            f.write(data)
        return digest, path

    def random_blob(self, size):
        h = hashlib.sha256()
        tmp = os.path.join(self.dir, "layer.tmp")
        with open(tmp, "wb") as f:
            left = size
            while left:
                chunk = self.rng.randbytes(min(left, 64 * MiB))
                h.update(chunk)
                f.write(chunk)
                left -= len(chunk)
        path = os.path.join(self.dir, h.hexdigest())
        os.rename(tmp, path)
        self.blobs.append((h.hexdigest(), path))
        self.bytes += size
        return {"mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": "sha256:" + h.hexdigest(), "size": size}

    def image(self, sizes, arch="amd64", variant=None):
        layers = [self.random_blob(s) for s in sizes]
        config = {"architecture": arch, "os": "linux",
                  "rootfs": {"type": "layers", "diff_ids": [l["digest"] for l in layers]}}
        if variant:
            config["variant"] = variant
        data = json.dumps(config).encode()
        digest, path = self.put(data)
        self.blobs.append((digest, path))
        self.bytes += len(data)
        media = "application/vnd.oci.image.manifest.v1+json"
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": media,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": "sha256:" + digest, "size": len(data)},
            "layers": layers}).encode()
        digest, path = self.put(manifest)
        self.manifests.append((digest, media, path))
        return {"mediaType": media, "digest": "sha256:" + digest, "size": len(manifest)}

    def index(self, children):
        media = "application/vnd.oci.image.index.v1+json"
        data = json.dumps({"schemaVersion": 2, "mediaType": media, "manifests": children}).encode()
        digest, path = self.put(data)
        self.manifests.append((digest, media, path))
        return {"mediaType": media, "digest": "sha256:" + digest, "size": len(data)}

    def finish(self, top, tag="v1"):
        with open(os.path.join(self.path, "index.json"), "w") as f:
            json.dump({"schemaVersion": 2, "manifests": [
                dict(top, annotations={"org.opencontainers.image.ref.name": tag})]}, f)
        with open(os.path.join(self.path, "oci-layout"), "w") as f:
            f.write('{"imageLayoutVersion":"1.0.0"}')
        self.top = top


def build(path, curve, x, spec):
    layout = Layout(path, f"ecr-push curves {curve} {x}")
    n = spec.get("platforms")
    if n:
        children = []
        for arch, variant in ARCHES[:n]:
            d = layout.image(spec["layers"], arch, variant)
            d["platform"] = {"os": "linux", "architecture": arch}
            if variant:
                d["platform"]["variant"] = variant
            children.append(d)
        layout.finish(layout.index(children))
    else:
        layout.finish(layout.image(spec["layers"]))
    return layout


# ---------------------------------------------------------------- servers


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, proc, what):
    for _ in range(300):
        if proc.poll() is not None:
            break
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return True
        except Exception:
            time.sleep(0.1)
    return False


class Servers:
    """The servers of one measurement: docker-registry with empty storage, or moto."""

    def __init__(self, work):
        self.work = work
        self.procs = []

    def registries(self, n):
        self.stop()
        hosts = []
        for i in range(n):
            for _ in range(5):
                port = free_port()
                storage = os.path.join(self.work, f"storage{i}")
                shutil.rmtree(storage, ignore_errors=True)
                config = os.path.join(self.work, f"registry{i}.yml")
                with open(config, "w") as f:
                    f.write("version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
                            f"    rootdirectory: {storage}\nhttp:\n  addr: 127.0.0.1:{port}\n")
                proc = subprocess.Popen(["docker-registry", "serve", config],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                if wait_http(f"http://127.0.0.1:{port}/v2/", proc, "docker-registry"):
                    break
                proc.kill()
                proc.wait()
            else:
                sys.exit("bench: docker-registry did not start")
            self.procs.append(proc)
            hosts.append(f"127.0.0.1:{port}")
        return hosts

    def moto(self):
        self.stop()
        for _ in range(5):
            port = free_port()
            proc = subprocess.Popen([os.path.join(ROOT, ".venv/bin/moto_server"), "-H", "127.0.0.1",
                                     "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if wait_http(f"http://127.0.0.1:{port}/moto-api/data.json", proc, "moto"):
                self.procs.append(proc)
                return f"http://127.0.0.1:{port}"
            proc.kill()
            proc.wait()
        sys.exit("bench: moto did not start")

    def stop(self):
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs = []
        for name in os.listdir(self.work):
            if name.startswith("storage"):
                shutil.rmtree(os.path.join(self.work, name), ignore_errors=True)


# ---------------------------------------------------------------- the three sides

# The limit: every blob one POST for an upload URL and one monolithic PUT of its bytes by
# `curl -T`, P at a time; then the manifests (children by digest, then the top one under
# each tag), P at a time.
CURL_PUSH = r"""set -euo pipefail
P=$1 blobs=$2 children=$3 tops=$4
upload() { # BASE REPOSITORY FILE DIGEST
  local loc sep
  loc=$(curl -sSf -X POST -D - -o /dev/null "$1/v2/$2/blobs/uploads/" |
    tr -d '\r' | awk 'tolower($1) == "location:" {print $2}')
  case $loc in http*) ;; *) loc=$1$loc ;; esac
  case $loc in *\?*) sep='&' ;; *) sep='?' ;; esac
  curl -sSf -o /dev/null -T "$3" -H 'Content-Type: application/octet-stream' "$loc${sep}digest=sha256:$4"
}
manifest() { # BASE REPOSITORY REFERENCE MEDIA-TYPE FILE
  curl -sSf -o /dev/null -X PUT -H "Content-Type: $4" --data-binary "@$5" "$1/v2/$2/manifests/$3"
}
export -f upload manifest
xargs -r -P "$P" -L 1 bash -c 'upload "$@"' _ <"$blobs"
xargs -r -P "$P" -L 1 bash -c 'manifest "$@"' _ <"$children"
xargs -r -P "$P" -L 1 bash -c 'manifest "$@"' _ <"$tops"
"""


class Bench:
    def __init__(self, binary, runs, work):
        self.bin = binary
        self.runs = runs
        self.work = work
        self.servers = Servers(work)
        self.home = os.path.join(work, "home")
        with open(os.path.join(work, "curl-push"), "w") as f:
            f.write(CURL_PUSH)

    def timed(self, cmd, env=None):
        out = os.path.join(self.work, "time")
        err = os.path.join(self.work, "err")
        with open(err, "w") as e:
            rc = subprocess.call(["/usr/bin/time", "-f", "%e %U %S %M", "-o", out] + cmd,
                                 stdout=subprocess.DEVNULL, stderr=e, env=env)
        if rc != 0:
            with open(err) as e:
                log(e.read()[-4000:])
            sys.exit(f"bench: {cmd[0]} failed ({rc})")
        with open(out) as f:
            wall, user, sys_, rss = f.read().split()[-4:]
        return {"wall": float(wall), "cpu": float(user) + float(sys_), "rss": int(rss) / 1024}

    def env(self, **extra):
        # A fresh HOME per push: skopeo's blob-info cache lives there.
        shutil.rmtree(self.home, ignore_errors=True)
        os.makedirs(self.home)
        env = dict(os.environ, HOME=self.home)
        for k in ("GITHUB_STEP_SUMMARY", "GITHUB_OUTPUT", "GITHUB_ACTIONS"):
            env.pop(k, None)
        env.update(extra)
        return env

    def check(self, hosts, layout, tags):
        """Every destination holds the image's top manifest under every tag."""
        for host in hosts:
            with urllib.request.urlopen(f"http://{host}/v2/bench/tags/list") as r:
                got = set(json.load(r)["tags"] or [])
            if got != set(tags):
                sys.exit(f"bench: {host} holds {len(got)} tags, not the {len(tags)} pushed")
            for tag in (tags[0], tags[-1]):
                req = urllib.request.Request(f"http://{host}/v2/bench/manifests/{tag}", method="HEAD",
                                             headers={"Accept": layout.top["mediaType"]})
                with urllib.request.urlopen(req) as r:
                    digest = r.headers["Docker-Content-Digest"]
                if digest != layout.top["digest"]:
                    sys.exit(f"bench: {host} {tag} is {digest}, not {layout.top['digest']}")

    def ours(self, layout, tags, n_targets, concurrency):
        hosts = self.servers.registries(n_targets)
        summary = os.path.join(self.work, "summary")
        if os.path.exists(summary):
            os.remove(summary)
        cmd = [self.bin, "push", "--image", f"oci:{layout.path}:v1", "--tags", ",".join(tags),
               "--concurrency", str(concurrency)]
        if n_targets == 1:
            cmd += ["--registry", hosts[0], "--repository", "bench"]
        else:
            cmd += ["--targets", "".join(f"{h}/bench\n" for h in hosts)]
        t = self.timed(cmd, self.env(GITHUB_STEP_SUMMARY=summary))
        self.check(hosts, layout, tags)
        t["requests"] = requests(summary)
        return t

    def skopeo(self, layout, tags, n_targets):
        hosts = self.servers.registries(n_targets)
        script = os.path.join(self.work, "skopeo-push")
        flags = "--quiet --dest-tls-verify=false --preserve-digests"
        if layout.top["mediaType"].endswith("index.v1+json"):
            flags += " --all"
        # skopeo sets one tag per copy: a copy per tag and target, one after another, as a
        # workflow without ecr-push would run them.
        with open(script, "w") as f:
            f.write("set -e\n")
            for host in hosts:
                for tag in tags:
                    f.write(f"skopeo copy {flags} oci:{layout.path}:v1 docker://{host}/bench:{tag}\n")
        t = self.timed(["bash", script], self.env())
        self.check(hosts, layout, tags)
        return t

    def curl(self, layout, tags, n_targets, concurrency):
        hosts = self.servers.registries(n_targets)
        files = [os.path.join(self.work, f"curl-{n}") for n in ("blobs", "children", "tops")]
        with open(files[0], "w") as blobs, open(files[1], "w") as children, open(files[2], "w") as tops:
            for host in hosts:
                base = f"http://{host}"
                for digest, path in layout.blobs:
                    blobs.write(f"{base} bench {path} {digest}\n")
                for digest, media, path in layout.manifests:
                    if "sha256:" + digest != layout.top["digest"]:
                        children.write(f"{base} bench sha256:{digest} {media} {path}\n")
                    else:
                        for tag in tags:
                            tops.write(f"{base} bench {tag} {media} {path}\n")
        # ecr-push runs `concurrency` uploads per target, every target at once.
        t = self.timed(["bash", os.path.join(self.work, "curl-push"), str(concurrency * n_targets)] + files,
                       self.env())
        self.check(hosts, layout, tags)
        return t

    def ecr(self, layout, tags, n_targets):
        endpoint = self.servers.moto()
        summary = os.path.join(self.work, "summary")
        output = os.path.join(self.work, "output")
        for path in (summary, output):
            if os.path.exists(path):
                os.remove(path)
        cmd = [self.bin, "push", "--image", f"oci:{layout.path}:v1", "--tags", ",".join(tags),
               "--create-repository", "--concurrency", str(CONCURRENCY)]
        if n_targets == 1:
            cmd += ["--repository", "bench"]
        else:
            cmd += ["--targets", "".join(f"{ECR_HOST}/bench-{i}\n" for i in range(n_targets))]
        env = self.env(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                       AWS_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true",
                       GITHUB_STEP_SUMMARY=summary, GITHUB_OUTPUT=output)
        t = self.timed(cmd, env)
        self.servers.stop()
        if n_targets == 1:
            t["calls"] = requests(summary)
        else:
            # The summary gives a total per target; the `targets` output has them by action.
            with open(output) as f:
                line = next(l for l in f if l.startswith("targets="))
            calls = {}
            for target in json.loads(line[len("targets="):]):
                for action, n in target["calls"].items():
                    calls[action] = calls.get(action, 0) + n
            t["calls"] = calls
        return t

    def point(self, curve, x, spec):
        path = os.path.join(self.work, "image")
        shutil.rmtree(path, ignore_errors=True)
        started = time.time()
        layout = build(path, curve, x, spec)
        log(f"{curve} {x}: wrote {layout.bytes / MiB:.1f} MiB in {len(layout.blobs)} blobs, "
            f"{len(layout.manifests)} manifests, in {time.time() - started:.0f} s")
        tags = ["v1"] + [f"t{i}" for i in range(2, spec.get("tags", 1) + 1)]
        n_targets = spec.get("targets", 1)
        concurrency = spec.get("concurrency", CONCURRENCY)
        sides = {"ours": lambda: self.ours(layout, tags, n_targets, concurrency),
                 "curl": lambda: self.curl(layout, tags, n_targets, concurrency)}
        if curve != "concurrency":  # skopeo has no concurrency setting
            sides["skopeo"] = lambda: self.skopeo(layout, tags, n_targets)
        order = list(sides)
        result = {"x": x, "bytes": layout.bytes, "blobs": len(layout.blobs),
                  "blob_sizes": [os.path.getsize(p) for _, p in layout.blobs],
                  "manifests": len(layout.manifests), "tags": len(tags), "targets": n_targets,
                  **{side: [] for side in sides}}
        for run in range(self.runs):
            for side in order[run % len(order):] + order[:run % len(order)]:
                t = sides[side]()
                result[side].append(t)
                log(f"  {curve} {x} run {run + 1} {side}: {t['wall']:.2f} s wall, {t['cpu']:.2f} s CPU, "
                    f"{t['rss']:.1f} MiB")
        self.servers.stop()
        if curve != "concurrency" and (curve not in ECR_MAX or x <= ECR_MAX[curve]):
            t = self.ecr(layout, tags, n_targets)
            result["ecr"] = t
            log(f"  {curve} {x} ECR API (moto): {t['wall']:.2f} s wall, {t['cpu']:.2f} s CPU, "
                f"{t['rss']:.1f} MiB; {fmt_calls(t['calls'])}")
        shutil.rmtree(path)
        return result


def requests(summary):
    """The `| Requests | A 1, B 2 |` row of the tool's job summary, by action."""
    with open(summary) as f:
        for line in f:
            m = re.match(r"^\| Requests \| (.*) \|$", line.rstrip("\n"))
            if m:
                return {a: int(n) for a, n in re.findall(r"(\w+) (\d+)", m.group(1))}
    return {}


def machine():
    with open("/proc/cpuinfo") as f:
        model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "?")
    return {"nproc": os.cpu_count(), "cpu": model, "kernel": host_platform.release(),
            "skopeo": subprocess.run(["skopeo", "--version"], capture_output=True, text=True).stdout.strip(),
            "curl": subprocess.run(["curl", "--version"], capture_output=True, text=True).stdout.split("\n")[0]}


def uptime():
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def measure(binary, runs):
    only = [c for c in os.environ.get("BENCH_CURVES", ",".join(CURVES)).split(",") if c]
    for c in only:
        if c not in POINTS:
            sys.exit(f"bench: no curve {c!r}: {', '.join(CURVES)}")
    results_path = os.path.join(OUT, "curves.json") if not QUICK else os.path.join(tempfile.gettempdir(), "curves-quick.json")
    results = {}
    if os.path.exists(results_path):
        with open(results_path) as f:
            results = json.load(f)  # curves measured earlier stay unless measured again
    results.setdefault("curves", {})
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    results["machine"] = machine()
    work = tempfile.mkdtemp(prefix="bench-curves-")
    bench = Bench(binary, runs, work)
    try:
        for curve in only:
            data = {"runs": runs, "commit": commit, "date": time.strftime("%Y-%m-%d %H:%M %Z"),
                    "load_before": uptime(), "points": []}
            for x, spec in POINTS[curve]:
                data["points"].append(bench.point(curve, x, spec))
            data["load_after"] = uptime()
            results["curves"][curve] = data
            os.makedirs(os.path.dirname(results_path), exist_ok=True)
            with open(results_path, "w") as f:
                json.dump(results, f, indent=1)
            log(f"{curve}: done ({data['load_after']})")
    finally:
        bench.servers.stop()
        shutil.rmtree(work, ignore_errors=True)
    report(results_path)


# ---------------------------------------------------------------- report

SIDES = [("ours", "ecr-push"), ("skopeo", "skopeo"), ("curl", "curl (limit)")]
COLOURS = {"ours": "tab:blue", "skopeo": "tab:orange", "curl": "tab:green", "ecr": "tab:purple"}
XLABEL = {"size": "image size (8 equal layers)", "layers": "layers (1 GiB in all)",
          "tags": "tags (one 16 MiB image)", "platforms": "platforms (16 MiB image each, one index)",
          "targets": "targets (256 MiB in 8 layers, to N registries)"}
LOGX = {"size", "layers", "tags"}


def med(point, side, key):
    runs = point.get(side) or []
    return statistics.median(t[key] for t in runs) if runs else None


def paired(point, a, b):
    """The median over runs of a's wall time / b's in the same run (the sides alternate
    within a run, so each ratio is of pushes minutes apart on the same machine)."""
    return statistics.median(x["wall"] / y["wall"] for x, y in zip(point[a], point[b]))


def xval(curve, x):
    return x / GiB if curve == "size" else x


def xlabel(curve, x):
    if curve == "size":
        return f"{x // GiB} GiB" if x >= GiB else f"{x // MiB} MiB"
    if curve == "concurrency":
        return f"{x[0]}, concurrency {x[1]}"
    return str(x)


def fmt_calls(calls):
    return ", ".join(f"{a} {n}" for a, n in sorted(calls.items())) or "none"


def fit(xs, ys):
    """Least-squares line: (slope, intercept)."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0
    return slope, my - slope * mx


def ecr_parts(sizes, part=10 * MiB):
    return sum(-(-s // part) for s in sizes)


def tables(results):
    lines = []
    m = results["machine"]
    lines.append(f"Machine: {m['nproc']} cores, {m['cpu']}; {m['skopeo']}; {m['curl']}.")
    for curve, data in results["curves"].items():
        pts = data["points"]
        lines.append("")
        lines.append(f"### {curve} ({data['date']}, {data['commit']}, {data['runs']} run(s), medians)")
        lines.append("")
        lines.append(f"Load before: `{data['load_before']}`; after: `{data['load_after']}`.")
        lines.append("")
        sides = [(s, n) for s, n in SIDES if any(p.get(s) for p in pts)]
        head = ["x", "bytes"] + [f"wall {n}" for _, n in sides] + [f"CPU {n}" for _, n in sides] + \
               [f"RSS {n}" for _, n in sides] + ["ours / curl throughput (median of runs)"]
        if curve != "concurrency":
            head.append("ours / skopeo wall (median of runs)")
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        for p in pts:
            row = [xlabel(curve, p["x"]), f"{p['bytes'] / MiB:.0f} MiB"]
            row += [f"{med(p, s, 'wall'):.2f} s" for s, _ in sides]
            row += [f"{med(p, s, 'cpu'):.2f} s" for s, _ in sides]
            row += [f"{med(p, s, 'rss'):.1f} MiB" for s, _ in sides]
            row.append(f"{paired(p, 'curl', 'ours'):.2f}")
            if curve != "concurrency":
                row.append(f"{paired(p, 'ours', 'skopeo'):.2f}")
            lines.append("| " + " | ".join(row) + " |")
        ecr = [p for p in pts if "ecr" in p]
        if ecr:
            actions = sorted({a for p in ecr for a in p["ecr"]["calls"]})
            lines.append("")
            head = ["x"] + actions + ["UploadLayerPart predicted", "client wall", "client CPU", "peak RSS"]
            lines.append("| " + " | ".join(head) + " |")
            lines.append("|" + "---|" * len(head))
            for p in ecr:
                row = [xlabel(curve, p["x"])] + [str(p["ecr"]["calls"].get(a, 0)) for a in actions]
                row.append(str(ecr_parts(p["blob_sizes"]) * p["targets"]))
                row += [f"{p['ecr']['wall']:.2f} s", f"{p['ecr']['cpu']:.2f} s", f"{p['ecr']['rss']:.1f} MiB"]
                lines.append("| " + " | ".join(row) + " |")
        reg = [p for p in pts if p.get("ours") and p["ours"][0].get("requests")]
        if reg:
            lines.append("")
            lines.append("Registry requests by ecr-push (its summary; with several targets, the first's): " +
                         "; ".join(f"{xlabel(curve, p['x'])}: {fmt_calls(p['ours'][0]['requests'])}" for p in reg))
        if curve != "concurrency" and len(pts) > 1:
            xs = [xval(curve, p["x"]) for p in pts]
            unit = {"size": "s/GiB", "layers": "s/layer", "tags": "s/tag", "platforms": "s/platform",
                    "targets": "s/target"}[curve]
            parts = []
            for s, n in sides:
                slope, icpt = fit(xs, [med(p, s, "wall") for p in pts])
                cslope, _ = fit(xs, [med(p, s, "cpu") for p in pts])
                parts.append(f"{n} wall {slope:.4g} {unit} (+{icpt:.2f} s), CPU {cslope:.4g} {unit}")
            lines.append("")
            lines.append("Least-squares slopes: " + "; ".join(parts) + ".")
    return "\n".join(lines)


def plots(results):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib import ticker
    except ImportError:
        log("bench: matplotlib is not installed (scripts/lib/bench-requirements.txt): no plots")
        return []
    def log_y(ax):
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1, 2, 5)))
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_locator(ticker.NullLocator())

    written = []
    for curve, data in results["curves"].items():
        if curve == "concurrency":
            continue
        pts = data["points"]
        xs = [xval(curve, p["x"]) for p in pts]
        fig, axes = plt.subplots(2, 2, figsize=(11, 8))
        title = f"ecr-push cost curve: {curve} ({data['date'][:10]}, {results['machine']['nproc']} cores, " \
                f"{data['runs']} run(s), medians)"
        fig.suptitle(title, fontsize=11)
        for ax, key, name in ((axes[0][0], "wall", "wall time (s)"), (axes[0][1], "cpu", "CPU, user + sys (s)"),
                              (axes[1][0], "rss", "peak RSS (MiB)")):
            for side, label in SIDES:
                if any(p.get(side) for p in pts):
                    ax.plot(xs, [med(p, side, key) for p in pts], "o-", color=COLOURS[side], label=label)
            ecr = [(xval(curve, p["x"]), p["ecr"][key]) for p in pts if "ecr" in p]
            if ecr and key != "wall":
                ax.plot(*zip(*ecr), "s--", color=COLOURS["ecr"], label="ecr-push via ECR API (moto)")
            ax.set_ylabel(name)
            if curve in LOGX and key != "rss":
                log_y(ax)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
        ax = axes[1][1]
        ecr = [p for p in pts if "ecr" in p]
        actions = sorted({a for p in ecr for a in p["ecr"]["calls"]})
        markers = "os^vD<>ph*"
        for i, action in enumerate(actions):
            ax.plot([xval(curve, p["x"]) for p in ecr], [p["ecr"]["calls"].get(action, float("nan")) for p in ecr],
                    markers[i % len(markers)] + "-", label=action)
        if len(ecr) < len(pts):  # points not pushed into moto: the part count's formula
            ax.plot(xs, [ecr_parts(p["blob_sizes"]) * p["targets"] for p in pts], ":", color="tab:brown",
                    label="UploadLayerPart, Σ⌈blob / 10 MiB⌉")
        ax.set_ylabel("ECR API calls (moto)")
        log_y(ax)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
        for ax in axes.flat:
            ax.set_xlabel(XLABEL[curve])
            if curve in LOGX:
                ax.set_xscale("log", base=2 if curve != "tags" else 10)
            ax.set_xticks(xs, [xlabel(curve, p["x"]) for p in pts])
            ax.xaxis.set_minor_locator(ticker.NullLocator())
        fig.tight_layout()
        path = os.path.join(OUT, f"curves-{curve}.png") if not QUICK else \
            os.path.join(tempfile.gettempdir(), f"curves-quick-{curve}.png")
        fig.savefig(path, dpi=80)
        plt.close(fig)
        written.append(path)
    return written


def report(path):
    with open(path) as f:
        results = json.load(f)
    for p in plots(results):
        log(f"wrote {p}")
    print(tables(results))


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--report":
        report(sys.argv[2] if len(sys.argv) > 2 else os.path.join(OUT, "curves.json"))
    elif len(sys.argv) == 3:
        measure(os.path.abspath(sys.argv[1]), int(sys.argv[2]))
    else:
        sys.exit(__doc__)
