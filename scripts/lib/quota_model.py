"""A model of many jobs sharing one ECR quota, to choose how a throttled call waits
(src/push/pace.rs) before measuring the choice against the real tool
(`scripts/bench quota`).

N jobs start within `--spread` seconds of each other; each makes K calls one after
another (a release's PutImage calls: two platform manifests and three tags), each
answered after `latency`. The account is a token bucket: `rate` calls a second, holding
one second of them. A refused call waits, then goes again. Compared:
- sdk: the AWS SDK's standard retry (exponential backoff with full jitter: uniform up
  to 1 s, 2 s, 4 s, … within 20 s), 8 attempts in all, then the push fails;
- pace: AWS's "decorrelated jitter" (each wait uniform between 1 s and three times the
  last, within 4 s), without a limit on attempts: what the pace does.
Printed per N, medians over seeded runs: the calls a second admitted over the phase
(first to last admitted) against the quota, refusals per job, the slowest job's end,
and failed jobs (all runs together).

Usage: quota_model.py [--runs 30] [--spread 1]
"""
import argparse
import heapq
import random
import statistics

RATE = 10.0
LATENCY = 0.01
CALLS = 5


def run(jobs, waits, seed, spread):
    rng = random.Random(seed)
    tokens, last = RATE, 0.0
    events = [(rng.uniform(0, spread), n) for n in range(jobs)]
    heapq.heapify(events)
    state = [{"left": CALLS, "attempt": 0, "wait": 0.0, "end": 0.0, "failed": False} for _ in range(jobs)]
    admitted, refused = [], 0
    while events:
        now, n = heapq.heappop(events)
        job = state[n]
        tokens = min(RATE, tokens + (now - last) * RATE)
        last = now
        if tokens >= 1:
            tokens -= 1
            admitted.append(now)
            job.update(left=job["left"] - 1, attempt=0, wait=0.0)
            if job["left"] == 0:
                job["end"] = now + LATENCY
            else:
                heapq.heappush(events, (now + LATENCY, n))
            continue
        refused += 1
        job["attempt"] += 1
        wait = waits(job, rng)
        if wait is None:
            job.update(failed=True, end=now)
            continue
        heapq.heappush(events, (now + LATENCY + wait, n))
    span = max(admitted) - min(admitted)
    return len(admitted) / span / RATE, refused / jobs, max(j["end"] for j in state), sum(j["failed"] for j in state)


def sdk(job, rng):
    if job["attempt"] >= 8:
        return None
    return rng.random() * min(20.0, 2.0 ** (job["attempt"] - 1))


def pace(job, rng):
    first, longest = 1.0, 4.0
    job["wait"] = rng.uniform(first, min(longest, max(job["wait"], first) * 3))
    return job["wait"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--spread", type=float, default=1.0)
    args = parser.parse_args()
    print("| jobs | waits | calls/s ÷ quota | refusals per job | slowest job | failed jobs |")
    print("|---|---|---|---|---|---|")
    for jobs in (1, 4, 16, 32, 64, 128):
        for name, waits in (("sdk", sdk), ("pace", pace)):
            runs = [run(jobs, waits, seed, args.spread) for seed in range(args.runs)]
            use = statistics.median(r[0] for r in runs)
            print(f"| {jobs} | {name} | {use:.2f} | {statistics.median(r[1] for r in runs):.1f} "
                  f"| {statistics.median(r[2] for r in runs):.1f} s | {sum(r[3] for r in runs)} of {jobs * args.runs} |")


if __name__ == "__main__":
    main()
