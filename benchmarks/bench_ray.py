"""Bulk stylisation throughput: the local engine against Ray Data on 1 and 2 nodes of this machine.

    IMPASTO_WEIGHTS_DIR=/work/shared/weights python benchmarks/bench_ray.py --photos 200 --size 512

N photos (the corpus's content images, cycled and resized to --size on the long side) x 1 painting, method adain
(distilled VGG, precision auto). Runs, each from a cold start:

* local: ``impasto stylize DIR -s PAINTING -o OUT`` in a fresh process (torch's default threads = all cores);
* ray, 1 node: :func:`impasto.bulk.local_cluster` with one node of 1 CPU, the job through
  :func:`impasto.bulk.stylize_dataset` (``address=``): one actor, one thread;
* ray, 2 nodes: two node processes of 1 CPU each: two actors, one per node.

For the Ray runs it reports the wall time, the per-image time inside the actors (read, decode, stylise, encode,
atomic write) and the rest of the wall time (start-up: connect, start the actors, load model and painting; plus
scheduling and transfers), and from these the expected throughput on M machines of C cores.
Writes ``results/ray.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))


def prepare(folder: Path, photos: int, size: int) -> tuple[Path, Path]:
    from PIL import Image

    data = Path(os.environ.get("IMPASTO_SHARED_DIR", ROOT.parent / "shared")) / "data"
    sources = sorted((data / "content").glob("*.jpg"))
    inp = folder / "photos"
    inp.mkdir()
    for i in range(photos):
        img = Image.open(sources[i % len(sources)]).convert("RGB")
        s = size / max(img.size)
        img.resize((max(1, round(img.width * s)), max(1, round(img.height * s)))).save(inp / f"p{i:04d}.jpg",
                                                                                       quality=92)
    style = folder / "udnie.jpg"
    Image.open(data / "style" / "AdaAttN__udnie.jpg").convert("RGB").save(style)
    return inp, style


def run_local(inp: Path, style: Path, out: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "impasto", "stylize", str(inp), "-s", str(style), "-o", str(out)],
                       env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(r.stderr)
    return time.perf_counter() - start


def run_ray(inp: Path, style: Path, out: Path, nodes: int, env: dict[str, str]) -> dict[str, float]:
    import ray

    from impasto.bulk import local_cluster, stylize_dataset

    with local_cluster(nodes=nodes, cpus_per_node=1, env=env) as address:
        start = time.perf_counter()
        res = stylize_dataset(inp, style, out, address=address)
        wall = time.perf_counter() - start
        ray.shutdown()
    n = res.written
    assert n == len(list(inp.iterdir())) and not res.failures, res
    workers = len(res.images_per_worker)
    per_image = res.compute_seconds / n
    return {
        "wall": wall, "per_image": per_image, "workers": workers, "nodes": len(res.images_per_node),
        "ips": n / wall,
        # what the workers' own per-image work does not explain: connecting, starting the actors, loading the model
        # and the painting, scheduling, transfers and the driver's bookkeeping
        "fixed": max(0.0, wall - n * per_image / workers),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=200)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--out", default=str(HERE / "results" / "ray.md"))
    args = ap.parse_args()
    from impasto.bulk import cluster_env
    from impasto.hardware import cpu_name

    env = {**os.environ, **cluster_env(), "PYTHONPATH": str(ROOT / "src"), "OMP_WAIT_POLICY": "PASSIVE"}
    os.environ.update(cluster_env())
    with tempfile.TemporaryDirectory(prefix="bench_ray") as tmp:
        folder = Path(tmp)
        inp, style = prepare(folder, args.photos, args.size)
        load = os.getloadavg()[0]
        local = run_local(inp, style, folder / "local", env)
        one = run_ray(inp, style, folder / "ray1", 1, env)
        two = run_ray(inp, style, folder / "ray2", 2, env)
        load_after = os.getloadavg()[0]
        same = all((folder / "ray2" / p.name).read_bytes() == p.read_bytes() for p in (folder / "ray1").iterdir())
    n = args.photos
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    cost = two["per_image"]  # seconds of one 1-thread worker per image
    lines = [
        "# Bulk stylisation: local engine vs Ray Data (`benchmarks/bench_ray.py`)",
        "",
        f"Command: `IMPASTO_WEIGHTS_DIR=/work/shared/weights python benchmarks/bench_ray.py --photos {n} "
        f"--size {args.size}` at {commit}, {cpu_name()} ({os.cpu_count()} cores), Python {platform.python_version()},"
        f" load average {load:.2f} before, {load_after:.2f} after (the machine is shared).",
        "",
        f"{n} photos ({args.size} px long side, JPEG) x 1 painting (udnie), adain on the distilled VGG, precision auto,"
        " PNG outputs. Every run starts cold (new process / new cluster, model loaded).",
        "",
        "| engine | workers x threads | nodes | wall s | images/s | s per image in a worker "
        "| start-up and overhead s |",
        "|---|---|---|---|---|---|---|",
        f"| local (`impasto stylize`) | 1 x {os.cpu_count()} | - | {local:.1f} | {n / local:.2f} | - | - |",
    ]
    for name, r in (("ray, 1 node", one), ("ray, 2 nodes", two)):
        lines.append(
            f"| {name} | {r['workers']} x 1 | {r['nodes']} | {r['wall']:.1f} | {r['ips']:.2f} | "
            f"{r['per_image']:.3f} | {r['fixed']:.1f} |"
        )
    lines += [
        "",
        f"Outputs of the 1-node and 2-node runs byte-identical: {same}.",
        "",
        "## Expected scaling",
        "",
        f"From the 2-node run: one 1-thread worker spends {two['per_image']:.3f} s per image (read, decode, stylise, "
        f"encode, atomic write); the rest of the wall time, {two['fixed']:.0f} s, is "
        "start-up and overhead (connect, start the actors, load the model and the painting, schedule, collect), "
        "counted here as paid once per job. On M machines of C cores (one worker per core, files on a shared file "
        "system fast enough, the driver handling results far faster than this):",
        "",
        "| machines x cores | expected images/s | 200 photos | 10 000 photos |",
        "|---|---|---|---|",
    ]
    for m, c in ((1, 2), (1, 16), (4, 16), (16, 16), (64, 16)):
        rate = m * c / cost
        lines.append(f"| {m} x {c} | {rate:.0f} | {two['fixed'] + 200 / rate:.0f} s | {two['fixed'] + 1e4 / rate:.0f}"
                     " s |")
    lines += [
        "",
        "The per-image cost is measured on 2 cores that both workers share with the Ray daemons and other jobs; on "
        "machines with idle cores the per-core cost is lower, and images larger than "
        f"{args.size} px cost about the pixel ratio more. The fixed start-up cost dominates small jobs: a job "
        f"needs about {two['fixed'] / cost:.0f} images per core (start-up / per-image cost) before Ray's extra cores "
        "make up for it.",
        "",
    ]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
