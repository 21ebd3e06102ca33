"""`scripts/bench quota`: many jobs pushing at once into one account whose ECR quotas
they share (scripts/lib/quota_sim.py in front of moto, at ECR's real rates unless
BENCH_QUOTA_SCALE says otherwise).

Each job is a realistic release: a 2-platform image index (linux/amd64, linux/arm64),
each platform three layers of mixed size (8 KiB, 256 KiB, 2 MiB) and its config, three
tags (`v1`, `build-N`, `latest`), into a repository of its own, as a monorepo's fan-out
pushes one service per job. N jobs start together, for N in 1, 4, 16 and 32, once with
the pace on and once with it off (ECR_PUSH_PACE=off), alternating which goes first, a
fresh moto and simulator for each. Reported per N and side: PutImage throughput
against its quota over the PutImage phase (from the first PutImage that reached the
account to the last admitted), throttles per push (every action), p50 and p95 push
time, failed pushes. The figures go to stdout as a Markdown table and, with --json, to
a file; with --plot, a PNG of throughput, throttles and push time against N.

Usage: bench_quota.py BINARY RUNS [--json FILE] [--plot FILE]
       bench_quota.py - 0 --replot JSON --plot FILE   (the plot again from the results)
"""
import argparse
import hashlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
JOBS = (1, 4, 16, 32)
LAYERS = (8 * 1024, 256 * 1024, 2 * 1024 * 1024)
PLATFORMS = (("linux", "amd64"), ("linux", "arm64"))


