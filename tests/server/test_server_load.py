"""The job queue (unit tests with fake work) and a bounded load test against a real uvicorn server.

Load test: 50 concurrent requests (30 valid tiny stylize jobs with adain/microast, 20 bad uploads: garbage,
truncated JPEGs, decompression bombs, text/plain, oversize) against a server with two workers and a queue of 4.
It checks: no 5xx, every refusal is 429 with a JSON message, every accepted job finishes, the process RSS stays
bounded, and the server is healthy afterwards. Numbers go to test-artifacts/server_load.json.
"""

from __future__ import annotations

import io
import json
import struct
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from PIL import Image

from impasto.server.app import ServerConfig, serve_in_thread
from impasto.server.jobs import DONE, ERROR, JobContext, JobManager, QueueFull

ROOT = Path(__file__).resolve().parents[2]
MB = 2**20


# --------------------------------------------------------------------------------------------------- JobManager

def wait_status(jm: JobManager, job_id: str, statuses: tuple[str, ...], timeout: float = 10.0) -> str:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        view = jm.get(job_id)
        assert view is not None
        if view.status in statuses:
            return view.status
        time.sleep(0.005)
    raise AssertionError(f"job {job_id} not in {statuses}: {jm.get(job_id)}")


def test_queue_is_bounded_and_results_come_back() -> None:
    gate = threading.Event()

    def work(ctx: JobContext) -> tuple[bytes, dict]:
        gate.wait(10)
        ctx.progress(0.5, "half")
        return ctx.job_id.encode(), {"n": 1}

    jm = JobManager(workers=1, queue_size=2, timeout=30)
    try:
        first = jm.submit(work)
        wait_status(jm, first, ("running",))
        waiting = [jm.submit(work), jm.submit(work)]
        assert [jm.get(j).queue_position for j in waiting] == [0, 1]
        assert not jm.has_room()
        with pytest.raises(QueueFull, match="queue limit 2"):
            jm.submit(work)
        assert jm.result(first) is None  # not done yet
        gate.set()
        for j in [first, *waiting]:
            assert wait_status(jm, j, (DONE, ERROR)) == DONE
            assert jm.result(j) == j.encode()
            view = jm.get(j)
            assert view.progress == 1.0 and view.info == {"n": 1} and view.error is None
        stats = jm.stats()
        assert stats["done"] == 3 and stats["rejected"] == 1 and stats["waiting"] == 0
    finally:
        gate.set()
        jm.shutdown()


def test_errors_and_timeouts() -> None:
    from impasto.errors import ImageError

    def bad(ctx: JobContext) -> tuple[bytes, dict]:
        raise ImageError("the photo is truncated")

    def cooperative(ctx: JobContext) -> tuple[bytes, dict]:
        while True:  # checks its deadline between steps, like a progress callback does
            time.sleep(0.01)
            ctx.progress(0.5)

    release = threading.Event()

    def stuck(ctx: JobContext) -> tuple[bytes, dict]:
        release.wait(10)  # a long torch call: no deadline check until it returns
        return b"late", {}

    jm = JobManager(workers=2, queue_size=4, timeout=0.3)
    try:
        ids = [jm.submit(bad), jm.submit(cooperative), jm.submit(stuck)]
        assert wait_status(jm, ids[0], (DONE, ERROR)) == ERROR
        assert jm.get(ids[0]).error == "the photo is truncated"
        assert wait_status(jm, ids[1], (DONE, ERROR)) == ERROR
        assert "timed out after 0.3 s" in jm.get(ids[1]).error
        t0 = time.monotonic()
        assert wait_status(jm, ids[2], (DONE, ERROR)) == ERROR  # reported at the deadline, still running
        assert time.monotonic() - t0 < 2
        assert "timed out" in jm.get(ids[2]).error
        release.set()
        time.sleep(0.1)
        assert jm.get(ids[2]).status == ERROR and jm.result(ids[2]) is None  # the late result is discarded
        assert jm.stats()["timed_out"] == 2
        # The workers keep serving after all that.
        ok = jm.submit(lambda ctx: (b"ok", {}))
        assert wait_status(jm, ok, (DONE, ERROR)) == DONE
    finally:
        release.set()
        jm.shutdown()


