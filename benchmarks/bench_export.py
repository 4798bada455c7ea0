"""Exported ONNX models against PyTorch and the Magenta int8 peer: time per 512 x 512 image and PSNR.

    IMPASTO_WEIGHTS_DIR=../shared/weights python benchmarks/bench_export.py --out benchmarks/results/export.md

For adain and microast: PyTorch float32 and --precision auto (the impasto command's default), the exported float32
graph and its dynamically quantised int8 copy under onnxruntime (2 threads), each the median of --repeats runs on the
same photo and painting; PSNR against PyTorch float32. Magenta's int8 ONNX model (impasto's peer) is timed in the
same run on the same pair.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
import torch.nn.functional as F

from impasto.export import export_onnx
from impasto.hardware import cpu_name
from impasto.io.images import load_tensor
from impasto.pipeline import Stylizer

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def timed(fn, repeats: int) -> tuple[float, object]:
    out = fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / ((a.float() - b.float()) ** 2).mean().clamp_min(1e-20)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out")
    args = ap.parse_args()
    torch.set_num_threads(2)
    c = F.interpolate(load_tensor(DATA / "content" / "pytorch-AdaIN__chicago.jpg"), size=(args.size, args.size),
                      mode="area")
    s = F.interpolate(load_tensor(DATA / "style" / "AdaAttN__udnie.jpg"), size=(args.size, args.size), mode="area")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for method in ("adain", "microast"):
            ref_st = Stylizer(method, precision="fp32")
            t_ref, ref = timed(lambda st=ref_st: st.stylize_tensor(c, s), args.repeats)
            rows.append((method, "PyTorch float32", t_ref, "-"))
            auto = Stylizer(method, precision="auto")
            t, out = timed(lambda st=auto: st.stylize_tensor(c, s), args.repeats)
            rows.append((method, f"PyTorch --precision auto ({auto.precision})", t, f"{psnr(out, ref):.1f}"))
            for f in export_onnx(method, Path(tmp) / f"{method}.onnx", int8=True):
                sess = ort.InferenceSession(str(f), opts)
                feed = {"content": c.numpy(), "style": s.numpy(), "alpha": np.ones(1, np.float32)}
                t, out = timed(lambda sess=sess, feed=feed: sess.run(None, feed)[0], args.repeats)
                kind = "ONNX int8 (dynamic)" if f.name.endswith(".int8.onnx") else "ONNX float32"
                rows.append((method, f"{kind}, {f.stat().st_size / 2**20:.1f} MB", t,
                             f"{psnr(torch.from_numpy(out), ref):.1f}"))
    mag = Stylizer("magenta")
    t, _ = timed(lambda: mag.stylize_tensor(c, s), args.repeats)
    rows.append(("magenta (peer)", "its int8 ONNX model", t, "-"))
    lines = [f"{args.size} x {args.size} px, 2 threads, median of {args.repeats} runs (after a warm-up); "
             f"CPU: {cpu_name()}. Command: `IMPASTO_WEIGHTS_DIR=../shared/weights python benchmarks/bench_export.py"
             f"{' --size ' + str(args.size) if args.size != 512 else ''}`", "",
             "| model | runtime | s / image | PSNR vs PyTorch float32 (dB) |", "|---|---|---|---|"]
    lines += [f"| {m} | {k} | {t:.3f} | {p} |" for m, k, t, p in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
