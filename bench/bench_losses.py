"""Benchmarks of cross_entropy, softmax_grad and log_softmax_grad, and the cost of
the double-softmax check: our backends beside the NumPy reference and PyTorch.

    python -m pytest bench/bench_losses.py --benchmark-only   # pytest-benchmark groups
    taskset -c 1 python bench/bench_losses.py                 # the table in docs/losses_notes.md

(The file is named outside pytest's test_*.py pattern, so ``pytest bench/`` skips it;
name it on the command line.) Every contender's result is checked against a float64
value before it is timed. In the table, each repetition times every contender once,
in an order rotated from repetition to repetition, so a slow spell of a shared machine
falls on all of them alike; the median over repetitions is shown.

- cross_entropy: backend "cpp", "numba", "numpy" (the reference, the ratio's base)
  and ``torch.nn.functional.cross_entropy``.
- softmax_grad / log_softmax_grad: every backend runs the same NumPy code, shown once
  as "fastsoftmax"; beside it the textbook NumPy formula (the base) and PyTorch's
  backward kernels (``torch._softmax_backward_data``, what autograd calls).
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

import numpy as np

import fastsoftmax as fs
from fastsoftmax import _losses

try:
    import pytest
except ImportError:  # pragma: no cover - the script runs without pytest
    pytest = None


@dataclass(frozen=True)
class Case:
    function: str  # "cross_entropy", "cross_entropy_probabilities", "softmax_grad", ...
    shape: tuple[int, int]
    dtype: str = "float32"
    label_smoothing: float = 0.0
    where: bool = False  # a mask removing about 10% of the classes

    @property
    def label(self) -> str:
        extra = f" eps={self.label_smoothing}" if self.label_smoothing else ""
        extra += " where=" if self.where else ""
        return f"{self.function} {self.dtype} {'x'.join(map(str, self.shape))}{extra}"


CASES = [
    Case("cross_entropy", (1, 3)),
    Case("cross_entropy", (64, 1000)),
    Case("cross_entropy", (4096, 128)),
    Case("cross_entropy", (1024, 1024)),
    Case("cross_entropy", (256, 32000)),
    Case("cross_entropy", (1024, 1024), "float64"),
    Case("cross_entropy", (1024, 1024), label_smoothing=0.1),
    Case("cross_entropy", (1024, 1024), where=True),
    Case("cross_entropy_probabilities", (1024, 1024)),
    Case("cross_entropy_probabilities", (256, 32000)),
    Case("cross_entropy_probabilities", (1024, 1024), where=True),
    Case("softmax_grad", (1, 3)),
    Case("softmax_grad", (4096, 128)),
    Case("softmax_grad", (1024, 1024)),
    Case("softmax_grad", (256, 32000)),
    Case("log_softmax_grad", (1024, 1024)),
    Case("log_softmax_grad", (256, 32000)),
]
CROSS_ENTROPY = ("cpp", "numba", "numpy", "torch")
GRADIENTS = ("fastsoftmax", "numpy", "torch")


@lru_cache(maxsize=1)
def make_input(case: Case) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    rows, classes = case.shape
    x = (rng.standard_normal(case.shape) * 3).astype(case.dtype)
    data = {"x": x}
    if case.where:
        data["where"] = rng.random(case.shape) > 0.1
        data["where"][:, 0] = True
    if case.function == "cross_entropy":
        data["target"] = rng.integers(0, classes, size=rows)
        if case.where:
            data["target"][:] = 0  # a class that is kept
    elif case.function == "cross_entropy_probabilities":
        data["target"] = fs.softmax(
            rng.standard_normal(case.shape).astype(case.dtype), where=data.get("where")
        )
    else:
        forward = fs.softmax if case.function == "softmax_grad" else fs.log_softmax
        data["y"] = forward(x)
        data["grad"] = rng.standard_normal(case.shape).astype(case.dtype)
    return data


def contenders(case: Case) -> tuple[str, ...]:
    return GRADIENTS if case.function.endswith("_grad") else CROSS_ENTROPY


def prepare(case: Case, name: str) -> Callable[[], Any] | None:
    """A call with no argument conversions inside, or None if the peer is missing."""
    data = make_input(case)
    if name == "torch":
        try:
            import torch
        except ImportError:
            return None
        return _torch_call(torch, case, data)
    if case.function.startswith("cross_entropy"):
        x, target, eps = data["x"], data["target"], case.label_smoothing
        where = data.get("where")
        return lambda: fs.cross_entropy(x, target, label_smoothing=eps, where=where, backend=name)
    y, grad = data["y"], data["grad"]
    if name == "fastsoftmax":
        function = getattr(fs, case.function)
        return lambda: function(y, grad)
    if case.function == "softmax_grad":  # the textbook NumPy formulas
        return lambda: y * (grad - np.sum(grad * y, axis=-1, keepdims=True))
    return lambda: grad - np.exp(y) * np.sum(grad, axis=-1, keepdims=True)


def _torch_call(torch: Any, case: Case, data: dict[str, np.ndarray]) -> Callable[[], Any]:
    functional = torch.nn.functional
    if case.function.startswith("cross_entropy"):
        if case.where and case.function != "cross_entropy":
            return None  # PyTorch: 0 * -inf at a masked class is NaN
        # PyTorch has no where=: masked logits set to -inf, outside the timing.
        logits = data["x"] if not case.where else np.where(data["where"], data["x"], -np.inf)
        x, target = torch.from_numpy(logits), torch.from_numpy(data["target"])
        eps = case.label_smoothing
        return lambda: functional.cross_entropy(x, target, label_smoothing=eps)
    y, grad = torch.from_numpy(data["y"]), torch.from_numpy(data["grad"])
    backward = (
        torch._softmax_backward_data
        if case.function == "softmax_grad"
        else torch._log_softmax_backward_data
    )
    return lambda: backward(grad, y, -1, y.dtype)


def expected(case: Case) -> np.ndarray:
    """The value in float64 (our NumPy reference on float64 copies of the input)."""
    data = {
        k: v.astype(np.float64) if v.dtype.kind == "f" else v for k, v in make_input(case).items()
    }
    if case.function.startswith("cross_entropy"):
        return np.asarray(
            fs.cross_entropy(
                data["x"],
                data["target"],
                label_smoothing=case.label_smoothing,
                where=data.get("where"),
                backend="numpy",
            )
        )
    y, grad = data["y"], data["grad"]
    if case.function == "softmax_grad":
        return y * (grad - np.sum(grad * y, axis=-1, keepdims=True))
    return grad - np.exp(y) * np.sum(grad, axis=-1, keepdims=True)


def check(case: Case, result: Any) -> None:
    value = np.asarray(result.numpy() if hasattr(result, "numpy") else result, dtype=np.float64)
    want = expected(case)
    tol = 1e-4 if case.dtype == "float32" else 1e-10
    np.testing.assert_allclose(
        value, want, rtol=tol, atol=tol * max(1.0, float(np.abs(want).max()))
    )


# --- pytest-benchmark: one group per case, our backends and the peers side by side ---

if pytest is not None:

    @pytest.fixture(scope="module", autouse=True)
    def _torch_threads(request: Any):
        try:
            import torch
        except ImportError:
            yield
            return
        previous = torch.get_num_threads()
        torch.set_num_threads(fs.get_num_threads())
        yield
        torch.set_num_threads(previous)

    @pytest.mark.parametrize(
        ("case", "name"),
        [(c, n) for c in CASES for n in contenders(c)],
        ids=[f"{c.label}-{n}" for c in CASES for n in contenders(c)],
    )
    def test_speed(benchmark: Any, case: Case, name: str) -> None:
        call = prepare(case, name)
        if call is None:
            pytest.skip(f"{name}: not installed, or no equivalent for this case")
        check(case, call())  # outside the timing
        benchmark.group = case.label
        benchmark.name = name
        benchmark(call)

    @pytest.mark.parametrize("shape", [(1, 3), (1024, 1024), (256, 32000)], ids=str)
    @pytest.mark.parametrize("probabilities", [False, True], ids=["logits", "probabilities"])
    def test_check_cost(benchmark: Any, shape: tuple[int, int], probabilities: bool) -> None:
        x = make_input(Case("cross_entropy", shape))["x"]
        if probabilities:
            x = fs.softmax(x)
        assert _losses._looks_like_probabilities(x, None, 1, 1e-3) is probabilities
        benchmark.group = f"double-softmax check {shape}"
        benchmark.name = "probabilities" if probabilities else "logits"
        benchmark(_losses._looks_like_probabilities, x, None, 1, 1e-3)


# --- the table: python bench/bench_losses.py ---


def _time(call: Callable[[], Any], min_time: float) -> float:
    """Seconds per call: the mean of enough calls to last ``min_time``."""
    number = 1
    while True:
        start = time.perf_counter()
        for _ in range(number):
            call()
        elapsed = time.perf_counter() - start
        if elapsed >= min_time:
            return elapsed / number
        number = max(number * 2, int(number * min_time / max(elapsed, 1e-9)) + 1)


def measure(calls: dict[str, Callable[[], Any]], repeats: int, min_time: float) -> dict[str, float]:
    names = list(calls)
    for name in names:  # warm-up
        _time(calls[name], min_time / 4)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            samples[name].append(_time(calls[name], min_time))
    return {name: statistics.median(values) for name, values in samples.items()}


def format_time(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    return f"{seconds * 1e3:.2f} ms"


def main(repeats: int = 7, min_time: float = 0.05) -> None:
    fs.set_num_threads(1)
    try:
        import torch

        torch.set_num_threads(1)
        torch_version = torch.__version__
    except ImportError:
        torch_version = "not installed"
    print(
        f"numpy {np.__version__}, torch {torch_version}, fastsoftmax {fs.__version__}, "
        f"SIMD {fs.info()['simd_level']}, 1 thread, median of {repeats}"
    )
    print()
    print(
        "| case | cpp / fastsoftmax | numba | numpy reference | torch "
        "| numpy / ours | torch / ours |"
    )
    print("|---|---|---|---|---|---|---|")
    for case in CASES:
        calls = {}
        for name in contenders(case):
            call = prepare(case, name)
            if call is not None:
                check(case, call())
                calls[name] = call
        times = measure(calls, repeats, min_time)
        ours = times.get("cpp", times.get("fastsoftmax"))
        cells = [format_time(ours)]
        cells.append(format_time(times["numba"]) if "numba" in times else "-")
        cells.append(format_time(times["numpy"]))
        cells.append(format_time(times["torch"]) if "torch" in times else "-")
        cells.append(f"{times['numpy'] / ours:.2f}x")
        cells.append(f"{times['torch'] / ours:.2f}x" if "torch" in times else "-")
        print(f"| {case.label} | " + " | ".join(cells) + " |")
        sys.stdout.flush()

    print()
    print(
        "| double-softmax check | check alone, logits | check alone, probabilities "
        "| cross_entropy with check | without | share of the call |"
    )
    print("|---|---|---|---|---|---|")
    for shape in [(1, 3), (64, 1000), (4096, 128), (1024, 1024), (256, 32000)]:
        data = make_input(Case("cross_entropy", shape))
        x, target = data["x"], data["target"]
        p = fs.softmax(x)
        times = measure(
            {
                "logits": lambda x=x: _losses._looks_like_probabilities(x, None, 1, 1e-3),
                "probabilities": lambda p=p: _losses._looks_like_probabilities(p, None, 1, 1e-3),
                "with": lambda x=x, t=target: fs.cross_entropy(x, t),
                "without": lambda x=x, t=target: fs.cross_entropy(x, t, check_probabilities=False),
            },
            repeats,
            min_time,
        )
        print(
            f"| float32 {'x'.join(map(str, shape))} | {format_time(times['logits'])} | "
            f"{format_time(times['probabilities'])} | {format_time(times['with'])} | "
            f"{format_time(times['without'])} | {times['logits'] / times['with']:.1%} |"
        )
        sys.stdout.flush()


if __name__ == "__main__":
    main()
