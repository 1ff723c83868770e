"""The shared validation module: its AxisError on every supported NumPy, the
fast-path rule used by every caller, no private names read across modules,
and the extension's type stub against the built extension."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
from conftest import run_python

import fastsoftmax as fs
from fastsoftmax import _backends, _validation

PACKAGE = Path(fs.__file__).parent


# --- AxisError ---------------------------------------------------------------


def test_axis_error_without_numpy_exceptions():
    """NumPy 1.22-1.24 have no numpy.exceptions: the module falls back to
    numpy.AxisError (NumPy 2 dropped that name, so a stand-in takes its place)."""
    code = """
import sys
import numpy

class StandInAxisError(ValueError, IndexError):
    pass

numpy.AxisError = StandInAxisError
sys.modules["numpy.exceptions"] = None  # `import numpy.exceptions` now fails
from fastsoftmax import _validation
import fastsoftmax

assert _validation.AxisError is StandInAxisError, _validation.AxisError
try:
    fastsoftmax.softmax(numpy.zeros(3), axis=1)
except StandInAxisError:
    print("raised the fallback AxisError")
"""
    assert "raised the fallback AxisError" in run_python(code)


def test_axis_error_is_numpys():
    from numpy.exceptions import AxisError

    assert _validation.AxisError is AxisError


# --- the fast-path rule ------------------------------------------------------

needs_cpp = pytest.mark.skipif("cpp" not in fs.backends(), reason="no compiled extension")


@needs_cpp
@pytest.mark.parametrize(
    ("axis", "temperature", "backend"),
    [(-1, 1.0, None), (1, 1, "cpp"), (63, 1.0, None), (-64, 1.0, "cpp")],
)
def test_one_step_allowed(axis, temperature, backend):
    assert _validation.one_step_backend(axis, temperature, None, backend) is _backends.one_step


@needs_cpp
@pytest.mark.parametrize(
    ("axis", "temperature", "where", "backend"),
    [
        (True, 1.0, None, None),  # a bool is not an int axis
        (np.int64(-1), 1.0, None, None),
        (64, 1.0, None, None),  # beyond NumPy's dimensions: the general path raises
        (-65, 1.0, None, None),
        ((-1,), 1.0, None, None),
        (None, 1.0, None, None),
        (-1, 2.0, None, None),
        (-1, np.float64(1.0), None, None),  # validated by the general path
        (-1, "1", None, None),
        (-1, 1.0, np.ones(3, bool), None),
        (-1, 1.0, None, "numba"),
        (-1, 1.0, None, "numpy"),
    ],
)
def test_one_step_refused(axis, temperature, where, backend):
    assert _validation.one_step_backend(axis, temperature, where, backend) is None


def test_one_step_needs_the_extension(monkeypatch):
    monkeypatch.setattr(_backends, "one_step", None)
    assert _validation.one_step_backend(-1, 1.0, None, None) is None


class _Spy:
    """Records the one-step calls and forwards them to the compiled backend."""

    def __init__(self, compiled):
        self.compiled = compiled
        self.calls = []

    def softmax_last_axis(self, *args):
        self.calls.append("softmax_last_axis")
        return self.compiled.softmax_last_axis(*args)

    def logsumexp_last_axis(self, *args):
        self.calls.append("logsumexp_last_axis")
        return self.compiled.logsumexp_last_axis(*args)


@needs_cpp
def test_every_caller_uses_the_one_rule(monkeypatch):
    spy = _Spy(_backends.one_step)
    monkeypatch.setattr(_backends, "one_step", spy)
    x = np.random.default_rng(0).standard_normal((4, 5))
    target = np.arange(4) % 5
    fs.softmax(x)
    fs.log_softmax(x, out=np.empty_like(x))
    fs.logsumexp(x)
    fs.cross_entropy(x, target)
    fs.cross_entropy(x, np.full(x.shape, 0.2))
    assert spy.calls == ["softmax_last_axis"] * 2 + ["logsumexp_last_axis"] * 3
    spy.calls.clear()
    fs.softmax(x, temperature=2.0)
    fs.logsumexp(x, keepdims=True)
    fs.cross_entropy(x, target, temperature=2.0)
    fs.cross_entropy(x, target, where=np.ones(x.shape, bool))
    fs.cross_entropy(x, target, backend="numpy")
    assert spy.calls == []


@needs_cpp
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("axis", [0, -1])
def test_cross_entropy_same_with_and_without_one_step(monkeypatch, dtype, axis):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((6, 7)) * 4).astype(dtype)
    target = rng.integers(0, x.shape[axis], size=x.shape[1 - (axis % 2)])
    p = rng.dirichlet(np.ones(x.shape[axis]), size=x.shape[1 - (axis % 2)])
    p = np.moveaxis(p, -1, axis).astype(dtype)
    fast = [fs.cross_entropy(x, t, axis=axis, reduction="none") for t in (target, p)]
    monkeypatch.setattr(_backends, "one_step", None)
    general = [fs.cross_entropy(x, t, axis=axis, reduction="none") for t in (target, p)]
    for a, b in zip(fast, general):
        np.testing.assert_array_equal(a, b)


# --- module boundaries -------------------------------------------------------


def _private_reads(tree: ast.AST, module: str) -> list[str]:
    """`module._name` attribute reads and `from .module import _name` imports."""
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == module
            and node.attr.startswith("_")
        ):
            found.append(f"{module}.{node.attr}")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").endswith(module):
            found += [f"{module}.{a.name}" for a in node.names if a.name.startswith("_")]
    return found


@pytest.mark.parametrize("module", ["_api", "_validation"])
def test_no_private_names_read_across_modules(module):
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.stem == module:
            continue
        reads = _private_reads(ast.parse(path.read_text(encoding="utf-8")), module)
        if reads:
            offenders[path.name] = reads
    assert offenders == {}


# --- the extension's stub ----------------------------------------------------


def _stub_functions() -> dict[str, list[ast.FunctionDef]]:
    tree = ast.parse((PACKAGE / "_core.pyi").read_text(encoding="utf-8"))
    functions: dict[str, list[ast.FunctionDef]] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            functions.setdefault(node.name, []).append(node)
    return functions


def _stub_public_names() -> set[str]:
    tree = ast.parse((PACKAGE / "_core.pyi").read_text(encoding="utf-8"))
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {n for n in names if not n.startswith("_")}


def _split_top_level(text: str, separator: str = ",") -> list[str]:
    """Split at ``separator`` outside brackets and quotes."""
    parts, depth, quote, start = [], 0, None, 0
    for i, c in enumerate(text):
        if quote:
            quote = None if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == separator and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def _extension_parameters(signature: str) -> tuple[tuple[str, bool], ...]:
    """(name, has a default) of each parameter of a nanobind signature
    ``def f(a: T, b: U = v) -> R``."""
    inside = signature[signature.index("(") + 1 : signature.rindex(") ->")]
    parameters = _split_top_level(inside)
    return tuple((p.split(":")[0].strip(), len(_split_top_level(p, "=")) > 1) for p in parameters)


def _stub_parameters(node: ast.FunctionDef) -> tuple[tuple[str, bool], ...]:
    params = node.args.posonlyargs + node.args.args
    first_default = len(params) - len(node.args.defaults)
    return tuple((a.arg, i >= first_default) for i, a in enumerate(params))


@pytest.fixture(scope="module")
def core():
    if "cpp" not in fs.backends():
        pytest.skip("the compiled extension is not built")
    from fastsoftmax import _core

    return _core


def test_stub_names_match_extension(core):
    exported = {n for n in dir(core) if not n.startswith("_")}
    assert _stub_public_names() == exported


def test_stub_signatures_match_extension(core):
    """Parameter names, defaults and one overload per binding (float32 and
    float64 for the batch kernels), against nanobind's own signatures."""
    for name, nodes in _stub_functions().items():
        signatures = getattr(getattr(core, name), "__nb_signature__", None)
        if signatures is None:
            pytest.skip("this nanobind does not expose __nb_signature__")
        bound = sorted(_extension_parameters(s[0]) for s in signatures)
        declared = sorted(_stub_parameters(n) for n in nodes if _is_declaration(n, len(nodes)))
        assert declared == bound, name


def _is_declaration(node: ast.FunctionDef, count: int) -> bool:
    """An overload, or the only definition of the name."""
    overloaded = any(getattr(d, "id", None) == "overload" for d in node.decorator_list)
    return overloaded or count == 1