def test_finished_jobs_are_capped_by_count_bytes_and_age() -> None:
    def make(n: int) -> Callable[[JobContext], tuple[bytes, dict]]:
        return lambda ctx: (b"x" * n, {})

    def run(jm: JobManager, n: int) -> str:
        job_id = jm.submit(make(n))
        wait_status(jm, job_id, (DONE,))
        return job_id

    jm = JobManager(workers=1, queue_size=50, timeout=10, max_results=3, max_result_bytes=250)
    try:
        ids = [run(jm, 10) for _ in range(5)]
        assert [jm.get(j) is not None for j in ids] == [False, False, True, True, True]  # count cap
        assert jm.result(ids[0]) is None
        assert jm.result(ids[2]) == b"x" * 10  # touched: now the most recently used
        big = run(jm, 200)  # evicts the least recently used: ids[3], not ids[2]
        assert jm.get(ids[3]) is None and jm.get(ids[2]) is not None and jm.get(big) is not None
        big2 = run(jm, 200)  # 420 bytes would be kept: evict until <= 250
        assert [j for j in [*ids, big, big2] if jm.get(j) is not None] == [big2]
        assert jm.stats()["result_bytes"] == 200
    finally:
        jm.shutdown()
    jm = JobManager(workers=1, queue_size=1, timeout=10, result_ttl=0.2)
    try:
        job_id = run(jm, 10)
        assert jm.result(job_id) == b"x" * 10
        time.sleep(0.3)
        assert jm.get(job_id) is None and jm.stats()["finished_kept"] == 0  # TTL
    finally:
        jm.shutdown()


def test_shutdown_fails_waiting_jobs() -> None:
    gate = threading.Event()
    jm = JobManager(workers=1, queue_size=3, timeout=10)

    def slow(ctx: JobContext) -> tuple[bytes, dict]:
        gate.wait(5)
        return b"", {}

    first = jm.submit(slow)
    wait_status(jm, first, ("running",))
    queued = jm.submit(lambda ctx: (b"", {}))
    gate.set()
    jm.shutdown(wait=5)
    assert jm.get(queued).status == ERROR and "shutting down" in jm.get(queued).error
    with pytest.raises(RuntimeError):
        jm.submit(lambda ctx: (b"", {}))


# --------------------------------------------------------------------------------------------------- load test