def write_release(directory, seed):
    """An OCI layout tagged v1: an index of two platform images, no blob shared."""
    rng = random.Random(seed)
    blobs = os.path.join(directory, "blobs", "sha256")
    os.makedirs(blobs)

    def put(data, media_type):
        digest = hashlib.sha256(data).hexdigest()
        with open(os.path.join(blobs, digest), "wb") as f:
            f.write(data)
        return {"mediaType": media_type, "digest": "sha256:" + digest, "size": len(data)}

    images = []
    for os_name, arch in PLATFORMS:
        layers = [put(rng.randbytes(size), "application/vnd.oci.image.layer.v1.tar") for size in LAYERS]
        config = {"architecture": arch, "os": os_name,
                  "rootfs": {"type": "layers", "diff_ids": [l["digest"] for l in layers]}}
        config = put(json.dumps(config).encode(), "application/vnd.oci.image.config.v1+json")
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": config, "layers": layers}
        image = put(json.dumps(manifest).encode(), manifest["mediaType"])
        image["platform"] = {"architecture": arch, "os": os_name}
        images.append(image)
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": images}
    entry = put(json.dumps(index).encode(), index["mediaType"])
    entry["annotations"] = {"org.opencontainers.image.ref.name": "v1"}
    with open(os.path.join(directory, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [entry]}, f)
    with open(os.path.join(directory, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)


class Account:
    """moto with the quota simulator in front of it."""

    def __init__(self, scale):
        venv = os.path.join(ROOT, ".venv", "bin")
        self.moto = subprocess.Popen([os.path.join(venv, "moto_server"), "-H", "127.0.0.1", "-p", "0"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        moto_port = None
        for line in self.moto.stderr:
            # werkzeug: " * Running on http://127.0.0.1:PORT"
            if "Running on http://127.0.0.1:" in line:
                moto_port = int(line.rsplit(":", 1)[1].split()[0].strip("/"))
                break
        if moto_port is None:
            raise SystemExit("moto_server did not start")
        threading.Thread(target=self.moto.stderr.read, daemon=True).start()
        self.sim = subprocess.Popen([os.path.join(venv, "python"), os.path.join(ROOT, "scripts/lib/quota_sim.py"),
                                     "--upstream", str(moto_port), "--scale", str(scale)],
                                    stdout=subprocess.PIPE, text=True)
        self.port = int(self.sim.stdout.readline().rsplit(":", 1)[1])

    def counts(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/__quota__") as r:
            return json.load(r)

    def stop(self):
        for p in (self.sim, self.moto):
            p.terminate()
            p.wait()


def run(binary, layouts, jobs, pace, scale):
    account = Account(scale)
    try:
        env = dict(os.environ, AWS_ENDPOINT_URL=f"http://127.0.0.1:{account.port}",
                   AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_REGION="us-east-1",
                   AWS_EC2_METADATA_DISABLED="true", ECR_PUSH_PACE=pace)
        env.pop("GITHUB_STEP_SUMMARY", None)
        results = [None] * jobs

        def job(n):
            started = time.monotonic()
            p = subprocess.run([binary, "push", "--image", f"oci:{layouts[n]}:v1", "--repository", f"svc-{n}",
                                "--tags", f"v1,build-{n},latest", "--create-repository"],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            results[n] = (p.returncode, time.monotonic() - started, p.stderr)

        threads = [threading.Thread(target=job, args=(n,)) for n in range(jobs)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return results, account.counts()
    finally:
        account.stop()


def summarise(jobs, results, counts):
    put = counts["actions"]["PutImage"]
    admitted = sorted(put["times"])
    # The PutImage phase: from the first call that reached the account (admitted or
    # refused) to the last one admitted.
    first = min(admitted[:1] + sorted(put["refused_times"])[:1])
    span = admitted[-1] - first if admitted else 0
    rate = len(admitted) / span if span > 0 else float("nan")
    refused = sum(a["refused"] for a in counts["actions"].values())
    walls = sorted(w for _, w, _ in results)
    failed = [(code, err.strip().splitlines()[-1:]) for code, _, err in results if code != 0]
    return {
        "jobs": jobs,
        "put_admitted": len(admitted),
        "put_refused": put["refused"],
        "put_span": span,
        "put_rate": rate,
        "put_quota": put["quota"],
        "throttles_per_push": refused / jobs,
        "p50": statistics.median(walls),
        "p95": walls[min(len(walls) - 1, round(0.95 * (len(walls) - 1)))],
        "failed": len(failed),
        "failures": failed[:3],
    }


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(14, 4))
    for pace, style, color in (("on", "o-", "tab:blue"), ("off", "s--", "tab:orange")):
        side = [r for r in rows if r["pace"] == pace]
        label = "pace on" if pace == "on" else "pace off (the SDK's backoff)"
        jobs = [r["jobs"] for r in side]
        left.plot(jobs, [r["put_rate"] / r["put_quota"] for r in side], style, color=color, label=label)
        middle.plot(jobs, [r["throttles_per_push"] for r in side], style, color=color, label=label)
        right.plot(jobs, [r["p95"] for r in side], style, color=color, label=label + ", p95")
        right.plot(jobs, [r["p50"] for r in side], style, color=color, alpha=0.35, label=label + ", p50")
    left.axhline(1.0, color="grey", linewidth=0.8)
    left.axhline(0.8, color="grey", linewidth=0.8, linestyle=":")
    left.set(xscale="log", xlabel="jobs pushing at once", ylabel="PutImage calls/s ÷ quota",
             title="PutImage throughput against the quota", ylim=(0, 1.5))
    left.text(1.05, 0.15, "1 job: 5 calls, within the bucket's\none-second burst (off the scale)",
              fontsize=8, color="grey")
    middle.set(xscale="log", xlabel="jobs pushing at once", ylabel="throttled calls per push",
               title="Throttles per push (every action)")
    right.set(xscale="log", xlabel="jobs pushing at once", ylabel="seconds",
              title="Push time (each job's whole push)")
    for ax in (left, middle, right):
        ax.set_xticks(JOBS, [str(j) for j in JOBS])
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("binary")
    parser.add_argument("runs", type=int)
    parser.add_argument("--json")
    parser.add_argument("--plot")
    parser.add_argument("--jobs", default=",".join(map(str, JOBS)))
    parser.add_argument("--replot", metavar="JSON", help="only the plot again, from a results file")
    args = parser.parse_args()
    if args.replot:
        with open(args.replot) as f:
            plot(json.load(f), args.plot)
        return
    scale = float(os.environ.get("BENCH_QUOTA_SCALE", "1"))
    jobs_list = [int(j) for j in args.jobs.split(",")]
    work = tempfile.mkdtemp(prefix="bench-quota-")
    layouts = []
    for n in range(max(jobs_list)):
        layouts.append(os.path.join(work, f"release-{n}"))
        write_release(layouts[-1], 20261208 + n)
    rows = []
    for jobs in jobs_list:
        per_side = {"on": [], "off": []}
        for r in range(args.runs):
            order = ("on", "off") if r % 2 == 0 else ("off", "on")
            for pace in order:
                results, counts = run(args.binary, layouts, jobs, pace, scale)
                row = summarise(jobs, results, counts)
                per_side[pace].append(row)
                print(f"N={jobs} pace {pace}: PutImage {row['put_rate']:.2f}/s of {row['put_quota']:g} "
                      f"({row['put_admitted']} in {row['put_span']:.1f} s), {row['throttles_per_push']:.1f} "
                      f"throttles/push, p50 {row['p50']:.1f} s, p95 {row['p95']:.1f} s, failed {row['failed']}"
                      + (f" {row['failures']}" if row["failed"] else ""), file=sys.stderr)
        for pace, side in per_side.items():
            row = {k: statistics.median(r[k] for r in side) for k in
                   ("put_rate", "put_span", "throttles_per_push", "p50", "p95", "failed", "put_admitted")}
            row.update(jobs=jobs, pace=pace, put_quota=side[0]["put_quota"], runs=len(side))
            rows.append(row)
    print(f"| jobs | pace | PutImage/s (quota {rows[0]['put_quota']:g}) | of quota | throttles per push "
          "| p50 push | p95 push | failed pushes |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['jobs']} | {r['pace']} | {r['put_rate']:.2f} | {r['put_rate'] / r['put_quota']:.2f} "
              f"| {r['throttles_per_push']:.1f} | {r['p50']:.1f} s | {r['p95']:.1f} s | {r['failed']:g} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    if args.plot:
        plot(rows, args.plot)


if __name__ == "__main__":
    main()
