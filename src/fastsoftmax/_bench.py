"""Benchmarks: ``fastsoftmax bench`` and the cases of the pytest-benchmark suite in ``bench/``.

Every implementation (our backends, and scipy, PyTorch, JAX and ONNX Runtime where
installed) is timed on the same input, in turn, in the same run: one repetition times
each of them once, in an order rotated from repetition to repetition, so a slow spell
of a shared machine falls on all of them alike. Each timing is the mean of enough calls
to last ``min_sample_time``; the table shows the median over repetitions, after a
warm-up, with half the interquartile range as the spread.

GB/s counts the bytes a softmax must move: its input read once and its output
written once. The ceiling is the copy bandwidth of this machine, measured in the same
run as ``np.copyto(dst, src)`` on arrays of the input's size: no softmax can be
faster than a copy of its input. Every result is checked against the NumPy
reference before it is timed, so a broken kernel cannot pass as a fast one.

Peers are imported only here, never by ``import fastsoftmax``.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import platform
import sys
import time
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np

FUNCTIONS = ("softmax", "log_softmax", "logsumexp")
BACKENDS = ("cpp", "numba", "numpy")
# The compiled backend writing into a preallocated out=: the kernel without the cost of
# a fresh output array (page faults and zeroing of new memory, large for big outputs).
CPP_OUT = "cpp-out"
PEERS = ("scipy", "torch", "jax")
# ONNX Runtime: session.run (a fresh output per call), and run_with_iobinding into a
# preallocated output. Kept out of PEERS, which `fastsoftmax accuracy` shares.
ORT_PEERS = ("onnxruntime", "onnxruntime-io")
BENCH_PEERS = (*PEERS, *ORT_PEERS)
COPY = "copy"
SCHEMA = "fastsoftmax-bench/1"

# The explainer's example: at 1x3 the table shows call overhead, nothing else.
EXPLAINER_LOGITS = (2.0, 1.0, 0.1)


@dataclass(frozen=True)
class Case:
    """One benchmark: a function over one axis of a random array of one dtype and shape."""

    function: str
    dtype: str
    shape: tuple[int, ...]
    axis: int = -1
    # "causal": the input of a causal attention mask, -inf above the diagonal
    # (row i keeps its first i + 1 entries).
    mask: str = ""

    @property
    def key(self) -> str:
        """Stable name, used to match cases across JSON files."""
        mask = f"/{self.mask}" if self.mask else ""
        return f"{self.function}/{self.dtype}/{self.shape_text}/axis{self.axis}{mask}"

    @property
    def shape_text(self) -> str:
        return "x".join(str(n) for n in self.shape)

    @property
    def label(self) -> str:
        axis = "" if self.axis in (-1, len(self.shape) - 1) else f" axis {self.axis}"
        mask = f" {self.mask} mask" if self.mask else ""
        return f"{self.function} {self.dtype} {self.shape_text}{axis}{mask}"

    @property
    def row_length(self) -> int:
        return self.shape[self.axis]

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def input_bytes(self) -> int:
        return self.size * np.dtype(self.dtype).itemsize

    @property
    def output_bytes(self) -> int:
        size = self.size // self.row_length if self.function == "logsumexp" else self.size
        return size * np.dtype(self.dtype).itemsize

    def make_input(self, seed: int = 0) -> np.ndarray:
        """N(0, 3) logits (the explainer's [2.0, 1.0, 0.1] for a 1x3 case)."""
        if self.shape == (1, len(EXPLAINER_LOGITS)):
            return np.array([EXPLAINER_LOGITS], dtype=self.dtype)
        rng = np.random.default_rng(seed)
        x = rng.standard_normal(self.shape, dtype=np.float32 if self.dtype == "float32" else None)
        x *= 3
        if self.mask == "causal":
            x[np.triu_indices(self.shape[0], 1, self.shape[1])] = -np.inf
        elif self.mask:
            raise ValueError(f"unknown mask {self.mask!r}")
        return x.astype(self.dtype, copy=False)


def _cases(function: str = "softmax") -> tuple[Case, ...]:
    f32 = "float32"
    return (
        Case(function, f32, (1, 3)),  # call overhead
        Case(function, f32, (1, 1000)),
        Case(function, f32, (1024, 8)),  # rows of a few classes
        Case(function, f32, (1024, 16)),
        Case(function, f32, (64, 1000)),
        Case(function, f32, (4096, 128)),  # attention rows
        Case(function, f32, (1024, 1024)),
        Case(function, f32, (1024, 1024), mask="causal"),  # masked attention rows
        Case(function, f32, (256, 32000)),  # an LLM vocabulary
        Case(function, f32, (32, 131072)),
        Case(function, f32, (4, 4_000_000)),  # rows larger than the L2 and L3 caches
        Case(function, "float64", (1024, 1024)),
        Case(function, f32, (1024, 1024), axis=0),
    )


CASES = _cases()
QUICK_SHAPES = ("1x3", "64x1000", "4096x128", "1024x1024", "256x32000")


def select_cases(
    functions: Sequence[str] = ("softmax",),
    dtype: str | None = None,
    quick: bool = False,
    patterns: Sequence[str] = (),
) -> list[Case]:
    """The cases to run: every function of ``functions``, all in ``dtype`` if given,
    the quick subset, and only those whose label contains one of ``patterns``."""
    chosen: list[Case] = []
    for function in functions:
        for case in _cases(function):
            if quick and (case.shape_text not in QUICK_SHAPES or case.axis != -1 or case.mask):
                continue
            if quick and case.dtype != "float32" and dtype is None:
                continue
            if dtype is not None:
                case = replace(case, dtype=dtype)
            if patterns and not any(p in case.label or p in case.key for p in patterns):
                continue
            if case not in chosen:
                chosen.append(case)
    return chosen


# --------------------------------------------------------------------------------------
# Implementations


@dataclass
class Contender:
    """One implementation: ``prepare(case, x)`` returns a call without arguments that
    computes ``case.function`` of ``x``; ``to_numpy`` turns its result into an ndarray."""

    name: str
    kind: str  # "backend", "peer" or "copy"
    prepare: Callable[[Case, np.ndarray], Callable[[], Any]]
    to_numpy: Callable[[Any], np.ndarray] = np.asarray
    version: str = ""
    # For a peer whose thread count is fixed when the call is prepared (ONNX Runtime's
    # session): sets the count later prepares use, and returns the previous one.
    set_threads: Callable[[int | None], int | None] | None = None


def _as_users_call(
    name: str, function: Callable[..., Any], x: np.ndarray, axis: int, out: Any = None
) -> Callable[[], Any]:
    """``function`` on ``x`` called as users call it: the default backend without
    ``backend=`` (a call naming its backend may take a slower path), and with plain
    keywords, never through a ``**`` dict (which costs more than a 1x3 softmax)."""
    import fastsoftmax as fs

    if name == fs.backends()[0]:
        if out is None:
            return lambda: function(x, axis=axis)
        return lambda: function(x, axis=axis, out=out)
    if out is None:
        return lambda: function(x, axis=axis, backend=name)
    return lambda: function(x, axis=axis, out=out, backend=name)


def output_like(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """An empty C-contiguous array of x's dtype for a contender's preallocated
    output, at x's address modulo 64. Every contender that writes into one
    then stores at the same alignment (a 64-byte store that crosses a cache
    line costs more, and by how much differs from one kernel to another),
    the one NumPy gave the input: for large arrays usually 16 bytes past a
    line, not a lucky or unlucky draw of its own."""
    size, itemsize = math.prod(shape), x.dtype.itemsize
    if x.ctypes.data % itemsize:
        raise ValueError("x is not aligned to its item size: no output can share its offset")
    block = np.empty(size + 64 // itemsize, dtype=x.dtype)
    start = ((x.ctypes.data - block.ctypes.data) % 64) // itemsize
    return block[start : start + size].reshape(shape)


def _backend_contender(name: str) -> Contender:
    import fastsoftmax as fs

    def prepare(case: Case, x: np.ndarray) -> Callable[[], Any]:
        function = getattr(fs, case.function)
        return _as_users_call(name, function, x, case.axis)

    return Contender(name, "backend", prepare, version=fs.__version__)


def _backend_out_contender(name: str) -> Contender:
    import fastsoftmax as fs

    def prepare(case: Case, x: np.ndarray) -> Callable[[], Any]:
        function = getattr(fs, case.function)
        axis = case.axis
        shape = x.shape
        if case.function == "logsumexp":
            shape = tuple(n for i, n in enumerate(x.shape) if i != axis % x.ndim)
        return _as_users_call(name, function, x, axis, output_like(x, shape))

    return Contender(f"{name}-out", "backend", prepare, version=fs.__version__)


def _copy_contender() -> Contender:
    def prepare(case: Case, x: np.ndarray) -> Callable[[], Any]:
        source = x.copy()
        destination = output_like(source, source.shape)
        return lambda: np.copyto(destination, source)

    return Contender(COPY, "copy", prepare, to_numpy=lambda _: np.empty(0))


def _scipy_contender() -> Contender:
    import scipy
    import scipy.special

    def prepare(case: Case, x: np.ndarray) -> Callable[[], Any]:
        function = getattr(scipy.special, case.function)
        axis = case.axis
        return lambda: function(x, axis=axis)

    return Contender("scipy", "peer", prepare, version=scipy.__version__)


def _torch_contender() -> Contender:
    import torch

    def prepare(case: Case, x: np.ndarray) -> Callable[[], Any]:
        tensor = torch.from_numpy(x)  # shares the memory: nothing converted per call
        function = getattr(torch, case.function)
        dim = case.axis
        return lambda: function(tensor, dim)

    def to_numpy(result: Any) -> np.ndarray:
        return result.numpy()

    return Contender("torch", "peer", prepare, to_numpy, version=torch.__version__)


def _jax_contender() -> Contender:
    import jax

    # float64 cases need it; float32 inputs stay float32.
    jax.config.update("jax_enable_x64", True)

    def prepare(case: Case, x: np.ndarray) -> Callable[[], Any]:
        function = jax.jit(getattr(jax.nn, case.function), static_argnames="axis")
        on_device = jax.device_put(x)  # placed once, outside the timing
        axis = case.axis
        # JAX dispatches asynchronously: wait for the result inside the timing.
        return lambda: function(on_device, axis=axis).block_until_ready()

    return Contender("jax", "peer", prepare, version=jax.__version__)


ONNX_OPSET = 18


def onnx_model(case: Case) -> Any:
    """``case.function`` over ``case.axis`` as an ONNX model (opset 18) of one node, in
    memory: Softmax, LogSoftmax, or ReduceLogSumExp with keepdims=0."""
    import onnx
    from onnx import helper, numpy_helper

    element = helper.np_dtype_to_tensor_dtype(np.dtype(case.dtype))
    axis = case.axis
    initializers = []
    if case.function == "logsumexp":
        initializers.append(numpy_helper.from_array(np.array([axis], dtype=np.int64), "axes"))
        node = helper.make_node("ReduceLogSumExp", ["x", "axes"], ["y"], keepdims=0)
        out_shape = [n for i, n in enumerate(case.shape) if i != axis % len(case.shape)]
    else:
        op = {"softmax": "Softmax", "log_softmax": "LogSoftmax"}[case.function]
        node = helper.make_node(op, ["x"], ["y"], axis=axis)
        out_shape = list(case.shape)
    graph = helper.make_graph(
        [node],
        case.function,
        [helper.make_tensor_value_info("x", element, list(case.shape))],
        [helper.make_tensor_value_info("y", element, out_shape)],
        initializer=initializers,
    )
    opset = helper.make_opsetid("", ONNX_OPSET)
    model = helper.make_model(graph, opset_imports=[opset])
    # The oldest IR version that has opset 18 (8), not onnx's newest: every
    # onnxruntime that runs opset 18 accepts it.
    model.ir_version = min(onnx.IR_VERSION, helper.find_min_ir_version_for([opset], True))
    return model


def _onnxruntime_contender(io_binding: bool = False) -> Contender:
    import onnx  # noqa: F401  (reported as not installed without it)
    import onnxruntime as ort

    import fastsoftmax as fs

    threads: dict[str, int | None] = {"n": None}
    last_output: list[weakref.ref[np.ndarray]] = []  # the prepared call holds the array

    def set_threads(n: int | None) -> int | None:
        previous, threads["n"] = threads["n"], n
        return previous

    def prepare(case: Case, x: np.ndarray) -> Callable[[], Any]:
        options = ort.SessionOptions()
        # The bench's thread count (thread_setting sets fastsoftmax's to it too);
        # ONNX Runtime's can only be set when the session is created.
        n = threads["n"] or fs.get_num_threads()
        options.intra_op_num_threads = n
        options.inter_op_num_threads = n
        session = ort.InferenceSession(
            onnx_model(case).SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
        if not io_binding:
            run, feed = session.run, {"x": x}
            return lambda: run(None, feed)
        out_shape = tuple(session.get_outputs()[0].shape)
        out = output_like(x, out_shape)
        binding = session.io_binding()
        binding.bind_cpu_input("x", x)
        binding.bind_output("y", "cpu", 0, out.dtype.type, out.shape, out.ctypes.data)
        last_output[:] = [weakref.ref(out)]
        run_bound = session.run_with_iobinding

        def call(x: np.ndarray = x, out: np.ndarray = out) -> None:  # both kept alive
            run_bound(binding)

        return call

    def to_numpy(result: Any) -> np.ndarray:
        return last_output[0]() if io_binding else result[0]

    return Contender(
        "onnxruntime-io" if io_binding else "onnxruntime",
        "peer",
        prepare,
        to_numpy,
        version=ort.__version__,
        set_threads=set_threads,
    )


_PEER_LOADERS = {
    "scipy": _scipy_contender,
    "torch": _torch_contender,
    "jax": _jax_contender,
    "onnxruntime": _onnxruntime_contender,
    "onnxruntime-io": lambda: _onnxruntime_contender(io_binding=True),
}


def load_contenders(names: Sequence[str] | None = None) -> tuple[list[Contender], dict[str, str]]:
    """The implementations of ``names`` (default: every backend and every installed
    peer) that work here, and why each of the others does not."""
    import fastsoftmax as fs

    wanted = (
        list(names) if names is not None else [*BACKENDS[:1], CPP_OUT, *BACKENDS[1:], *BENCH_PEERS]
    )
    contenders: list[Contender] = []
    missing: dict[str, str] = {}
    for name in wanted:
        if name == CPP_OUT:
            if "cpp" in fs.backends():
                contenders.append(_backend_out_contender("cpp"))
            else:
                missing[name] = "backend not available here"
        elif name in BACKENDS:
            if name in fs.backends():
                contenders.append(_backend_contender(name))
            else:
                missing[name] = "backend not available here"
        elif name in _PEER_LOADERS:
            try:
                with warnings_quiet():
                    contenders.append(_PEER_LOADERS[name]())
            except Exception as error:  # ImportError, or a broken install
                missing[name] = f"not installed ({type(error).__name__}: {error})"
        else:
            raise ValueError(
                f"unknown implementation {name!r}; choose from "
                f"{', '.join([*BACKENDS, CPP_OUT, *BENCH_PEERS])}"
            )
    return contenders, missing


@contextlib.contextmanager
def warnings_quiet() -> Iterator[None]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def reference(case: Case, x: np.ndarray) -> np.ndarray:
    """The NumPy reference backend's result, in the case's dtype."""
    import fastsoftmax as fs

    return getattr(fs, case.function)(x, axis=case.axis, backend="numpy")


def tolerance(case: Case, kind: str) -> float:
    """Relative tolerance of the check before timing.

    Our backends are held to a few times the accuracy bound (README, "Accuracy
    contract"); peers
    get more room because PyTorch and others sum long float32 rows in plain
    float32 (about 1e-3 relative error at 4M elements). Either is far below what
    a broken kernel produces.
    """
    single = case.dtype in ("float32", "float16")
    if kind == "peer":
        return 5e-3 if single else 1e-9
    return 1e-4 if single else 1e-11


def check(case: Case, result: np.ndarray, expected: np.ndarray, kind: str) -> None:
    """Raise AssertionError unless ``result`` matches the reference."""
    result = np.asarray(result)
    if result.shape != expected.shape:
        raise AssertionError(f"{case.label}: shape {result.shape}, expected {expected.shape}")
    rtol = tolerance(case, kind)
    # log_softmax and logsumexp values near 0 are compared on the scale of 1.
    atol = 0.0 if case.function == "softmax" else rtol
    np.testing.assert_allclose(
        result.astype(np.float64),
        expected.astype(np.float64),
        rtol=rtol,
        atol=atol,
        err_msg=case.label,
    )


# --------------------------------------------------------------------------------------
# Timing


@dataclass
class Measurement:
    name: str
    kind: str
    number: int = 1  # calls per sample
    samples: list[float] = field(default_factory=list)  # seconds per call
    error: str = ""

    def stats(self) -> dict[str, float]:
        if not self.samples:
            return {}
        q1, median, q3 = np.percentile(self.samples, [25, 50, 75])
        return {
            "median": float(median),
            "q1": float(q1),
            "q3": float(q3),
            "min": float(min(self.samples)),
        }

    @property
    def median(self) -> float:
        return float(np.median(self.samples)) if self.samples else math.nan

    @property
    def spread(self) -> float:
        """Half the interquartile range over the median."""
        if len(self.samples) < 2:
            return math.nan
        q1, q3 = np.percentile(self.samples, [25, 75])
        return float((q3 - q1) / 2 / self.median)


@dataclass
class Settings:
    repeats: int = 15
    min_sample_time: float = 0.02  # seconds per timed block
    warmup_time: float = 0.1
    max_case_time: float = 30.0  # repetitions stop early past this (huge shapes)

    @classmethod
    def quick(cls) -> Settings:
        return cls(repeats=5, min_sample_time=0.004, warmup_time=0.01, max_case_time=3.0)


def _time_block(call: Callable[[], Any], number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        call()
    return (time.perf_counter() - start) / number


def measure_case(
    case: Case,
    contenders: Sequence[Contender],
    settings: Settings,
    on_repeat: Callable[[], None] | None = None,
) -> list[Measurement]:
    """Check, warm up, calibrate, then time every contender round-robin."""
    x = case.make_input()
    expected = reference(case, x)
    calls: list[tuple[Measurement, Callable[[], Any]]] = []
    for contender in [*contenders, _copy_contender()]:
        measurement = Measurement(contender.name, contender.kind)
        try:
            with warnings_quiet():
                call = contender.prepare(case, x)
                result = call()  # also compiles a jitted peer
            if contender.kind != "copy":
                check(case, contender.to_numpy(result), expected, contender.kind)
            del result
            # Warm up, and learn how many calls make a sample last min_sample_time.
            started = time.perf_counter()
            single = _time_block(call, 1)
            while time.perf_counter() - started < settings.warmup_time:
                single = min(single, _time_block(call, 1))
            measurement.number = max(1, math.ceil(settings.min_sample_time / max(single, 1e-9)))
        except Exception as error:  # a peer that cannot do this case, or a wrong result
            measurement.error = f"{type(error).__name__}: {str(error).strip().splitlines()[0]}"
            calls.append((measurement, lambda: None))
            continue
        calls.append((measurement, call))
    del expected

    timed = [(m, c) for m, c in calls if not m.error]
    gc_was_enabled = gc.isenabled()
    gc.disable()
    started = time.perf_counter()
    try:
        for repeat in range(settings.repeats):
            shift = repeat % max(len(timed), 1)
            for measurement, call in timed[shift:] + timed[:shift]:
                measurement.samples.append(_time_block(call, measurement.number))
            if on_repeat is not None:
                on_repeat()
            if repeat >= 2 and time.perf_counter() - started > settings.max_case_time:
                if on_repeat is not None:
                    for _ in range(settings.repeats - repeat - 1):
                        on_repeat()
                break
    finally:
        if gc_was_enabled:
            gc.enable()
    return [m for m, _ in calls]


def summarize(case: Case, measurements: Sequence[Measurement]) -> dict[str, Any]:
    """The JSON record of one case: every sample, and the derived columns."""
    by_name = {m.name: m for m in measurements}
    moved = case.input_bytes + case.output_bytes
    copy = by_name.get(COPY)
    copy_gbps = 2 * case.input_bytes / copy.median / 1e9 if copy and copy.samples else math.nan
    numpy_time = by_name["numpy"].median if "numpy" in by_name else math.nan
    results = []
    for m in measurements:
        record: dict[str, Any] = {"implementation": m.name, "kind": m.kind}
        if m.error:
            record["error"] = m.error
        else:
            gbps = (2 * case.input_bytes if m.kind == "copy" else moved) / m.median / 1e9
            record.update(
                number=m.number,
                samples=m.samples,
                **m.stats(),
                spread=m.spread,
                gbps=gbps,
                fraction_of_copy=gbps / copy_gbps,
                speedup_vs_numpy=numpy_time / m.median,
            )
        results.append(record)
    return {
        "key": case.key,
        "label": case.label,
        "function": case.function,
        "dtype": case.dtype,
        "shape": list(case.shape),
        "axis": case.axis,
        "mask": case.mask,
        "row_length": case.row_length,
        "input_bytes": case.input_bytes,
        "output_bytes": case.output_bytes,
        "copy_gbps": copy_gbps,
        "results": results,
    }


# --------------------------------------------------------------------------------------
# The machine, and how quiet it was


def _cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith(("model name", "Model", "Hardware")):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _cpu_family_model() -> dict[str, int]:
    """x86: the ``cpu family`` and ``model`` numbers of /proc/cpuinfo (which name the
    microarchitecture: AMD family 25 is Zen 3 and Zen 4); empty elsewhere."""
    found: dict[str, int] = {}
    keys = {"cpu family": "cpu_family", "model": "cpu_model"}
    with contextlib.suppress(OSError, ValueError), open("/proc/cpuinfo") as f:
        for line in f:
            key, _, value = line.partition(":")
            key = key.strip()
            if key in keys and keys[key] not in found:
                found[keys[key]] = int(value.strip())
            elif not key and found:
                break  # the end of the first CPU's block
    return found


def _cpu_flags() -> list[str]:
    interesting = {"sse2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "neon", "asimd"}
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith(("flags", "Features")):
                return sorted(interesting & set(line.split(":", 1)[1].split()))
    return []


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def _caches() -> dict[str, str]:
    caches = {}
    base = "/sys/devices/system/cpu/cpu0/cache"
    with contextlib.suppress(OSError):
        for index in sorted(os.listdir(base)):
            path = os.path.join(base, index)
            with contextlib.suppress(OSError):
                level, kind, size = (
                    _read(os.path.join(path, f)) for f in ("level", "type", "size")
                )
                name = f"L{level}" + (
                    "d" if kind == "Data" else "i" if kind == "Instruction" else ""
                )
                caches[name] = size
    return caches


def _version(distribution: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    import fastsoftmax as fs

    info = fs.info()
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu": _cpu_model(),
        **_cpu_family_model(),
        "machine": platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
        "cpus": os.cpu_count(),
        "affinity": affinity,
        "flags": _cpu_flags(),
        "caches": _caches(),
        "simd_level": info["simd_level"],
        "simd_levels": list(info["simd_levels"]),
        "backends": list(info["backends"]),
        "kernel_tuning": _kernel_tuning(),
    }


def _kernel_tuning() -> dict[str, Any]:
    """The compiled kernels' CPU-dependent settings as the run found them (the
    CPU's defaults unless a caller changed them), which the timings depend on
    (kernel_table.h; empty without the extension)."""
    try:
        from fastsoftmax import _core
    except ImportError:
        return {}
    return {
        "group_bytes": _core.group_bytes(),
        "online_base_bytes": _core.online_base_bytes(),
        "block_rows_in_groups": _core.block_rows_in_groups(),
        "online_row_bytes": _core.online_row_bytes(),
    }


def versions() -> dict[str, str | None]:
    import fastsoftmax as fs

    found = {"python": platform.python_version(), "fastsoftmax": fs.__version__}
    for name in ("numpy", "scipy", "numba", "torch", "jax", "jaxlib", "onnxruntime", "onnx"):
        found[name] = _version(name)
    return found


def _cpu_times() -> tuple[float, float] | None:
    """(steal, total) jiffies of all CPUs, Linux only: time the hypervisor gave away."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/stat") as f:
            values = [float(v) for v in f.readline().split()[1:]]
        return values[7], sum(values[:8])
    return None


def _load_average() -> float | None:
    with contextlib.suppress(OSError, AttributeError):
        return os.getloadavg()[0]
    return None


NOISY_SPREAD = 0.05


def noise_report(
    records: Sequence[dict[str, Any]],
    cpu_before: tuple[float, float] | None,
    cpu_after: tuple[float, float] | None,
    load: float | None,
) -> dict[str, Any]:
    spreads = [
        r["spread"]
        for c in records
        for r in c["results"]
        if "spread" in r and r["spread"] == r["spread"]
    ]
    above = sum(s > NOISY_SPREAD for s in spreads)
    steal = None
    if cpu_before and cpu_after and cpu_after[1] > cpu_before[1]:
        steal = (cpu_after[0] - cpu_before[0]) / (cpu_after[1] - cpu_before[1])
    noisy = above > max(1, len(spreads) // 10) or (steal is not None and steal > 0.02)
    notes = []
    if above:
        notes.append(f"{above} of {len(spreads)} timings spread by more than {NOISY_SPREAD:.0%}")
    if steal is not None and steal > 0.005:
        notes.append(f"the hypervisor took {steal:.1%} of CPU time (steal)")
    if load is not None and load > 1.0:
        notes.append(f"load average {load:.2f} at the start")
    return {
        "noisy": noisy,
        "timings_above_spread": above,
        "timings": len(spreads),
        "spread_threshold": NOISY_SPREAD,
        "steal_fraction": steal,
        "load_average": load,
        "notes": notes,
    }


# --------------------------------------------------------------------------------------
# Threads and pinning


@contextlib.contextmanager
def thread_setting(threads: int, pin: bool = True) -> Iterator[list[int] | None]:
    """Run with ``threads`` threads in fastsoftmax (and PyTorch, once imported), the
    process pinned to ``threads`` CPUs of its affinity set (the last ones: CPU 0 takes
    most interrupts); everything restored afterwards."""
    import fastsoftmax as fs

    previous_threads = fs.get_num_threads()
    previous_affinity = None
    pinned = None
    if pin and hasattr(os, "sched_setaffinity"):
        previous_affinity = os.sched_getaffinity(0)
        cpus = sorted(previous_affinity)
        if threads < len(cpus):
            pinned = cpus[-threads:]
            os.sched_setaffinity(0, pinned)
    fs.set_num_threads(threads)
    try:
        yield pinned
    finally:
        fs.set_num_threads(previous_threads)
        if previous_affinity is not None:
            os.sched_setaffinity(0, previous_affinity)


def _set_peer_threads(contenders: Sequence[Contender], threads: int) -> dict[str, Any]:
    """Give the peers ``threads`` threads: PyTorch now, ONNX Runtime in the sessions
    prepared from now on; what to restore afterwards."""
    previous: dict[str, Any] = {}
    if any(c.name == "torch" for c in contenders):
        import torch

        previous["torch"] = torch.get_num_threads()
        torch.set_num_threads(threads)
    for c in contenders:
        if c.set_threads is not None:
            previous[c.name] = (c.set_threads, c.set_threads(threads))
    return previous


def _restore_peer_threads(previous: dict[str, Any]) -> None:
    for name, value in previous.items():
        if name == "torch":
            import torch

            torch.set_num_threads(value)
        else:
            set_threads, before = value
            set_threads(before)


# --------------------------------------------------------------------------------------
# Progress


class _Progress:
    """tqdm when installed and wanted, else one plain line per case on stderr."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.bar = None
        self.enabled = enabled
        if enabled:
            try:
                from tqdm import tqdm

                self.bar = tqdm(
                    total=total, unit="rep", file=sys.stderr, leave=False, dynamic_ncols=True
                )
            except ImportError:
                pass
        self.count = 0
        self.total = total

    def describe(self, text: str) -> None:
        if self.bar is not None:
            self.bar.set_description_str(text)
        elif self.enabled:
            print(f"  [{self.count}/{self.total}] {text}", file=sys.stderr, flush=True)

    def step(self) -> None:
        self.count += 1
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# --------------------------------------------------------------------------------------
# Running


def run(
    cases: Sequence[Case],
    implementations: Sequence[str] | None = None,
    threads: int = 1,
    settings: Settings | None = None,
    progress: bool = True,
    sweep: Sequence[Case] = (),
    pin: bool = True,
    command: Sequence[str] = (),
) -> dict[str, Any]:
    """Measure ``cases`` (and the plot's ``sweep``); the JSON document of the run."""
    settings = settings or Settings()
    contenders, missing = load_contenders(implementations)
    load = _load_average()
    cpu_before = _cpu_times()
    bar = _Progress(settings.repeats * (len(cases) + len(sweep)), progress)
    with thread_setting(threads, pin) as pinned:
        previous = _set_peer_threads(contenders, threads)
        try:
            records, sweep_records = [], []
            for group, target in ((cases, records), (sweep, sweep_records)):
                for case in group:
                    bar.describe(case.label)
                    target.append(
                        summarize(case, measure_case(case, contenders, settings, bar.step))
                    )
        finally:
            _restore_peer_threads(previous)
            bar.close()
    cpu_after = _cpu_times()
    document = {
        "schema": SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": list(command),
        "machine": machine_info(),
        "versions": versions(),
        "settings": {
            "threads": threads,
            "pinned_cpus": pinned,
            "repeats": settings.repeats,
            "min_sample_time": settings.min_sample_time,
            "warmup_time": settings.warmup_time,
            "implementations": [c.name for c in contenders],
            "unavailable": missing,
            "output_alignment": "input's address modulo 64",
        },
        "cases": records,
    }
    if sweep_records:
        document["sweep"] = sweep_records
    document["noise"] = noise_report(records + sweep_records, cpu_before, cpu_after, load)
    return document


SWEEP_TOTAL = 1 << 22


def sweep_cases(
    quick: bool = False, dtype: str | None = None, total: int = SWEEP_TOTAL
) -> list[Case]:
    """softmax over rows of 2^4 .. 2^22 elements, ``total`` elements in all (16 MB of
    float32: more than the L3 cache of most machines), for the plot."""
    exponents = range(4, 23, 3) if quick else range(4, 23)
    return [
        Case("softmax", dtype or "float32", (total >> e, 1 << e))
        for e in exponents
        if 1 << e <= total
    ]


# --------------------------------------------------------------------------------------
# Output


def _number(value: float | None) -> float:
    """NaN for a value missing from a JSON file (written as null)."""
    return math.nan if value is None else float(value)


def format_time(seconds: float | None) -> str:
    """Three significant digits in s, ms, us or ns."""
    seconds = _number(seconds)
    if math.isnan(seconds):
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)):
        if seconds >= scale * 0.9995 or unit == "ns":
            value = seconds / scale
            digits = 0 if value >= 99.95 else 1 if value >= 9.995 else 2
            return f"{value:.{digits}f} {unit}"
    raise AssertionError("unreachable")


def _ratio(value: float | None) -> str:
    value = _number(value)
    return "-" if value != value else f"{value:.2f}x"


def _percent(value: float | None) -> str:
    value = _number(value)
    return "-" if value != value else f"{value:.0%}" if value >= 0.1 else f"{value:.1%}"


def _gbps(value: float | None) -> str:
    value = _number(value)
    return "-" if value != value else f"{value:.3g}"


def _spread(value: float | None) -> str:
    value = _number(value)
    return "-" if value != value else f"±{value:.1%}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        cells = [
            str(c).ljust(w) if i == 0 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(row, widths))
        ]
        return "  ".join(cells).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


COLUMNS = ("implementation", "time/call", "spread", "GB/s", "of copy", "vs numpy")


def header_lines(document: dict[str, Any]) -> list[str]:
    m, v, s = document["machine"], document["versions"], document["settings"]
    pinned = s.get("pinned_cpus")
    threads = f"{s['threads']} thread{'s' if s['threads'] > 1 else ''}"
    if pinned:
        threads += f" (pinned to CPU {', '.join(map(str, pinned))})"
    lines = [
        f"fastsoftmax {v['fastsoftmax']}, SIMD {m['simd_level']}, {threads}",
        f"CPU: {cpu_text(m)}, {m['system']}",
        versions_text(v),
    ]
    unavailable = s.get("unavailable") or {}
    if unavailable:
        lines.append("not measured: " + "; ".join(f"{k} ({val})" for k, val in unavailable.items()))
    return lines


def display_name(name: str, kind: str) -> str:
    if kind == "copy":
        return "copy (np.copyto)"
    if kind == "peer":
        return f"{name} (peer)"
    if name.endswith("-out"):
        return f"{name[:-4]} (out=)"
    return name


def _result_row(result: dict[str, Any]) -> list[str]:
    if "error" in result:
        return [result["implementation"], "failed", "", "", "", result["error"][:60]]
    name = display_name(result["implementation"], result["kind"])
    return [
        name,
        format_time(result["median"]),
        _spread(result["spread"]),
        _gbps(result["gbps"]),
        _percent(result["fraction_of_copy"]),
        "" if result["kind"] == "copy" else _ratio(result["speedup_vs_numpy"]),
    ]


def render(document: dict[str, Any], markdown: bool = False) -> str:
    """The report: per case, every implementation's time, spread, GB/s, fraction of
    the copy bandwidth and speedup over the NumPy reference (markdown: wide tables)."""
    out = header_lines(document)
    if markdown:
        out = [f"{line}  " for line in out]
        out += ["", render_wide(document["cases"])]
    else:
        for case in document["cases"]:
            moved = (case["input_bytes"] + case["output_bytes"]) / 1e6
            out += [
                "",
                f"{case['label']}  ({moved:.3g} MB read+written; "
                f"copy {_gbps(case['copy_gbps'])} GB/s)",
                _table(COLUMNS, [_result_row(r) for r in case["results"]], markdown=False),
            ]
    out += ["", *notes(document)]
    return "\n".join(out)


def _columns(cases: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    """(implementation, kind) in the order measured, the copy last."""
    columns: list[tuple[str, str]] = []
    for case in cases:
        for r in case["results"]:
            if (r["implementation"], r["kind"]) not in columns:
                columns.append((r["implementation"], r["kind"]))
    columns.sort(key=lambda c: c[1] == "copy")
    return columns


def render_wide(cases: Sequence[dict[str, Any]], level: str = "###") -> str:
    """Markdown: a row per case and a column per implementation, in three tables:
    time per call (with the largest spread of the row), GB/s with the fraction of
    copy, and the speedup over the NumPy reference."""
    columns = _columns(cases)
    names = [display_name(*c) for c in columns]

    def table(title: str, cell: Callable[[dict[str, Any]], str], with_copy: bool) -> str:
        shown = [(c, n) for c, n in zip(columns, names) if with_copy or c[1] != "copy"]
        rows = []
        for case in cases:
            by = {r["implementation"]: r for r in case["results"]}
            row = [case["label"]]
            for (name, _), _ in shown:
                r = by.get(name)
                row.append("" if r is None else "failed" if "error" in r else cell(r))
            if title.startswith("Time"):
                spreads = [_number(r.get("spread")) for r in case["results"] if "spread" in r]
                spreads = [v for v in spreads if v == v]
                row.append(_spread(max(spreads)) if spreads else "-")
            rows.append(row)
        header = ["case", *(n for _, n in shown)]
        if title.startswith("Time"):
            header.append("largest spread")
        return f"{level} {title}\n\n" + _table(header, rows, markdown=True)

    return "\n\n".join(
        [
            table("Time per call (median)", lambda r: format_time(r["median"]), True),
            table(
                "GB/s (fraction of the copy bandwidth)",
                lambda r: f"{_gbps(r['gbps'])} ({_percent(r['fraction_of_copy'])})",
                True,
            ),
            table(
                "Speedup over the NumPy reference (below 1: slower)",
                lambda r: _ratio(r["speedup_vs_numpy"]),
                False,
            ),
        ]
    )


LEGEND = (
    "time/call: median over repetitions (each the mean of several calls), after a warm-up;",
    "spread: half the interquartile range. GB/s: bytes read + written / time. of copy: that",
    "over np.copyto of the same bytes in the same run (the ceiling). vs numpy: NumPy reference",
    "time / this time (below 1: slower than the reference). The default backend is called",
    "as users call it, fs.softmax(x, axis), the others with backend=. cpp (out=): the same",
    "call writing into a preallocated out=, without the page faults of a fresh output array.",
    "onnxruntime: session.run(None, {'x': x}), a fresh output per call; onnxruntime-io:",
    "session.run_with_iobinding into a preallocated output (ONNX Runtime's out=).",
)


PAGE_LEGEND = (
    "Time per call: the median over the repetitions. Each repetition times every "
    "implementation once, in an order that rotates from one repetition to the next, and each "
    "sample is the mean of enough calls to last the sample time. Largest spread: the largest "
    "half interquartile range in the row, relative to the median. GB/s: the bytes read plus "
    "the bytes written, divided by the time; the percentage is of np.copyto on the same bytes "
    "in the same run, the ceiling of any softmax. Speedup: the NumPy reference's time divided "
    "by this time. cpp is called as users call it, fs.softmax(x, axis); cpp (out=) writes "
    "into a preallocated out=, without the page faults of a fresh output array; the other "
    "backends are called with backend=. Peers: scipy.special, PyTorch on the CPU, JAX "
    "under jax.jit and ONNX Runtime's CPU provider (onnxruntime: session.run, a fresh output; "
    "onnxruntime-io: IOBinding into a preallocated output), each where installed."
)


def _noise_text(document: dict[str, Any]) -> str:
    noise = document.get("noise") or {}
    if noise.get("noisy"):
        return (
            "NOTE: the machine was noisy (" + "; ".join(noise["notes"]) + "): "
            "compare the ratios, which come from contenders timed in turn, "
            "more than the absolute times; rerun for firmer numbers."
        )
    if noise.get("notes"):
        return "(" + "; ".join(noise["notes"]) + ")"
    return ""


def notes(document: dict[str, Any]) -> list[str]:
    noise = _noise_text(document)
    return [*LEGEND, *([noise] if noise else [])]


# --------------------------------------------------------------------------------------
# Markdown pages: docs/benchmarks.md (here) and docs/accuracy.md (_accuracy.py)

# The cases of the summary table (README, "Benchmarks"), when the run has them.
SUMMARY_CASES = (
    "softmax/float32/1x3/axis-1",
    "softmax/float32/1024x1024/axis-1",
    "softmax/float32/1024x1024/axis-1/causal",
    "softmax/float32/256x32000/axis-1",
    "softmax/float32/4x4000000/axis-1",
    "softmax/float64/1024x1024/axis-1",
    "softmax/float32/1024x1024/axis0",
)


def cpu_family_text(machine: dict[str, Any]) -> str:
    """'family 25, model 17, ' for a run that recorded them (x86), else ''."""
    if machine.get("cpu_family") is None or machine.get("cpu_model") is None:
        return ""
    return f"family {machine['cpu_family']}, model {machine['cpu_model']}, "


def cpu_text(machine: dict[str, Any]) -> str:
    """The machine as a run records it: CPU, its family and model numbers (x86),
    architecture, CPUs, L2 and L3."""
    caches = ", ".join(
        f"{k} {v}" for k, v in machine.get("caches", {}).items() if k in ("L2", "L3")
    )
    return (
        f"{machine['cpu']} ({cpu_family_text(machine)}{machine['machine']}, "
        f"{machine['cpus']} CPUs" + (f", {caches})" if caches else ")")
    )


def versions_text(versions: dict[str, Any]) -> str:
    found = ", ".join(
        f"{k} {versions[k]}"
        for k in ("numpy", "scipy", "numba", "torch", "jax", "onnxruntime")
        if versions.get(k)
    )
    return f"Python {versions['python']}; {found}"


def page_command(command: str, paths: Sequence[str], output: str | None) -> str:
    """The command that writes the page (shown on it, so that it can be rerun)."""
    import shlex

    tail = ["--output", output] if output else ["--markdown"]
    return shlex.join(["fastsoftmax", command, "--show", *paths, *tail])


def relative(path: str, output: str | None) -> str:
    """``path`` (relative to the current directory) as seen from the page ``output``."""
    target = os.path.relpath(path, os.path.dirname(output) or ".") if output else path
    return target.replace(os.sep, "/")


def link(path: str, output: str | None) -> str:
    """A markdown link to ``path`` from the page ``output``."""
    return f"[{path}]({relative(path, output)})"


def words(items: Sequence[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return " and ".join([", ".join(items[:-1]), items[-1]] if len(items) > 1 else items)


def page_header(title: str, command: str, sources: str, about: str) -> list[str]:
    return [
        f"# {title}",
        "",
        f"This page is generated from {sources} by `{command}`. Do not edit it by hand: "
        "after new runs, rerun that command.",
        "",
        about,
    ]


def _option(command: Sequence[str], name: str) -> str | None:
    """The value of ``name`` in a recorded command line, if it is there."""
    for i, word in enumerate(command[:-1]):
        if word == name:
            return command[i + 1]
    return None


def run_heading(document: dict[str, Any], path: str, level: str = "##") -> str:
    cases = document.get("cases") or document.get("functions") or []
    functions = ", ".join(dict.fromkeys(c["function"] for c in cases))
    return f"{level} {functions} (`{os.path.basename(path)}`)"


def run_lines(document: dict[str, Any], path: str, output: str | None) -> list[str]:
    """What the run was: its file, command and date, the machine, the versions."""
    m, v, s = document["machine"], document["versions"], document["settings"]
    recorded = " ".join(document.get("command") or ["?"])
    threads = f"{s['threads']} thread{'s' if s['threads'] > 1 else ''}"
    pinned = s.get("pinned_cpus")
    if pinned:
        threads += f", pinned to CPU {', '.join(map(str, pinned))}"
    lines = [
        f"- Run: `{recorded}`, {document.get('created', '?')}; saved in {link(path, output)}.",
        f"- CPU: {cpu_text(m)}, {m['system']}; flags {', '.join(m.get('flags', [])) or '-'}.",
        f"- fastsoftmax {v['fastsoftmax']}, SIMD level {m['simd_level']}, {threads}.",
        f"- {versions_text(v)}.",
        f"- Timing: median of {s['repeats']} repetitions, each the mean of calls lasting at "
        f"least {s['min_sample_time'] * 1e3:g} ms, after {s['warmup_time']:g} s of warm-up.",
    ]
    if s.get("output_alignment"):
        lines.append(
            f"- Preallocated outputs (out=, IOBinding, the copy) at the {s['output_alignment']}."
        )
    unavailable = s.get("unavailable") or {}
    if unavailable:
        missing = "; ".join(f"{k} ({val})" for k, val in unavailable.items())
        lines.append(f"- Not measured: {missing}.")
    noise = document.get("noise") or {}
    if noise:
        state = "noisy" if noise.get("noisy") else "quiet"
        detail = "; ".join(noise.get("notes") or [])
        lines.append(f"- The machine was {state}" + (f" ({detail})." if detail else "."))
    return lines


def render_summary(document: dict[str, Any]) -> str:
    """The few key cases of one run, one time per implementation, with the machine named."""
    by_key = {c["key"]: c for c in document["cases"]}
    cases = [by_key[k] for k in SUMMARY_CASES if k in by_key] or [
        c for c in document["cases"] if c["function"] == "softmax"
    ]
    columns = [c for c in _columns(cases) if c[1] != "copy" and not c[0].endswith("-out")]
    rows = []
    for case in cases:
        by = {r["implementation"]: r for r in case["results"]}
        row = [case["label"]]
        for name, _ in columns:
            r = by.get(name)
            row.append("" if r is None else "failed" if "error" in r else format_time(r["median"]))
        rows.append(row)
    m, s = document["machine"], document["settings"]
    threads = f"{s['threads']} thread{'s' if s['threads'] > 1 else ''}"
    intro = (
        f"Time per call (median; lower is faster) on {cpu_text(m)}, SIMD level "
        f"{m['simd_level']}, {threads}:"
    )
    header = ["case", *(display_name(*c) for c in columns)]
    return intro + "\n\n" + _table(header, rows, markdown=True)


def _sweep_table(document: dict[str, Any], output: str | None) -> list[str]:
    sweep = document.get("sweep")
    if not sweep:
        return []
    columns = _columns(sweep)
    rows = []
    for case in sweep:
        by = {r["implementation"]: r for r in case["results"]}
        row = [f"{case['row_length']:,}"]
        for name, _ in columns:
            r = by.get(name)
            row.append("" if r is None or "error" in r else _gbps(r["gbps"]))
        rows.append(row)
    total = math.prod(sweep[0]["shape"])
    lines = [
        "",
        f"### GB/s against the row length ({sweep[0]['function']} {sweep[0]['dtype']}, "
        f"{total:,} elements in all)",
        "",
    ]
    plot_path = _option(document.get("command") or [], "--plot")
    if plot_path:
        lines += [f"![GB/s against the row length]({relative(plot_path, output)})", ""]
    header = ["row length", *(display_name(*c) for c in columns)]
    return [*lines, _table(header, rows, markdown=True)]


def render_page(
    documents: Sequence[dict[str, Any]], paths: Sequence[str], output: str | None = None
) -> str:
    """docs/benchmarks.md: a summary of the first run, then every run in full."""
    sources = words([link(p, output) for p in paths])
    out = [
        *page_header(
            "Benchmarks",
            page_command("bench", paths, output),
            sources,
            f"[README.md, Benchmarks]({relative('README.md', output)}#benchmarks) says how to "
            "run them and how they are measured.",
        ),
        "",
        "## Summary",
        "",
        render_summary(documents[0]),
        "",
        "## How to read the tables",
        "",
        PAGE_LEGEND,
    ]
    for document, path in zip(documents, paths):
        out += [
            "",
            run_heading(document, path),
            "",
            *run_lines(document, path, output),
            "",
            render_wide(document["cases"]),
            *_sweep_table(document, output),
        ]
    return "\n".join(out) + "\n"


def render_compare(a: dict[str, Any], b: dict[str, Any], names: Sequence[str] = ("A", "B")) -> str:
    """Two runs side by side: per case and implementation, both times and B's speedup."""
    out = []
    for name, document in zip(names, (a, b)):
        out.append(f"{name}: {document.get('created', '?')}")
        out += [f"   {line}" for line in header_lines(document)]
    header = [
        "implementation",
        f"{names[0]} time",
        f"{names[1]} time",
        f"{names[1]} vs {names[0]}",
        f"{names[0]} GB/s",
        f"{names[1]} GB/s",
    ]
    a_cases = {c["key"]: c for c in a["cases"]}
    b_cases = {c["key"]: c for c in b["cases"]}
    for key in [*a_cases, *(k for k in b_cases if k not in a_cases)]:
        ca, cb = a_cases.get(key), b_cases.get(key)
        label = (ca or cb)["label"]
        ra = {r["implementation"]: r for r in (ca or {}).get("results", [])}
        rb = {r["implementation"]: r for r in (cb or {}).get("results", [])}
        impls = list(ra) + [n for n in rb if n not in ra]
        rows = []
        for impl in impls:
            x, y = ra.get(impl, {}), rb.get(impl, {})
            kind = x.get("kind") or y.get("kind", "")
            tx, ty = _number(x.get("median")), _number(y.get("median"))
            rows.append(
                [
                    display_name(impl, kind),
                    format_time(tx),
                    format_time(ty),
                    _ratio(tx / ty),
                    _gbps(x.get("gbps")),
                    _gbps(y.get("gbps")),
                ]
            )
        out += ["", label, _table(header, rows, markdown=False)]
    out += [
        "",
        f"{names[1]} vs {names[0]}: {names[0]} time / {names[1]} time "
        f"(above 1: {names[1]} is faster).",
    ]
    return "\n".join(out)


def plot(document: dict[str, Any], path: str) -> None:
    """GB/s against row length per implementation, with the copy bandwidth: the layout
    of the fused-softmax tutorial plot, for the CPU."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = document.get("sweep") or document["cases"]
    columns: list[tuple[str, str]] = []
    for case in records:
        for r in case["results"]:
            if r["kind"] != "copy" and (r["implementation"], r["kind"]) not in columns:
                columns.append((r["implementation"], r["kind"]))
    fig, ax = plt.subplots(figsize=(10, 5), dpi=110)
    lengths = [c["row_length"] for c in records]
    copies = [_number(c["copy_gbps"]) for c in records]
    if len({c["input_bytes"] for c in records}) == 1:
        # The same bytes at every point: one line at the median of the copies measured.
        ceiling = float(np.nanmedian(copies))
        ax.axhline(
            ceiling,
            color="k",
            linestyle="--",
            label=f"copy (np.copyto of the same bytes): {ceiling:.1f} GB/s",
        )
    else:
        ax.plot(lengths, copies, "k--", label="copy (np.copyto of the same bytes)")
    for name, kind in columns:
        points = [
            (c["row_length"], r["gbps"])
            for c in records
            for r in c["results"]
            if r["implementation"] == name and r.get("gbps") is not None
        ]
        if points:
            xs, ys = zip(*points)
            style = "-" if kind == "backend" else ":"
            label = display_name(name, kind) + (" reference" if name == "numpy" else "")
            ax.plot(xs, ys, style, marker="o", markersize=4, label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("row length N (elements per softmax row)")
    ax.set_ylabel("GB/s (input read + output written)")
    first = records[0]
    total = math.prod(first["shape"])
    m, s = document["machine"], document["settings"]
    ax.set_title(
        f"{first['function']} {first['dtype']}, {total:,} elements as (M, N), "
        f"{s['threads']} thread{'s' if s['threads'] > 1 else ''}\n"
        f"{m['cpu']}, SIMD {m['simd_level']}",
        fontsize=10,
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=9, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def load_json(path: str, schema: str = SCHEMA) -> dict[str, Any]:
    """A file written by ``--json``; ValueError if it is not one of ``schema``."""
    with open(path) as f:
        document = json.load(f)
    if not isinstance(document, dict) or document.get("schema") != schema:
        kind = "accuracy" if schema != SCHEMA else "bench"
        raise ValueError(f"{path}: not a fastsoftmax {kind} file (schema {schema!r} expected)")
    return document


def _plain(value: Any) -> Any:
    """JSON without NaN (null instead) and with lists for tuples and NumPy scalars."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def write_json(document: dict[str, Any], path: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with open(path, "w") as f:
        json.dump(_plain(document), f, indent=1, allow_nan=False)
        f.write("\n")
