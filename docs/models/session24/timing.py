"""Time and peak memory of one stylisation with a SANet model file, the way a user runs it (the Stylizer's default
backend and precision); run it once per model, each in its own process so the peak is its own.

    IMPASTO_WEIGHTS_DIR=../shared/weights python docs/models/session24/timing.py MODEL_FILE 2400 1600
"""

from __future__ import annotations

import resource
import sys
import time

import torch
import torch.nn.functional as F

from impasto.io.images import load_tensor
from impasto.pipeline import Stylizer


def main() -> None:
    path, w, h = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    st = Stylizer("sanet", checkpoint=path)
    photo = F.interpolate(load_tensor("../shared/data/content/AdaAttN__venice-boat.jpg"), size=(h, w), mode="bicubic")
    style = F.interpolate(load_tensor("../shared/data/style/AdaAttN__udnie.jpg"), size=(1000, 1400), mode="area")
    photo, style = photo.clamp(0, 1), style.clamp(0, 1)
    st.stylize_tensor(photo[..., :256, :256], style)  # warm-up (derived weights, allocator)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        st.stylize_tensor(photo, style)
        times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(f"{path}: {w}x{h}, {st.describe()}: best of 3 {min(times):.2f} s, peak RSS {peak:.2f} GB, "
          f"threads {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