def rss_mb() -> float:
    """Resident set size of this process (MB), from /proc/self/status."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("VmRSS not found in /proc/self/status")


def encode(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, quality=85)
    return buf.getvalue()


def tiny(path: Path, size: int, fmt: str = "PNG") -> bytes:
    img = Image.open(path).convert("RGB")
    img.thumbnail((size, size), Image.Resampling.LANCZOS)
    return encode(img, fmt)


def bomb_png(side: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b""))


@pytest.mark.weights
@pytest.mark.slow
def test_load_mixed_requests(data_dir: Path) -> None:
    contents = sorted((data_dir / "content").glob("*.jpg"))[:5]
    styles = sorted((data_dir / "style").glob("*.jpg"))[:5]
    assert contents and styles
    valid = [(tiny(contents[i % len(contents)], 64 + 8 * (i % 5)), tiny(styles[i % len(styles)], 80))
             for i in range(5)]
    jpg = tiny(contents[0], 96, "JPEG")
    bad = [  # (bytes, declared type, the status expected unless the queue was full)
        (jpg[: len(jpg) // 3], "image/jpeg", 422),
        (bomb_png(100_000), "image/png", 422),
        (b"this is not an image\n" * 20, "text/plain", 415),
        (b"\x00\x01garbage" * 300, "image/png", 422),
        (b"\0" * (MB + 10), "image/png", 413),
    ]
    n_requests, n_valid = 50, 30
    config = ServerConfig(port=0, workers=2, queue=4, max_upload_mb=1, timeout=60)
    samples: list[float] = []
    stop = threading.Event()

    def sample_rss() -> None:
        while not stop.is_set():
            samples.append(rss_mb())
            time.sleep(0.02)

    with serve_in_thread(config) as url, httpx.Client(base_url=url, timeout=60,
                                                      limits=httpx.Limits(max_connections=64)) as client:
        # Warm up (loads both models) so the RSS baseline includes them.
        for method in ("adain", "microast"):
            r = client.post("/v1/stylize", data={"method": method},
                            files={"content": ("c.png", valid[0][0], "image/png"),
                                   "style": ("s.png", valid[0][1], "image/png")})
            assert r.status_code == 202, r.text
            _wait_done(client, [r.json()["status_url"]], 60)
        baseline = rss_mb()
        sampler = threading.Thread(target=sample_rss, daemon=True)
        sampler.start()
        barrier = threading.Barrier(n_requests)

        def one(i: int) -> tuple[str, int, httpx.Response]:
            barrier.wait(30)
            if i % 5 < 3:  # 30 valid
                c, s = valid[i % len(valid)]
                r = client.post("/v1/stylize", data={"method": "adain" if i % 2 else "microast", "alpha": "0.8"},
                                files={"content": ("c.png", c, "image/png"), "style": ("s.png", s, "image/png")})
                return "valid", 202, r
            data, ctype, expected = bad[(i // 5 * 2 + i % 5 - 3) % len(bad)]  # 4 of each kind
            r = client.post("/v1/stylize", files={"content": ("upload", data, ctype),
                                                  "style": ("s.png", valid[0][1], "image/png")})
            return "bad", expected, r

        t0 = time.monotonic()
        with ThreadPoolExecutor(n_requests) as pool:
            results = list(pool.map(one, range(n_requests)))
        submitted = time.monotonic() - t0
        accepted = [r.json()["status_url"] for kind, _, r in results if r.status_code == 202]
        finished = _wait_done(client, accepted, 120)
        duration = time.monotonic() - t0
        stop.set()
        sampler.join(1)
        health = client.get("/healthz")
        # The server keeps accepting work after the storm.
        r = client.post("/v1/stylize", files={"content": ("c.png", valid[1][0], "image/png"),
                                              "style": ("s.png", valid[1][1], "image/png")})
        assert r.status_code == 202 and _wait_done(client, [r.json()["status_url"]], 60) == 1

    codes = Counter((kind, r.status_code) for kind, _, r in results)
    peak = max(samples + [baseline])
    report = {"requests": n_requests, "valid": n_valid, "accepted": len(accepted), "finished": finished,
              "status_codes": {f"{k}:{c}": n for (k, c), n in sorted(codes.items())},
              "rejected_429": sum(n for (k, c), n in codes.items() if c == 429),
              "rss_baseline_mb": round(baseline, 1), "rss_peak_mb": round(peak, 1),
              "submit_s": round(submitted, 2), "duration_s": round(duration, 2)}
    out = ROOT / "test-artifacts"
    out.mkdir(exist_ok=True)
    (out / "server_load.json").write_text(json.dumps(report, indent=2) + "\n")
    print(report)

    assert sum(codes.values()) == n_requests
    for kind, expected, r in results:
        assert r.status_code < 500, (kind, r.status_code, r.text)
        if r.status_code != expected:
            assert r.status_code == 429, (kind, expected, r.status_code, r.text)
        if r.status_code != 202:
            assert r.headers["content-type"].startswith("application/json")
            assert isinstance(r.json()["error"], str) and r.json()["error"]
    assert report["rejected_429"] >= 1, report  # the small queue did overflow
    assert 1 <= len(accepted) and finished == len(accepted), report  # every accepted job finished
    assert peak - baseline < 500, report  # memory stays bounded (measured: well under 200 MB)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert health.json()["jobs"]["error"] == 0


def _wait_done(client: httpx.Client, status_urls: list[str], timeout: float) -> int:
    """Poll until every job is done (asserting none failed); returns how many finished."""
    end = time.monotonic() + timeout
    done = 0
    for url in status_urls:
        while True:
            st = client.get(url).json()
            if st["status"] == "done":
                done += 1
                break
            assert st["status"] != "error", st
            assert time.monotonic() < end, f"job not finished within {timeout} s: {st}"
            time.sleep(0.05)
    return done
