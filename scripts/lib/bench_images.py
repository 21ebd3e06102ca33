"""Writes the benchmark's reproducible images as OCI layouts under WORK:
eight/  1 GiB in 8 random uncompressed layers of 128 MiB;
single/ one random layer of 2 GiB.
Both are tagged v1. Usage: python3 bench_images.py WORK"""
import hashlib
import json
import os
import random
import sys

work = sys.argv[1]
rng = random.Random(20261123)


def layout(name, sizes):
    blobs = f"{work}/{name}/blobs/sha256"
    os.makedirs(blobs)

    def put(data):
        digest = hashlib.sha256(data).hexdigest()
        with open(f"{blobs}/{digest}", "wb") as f:
            f.write(data)
        return {"digest": "sha256:" + digest, "size": len(data)}

    layers = []
    for size in sizes:
        h = hashlib.sha256()
        path = f"{blobs}/layer.tmp"
        with open(path, "wb") as f:
            left = size
            while left:
                chunk = rng.randbytes(min(left, 64 << 20))
                h.update(chunk)
                f.write(chunk)
                left -= len(chunk)
        os.rename(path, f"{blobs}/{h.hexdigest()}")
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar",
                       "digest": "sha256:" + h.hexdigest(), "size": size})
    config = put(json.dumps({"architecture": "amd64", "os": "linux",
                             "rootfs": {"type": "layers",
                                        "diff_ids": [l["digest"] for l in layers]}}).encode())
    manifest = put(json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": dict(config, mediaType="application/vnd.oci.image.config.v1+json"),
        "layers": layers}).encode())
    with open(f"{work}/{name}/index.json", "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [dict(
            manifest, mediaType="application/vnd.oci.image.manifest.v1+json",
            annotations={"org.opencontainers.image.ref.name": "v1"})]}, f)
    with open(f"{work}/{name}/oci-layout", "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')


layout("eight", [128 << 20] * 8)
layout("single", [2 << 30])
