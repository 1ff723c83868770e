"""A typed use of the public API, which ``mypy --strict`` must accept
(tests/test_packaging.py runs it against the copy of fastsoftmax imported)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

import fastsoftmax as fs


def probabilities(logits: NDArray[np.float32], temperature: float) -> NDArray[np.float32]:
    out = np.empty_like(logits)
    fs.softmax(logits, axis=-1, temperature=temperature, out=out, backend="cpp")
    return out


def log_probabilities(logits: NDArray[np.float64]) -> NDArray[np.float64]:
    result: NDArray[np.float64] = fs.log_softmax(logits, axis=(0, 1), where=logits > 0)
    return result


def normalizer(logits: list[list[float]]) -> float:
    return float(fs.logsumexp(logits, axis=None, keepdims=False, backend=None))


def signed_normalizer(logits: NDArray[np.float64], weights: NDArray[np.float64]) -> Any:
    return fs.logsumexp(logits, b=weights, return_sign=True)


def loss(logits: NDArray[np.float64], labels: NDArray[np.int64]) -> float:
    return float(fs.cross_entropy(logits, labels, reduction="sum", label_smoothing=0.1))


def gradients(y: NDArray[np.float64], grad: NDArray[np.float64]) -> tuple[Any, Any]:
    return fs.softmax_grad(y, grad, axis=-1), fs.log_softmax_grad(y, grad, backend="numpy")


def summary() -> dict[str, Any]:
    fs.set_num_threads(2)
    threads: int = fs.get_num_threads()
    names: tuple[str, ...] = fs.backends()
    version: str = fs.__version__
    return {"threads": threads, "backends": names, "version": version, **fs.info()}


def scipy_shaped(logits: NDArray[np.float64]) -> tuple[Any, Any]:
    from fastsoftmax import scipy as special

    with fs.patched_scipy():
        pass
    fs.patch_scipy()
    fs.unpatch_scipy()
    return special.softmax(logits), special.logsumexp(logits, 0, None, False, True)
