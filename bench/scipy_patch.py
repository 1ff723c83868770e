"""What fastsoftmax.patch_scipy() buys real code: a scikit-learn call that uses
scipy.special.logsumexp, and SciPy's three functions called directly, timed
with SciPy's own functions and with the patched ones, interleaved, in one run.

    python bench/scipy_patch.py [--json bench/results/scipy-patch.json] [--repeats 15]

Needs scikit-learn (``pip install scikit-learn``). Pin a core for stable
figures: ``taskset -c 1 python bench/scipy_patch.py``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import numpy as np
import scipy.special

import fastsoftmax as fs
from fastsoftmax._bench import cpu_text, machine_info


def median_time(function: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def cases() -> list[tuple[str, Callable[[], object]]]:
    from sklearn.decomposition import LatentDirichletAllocation

    rng = np.random.default_rng(0)
    counts = rng.poisson(0.05, size=(2000, 2000))
    lda = LatentDirichletAllocation(n_components=20, max_iter=2, random_state=0).fit(counts)
    x = rng.standard_normal((1000, 1000)).astype(np.float32)
    small = rng.standard_normal(10)
    special = scipy.special  # looked up at each call: patched or not
    return [
        ("sklearn LatentDirichletAllocation.score, 2000 docs x 2000 words, 20 topics",
         lambda: lda.score(counts)),
        ("scipy.special.softmax(x, axis=1), float32 1000x1000", lambda: special.softmax(x, axis=1)),
        ("scipy.special.log_softmax(x, axis=1), float32 1000x1000",
         lambda: special.log_softmax(x, axis=1)),
        ("scipy.special.logsumexp(x, axis=1), float32 1000x1000",
         lambda: special.logsumexp(x, axis=1)),
        ("scipy.special.logsumexp(x), 10 values", lambda: special.logsumexp(small)),
    ]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    import sklearn

    rows = []
    for name, call in cases():
        plain, patched = [], []
        for _ in range(3):  # interleaved rounds: the machine's drift hits both
            plain.append(median_time(call, args.repeats))
            with fs.patched_scipy():
                patched.append(median_time(call, args.repeats))
        rows.append({"case": name, "scipy_s": min(plain), "patched_s": min(patched)})
        print(f"{name}: SciPy {min(plain) * 1e3:.3f} ms, patched {min(patched) * 1e3:.3f} ms, "
              f"{min(plain) / min(patched):.2f}x", flush=True)  # fmt: skip
    machine = machine_info()
    result = {
        "cpu": cpu_text(machine),
        "machine": machine,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "sklearn": sklearn.__version__,
        "fastsoftmax": fs.__version__,
        "simd_level": fs.info()["simd_level"],
        "threads": fs.get_num_threads(),
        "rows": rows,
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
