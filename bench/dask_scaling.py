"""fastsoftmax on dask arrays against dask.array with plain NumPy softmax code,
on 1 and 2 workers of Dask's threaded scheduler and of a dask.distributed
LocalCluster of worker processes, on an array larger than the L3 cache.

    python bench/dask_scaling.py [--rows 4096] [--cols 32768] [--json FILE]

Two chunkings: rows whole in each chunk (one ``map_blocks`` pass) and each
row cut in 4 chunks (the two-pass online-normalizer plan). Each timing is
the best of --repeats computes of the same graph; the contenders alternate.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import dask
import dask.array as da
import numpy as np

import fastsoftmax as fs
from fastsoftmax._bench import cpu_text, machine_info


def numpy_softmax(x):
    """The softmax dask users write: NumPy-style code on the dask array."""
    shifted = x - x.max(axis=-1, keepdims=True)
    e = da.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


def best_time(make, compute, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        graph = make()
        start = time.perf_counter()
        compute(graph)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--cols", type=int, default=32768)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from distributed import Client, LocalCluster

    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.rows, args.cols), dtype=np.float32) * 3
    chunk_rows = max(1, args.rows // 16)
    chunkings = {
        "rows whole": (chunk_rows, args.cols),
        "rows in 4 chunks": (chunk_rows, args.cols // 4),
    }
    contenders = {
        "fastsoftmax": lambda d: fs.softmax(d),
        "dask + NumPy code": numpy_softmax,
    }
    rows = []
    fs.set_num_threads(1)  # one thread per task: the scheduler's workers are the parallelism
    for workers in (1, 2):
        for chunk_name, chunks in chunkings.items():
            d = da.from_array(x, chunks=chunks)
            for name, make in contenders.items():
                seconds = best_time(
                    lambda make=make, d=d: make(d).sum(),  # a reduction: no 1 GB result to gather
                    lambda g, w=workers: g.compute(scheduler="threads", num_workers=w),
                    args.repeats,
                )
                rows.append({"scheduler": "threads", "workers": workers, "chunks": chunk_name,
                             "contender": name, "seconds": seconds})  # fmt: skip
                print(rows[-1], flush=True)
        with LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address=None, memory_limit=0,
        ) as cluster, Client(cluster) as client:  # fmt: skip
            for chunk_name, chunks in chunkings.items():
                d = client.persist(da.from_array(x, chunks=chunks))  # the data on the workers
                for name, make in contenders.items():
                    seconds = best_time(
                        lambda make=make, d=d: make(d).sum(),
                        lambda g, c=client: c.compute(g).result(),
                        args.repeats,
                    )
                    row = {"scheduler": "distributed", "workers": workers, "chunks": chunk_name}
                    rows.append({**row, "contender": name, "seconds": seconds})
                    print(rows[-1], flush=True)
                del d
    machine = machine_info()
    result = {
        "cpu": cpu_text(machine),
        "machine": machine,
        "python": platform.python_version(),
        "dask": dask.__version__,
        "numpy": np.__version__,
        "fastsoftmax": fs.__version__,
        "simd_level": fs.info()["simd_level"],
        "shape": [args.rows, args.cols],
        "dtype": "float32",
        "bytes": int(x.nbytes),
        "rows": rows,
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
