"""Time and peak memory of one large image at several tile sizes (how the automatic tile size was chosen).

Each tile size runs in a fresh process (so its peak resident memory is its own): the method is loaded, warmed up
on a 256 px crop, then the whole image is stylised twice; the table reports both times (the first pays for the
first-touch of the large buffers) and the process's peak RSS.

    IMPASTO_WEIGHTS_DIR=../shared/weights python benchmarks/bench_tiles.py --method adain --encoder vgg19-16x \\
        --size 4000x3000 --tiles 1024,2048,0 --precisions bf16,fp32

Tile size 0 = untiled. The content is the benchmark's photo resized to the size; the style is cached.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"

WORKER = """
import json, resource, sys, time
import torch
from impasto import Stylizer
from impasto.runtime import reuse_freed_memory
from impasto.io.images import load_tensor
import torch.nn.functional as F

args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
opts = {"encoder": args["encoder"]} if args["encoder"] else {}
reuse_freed_memory()  # as the impasto command does
st = Stylizer(args["method"], device="cpu", precision=args["precision"], **opts)
c = F.interpolate(load_tensor(args["content"]), size=(args["height"], args["width"]), mode="bilinear",
                  align_corners=False).clamp(0, 1)
st.stylize_tensor(c[..., :256, :256], args["style"])
times = []
for _ in range(2):
    t0 = time.perf_counter()
    st.stylize_tensor(c, args["style"], tile_size=args["tile"])
    times.append(time.perf_counter() - t0)
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print("RESULT", json.dumps({"times": times, "peak_mb": peak_mb}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--method", default="adain")
    ap.add_argument("--encoder", default="vgg19-16x", help="empty for methods without one (microast)")
    ap.add_argument("--size", default="4000x3000", help="WxH")
    ap.add_argument("--tiles", default="1024,2048,0", help="comma-separated tile sizes; 0 = untiled")
    ap.add_argument("--precisions", default="bf16,fp32")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--content", default=str(DATA / "content" / "pytorch-AdaIN__chicago.jpg"))
    ap.add_argument("--style", default=str(DATA / "style" / "AdaAttN__udnie.jpg"))
    a = ap.parse_args()
    width, height = (int(v) for v in a.size.lower().split("x"))
    print(f"{a.method} {a.encoder or ''} {a.size}, {a.threads} threads\n")
    print("| precision | tile | first run s | second run s | peak RSS MB |")
    print("|---|---|---|---|---|")
    for prec in a.precisions.split(","):
        for tile in (int(t) for t in a.tiles.split(",")):
            job = dict(method=a.method, encoder=a.encoder, precision=prec, tile=tile, threads=a.threads,
                       width=width, height=height, content=a.content, style=a.style)
            res = subprocess.run([sys.executable, "-c", WORKER, json.dumps(job)], capture_output=True, text=True)
            if res.returncode != 0:
                print(f"| {prec} | {tile or 'untiled'} | error: {res.stderr.strip().splitlines()[-1][:80]} | | |")
                continue
            r = json.loads(res.stdout.split("RESULT", 1)[1])
            t1, t2 = r["times"]
            print(f"| {prec} | {tile or 'untiled'} | {t1:.2f} | {t2:.2f} | {r['peak_mb']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
