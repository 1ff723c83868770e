"""fastsoftmax.scipy, the SciPy-shaped door: scipy.special's signatures and
results (type, dtype, shape, values, errors) on the fast kernels, SciPy's own
test module run against it, and patch_scipy / unpatch_scipy."""

from __future__ import annotations

import ast
import importlib.util
import inspect
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastsoftmax as fs
from fastsoftmax import scipy as door

try:
    from numpy.exceptions import AxisError
except ImportError:  # NumPy < 1.25
    AxisError = np.AxisError  # noqa: NPY201

sp = pytest.importorskip("scipy.special")

NAMES = ("softmax", "log_softmax", "logsumexp")
SCIPY_TEST_MODULES = [
    name
    for name in ("test_logsumexp", "test_softmax", "test_log_softmax")
    if importlib.util.find_spec(f"scipy.special.tests.{name}") is not None
]


@pytest.mark.parametrize("name", NAMES)
def test_signatures_are_scipys(name):
    """Names, order, kinds and defaults (ours add type hints)."""

    def parameters(function):
        return [
            (p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()
        ]

    assert parameters(getattr(door, name)) == parameters(getattr(sp, name))


def _outcome(function, *args, **kwargs):
    """[(type, dtype, shape, values)] of each output, or the error's type."""
    try:
        result = function(*args, **kwargs)
    except Exception as error:
        return type(error)
    outputs = result if isinstance(result, tuple) else (result,)
    return [(type(r), np.asarray(r).dtype, np.shape(r), np.asarray(r)) for r in outputs]


def assert_same_as_scipy(name, *args, **kwargs):
    """The door's outcome is SciPy's: the same error, or outputs of the same
    type, dtype and shape. Values: within the accuracy bounds of SciPy's own
    in float64 (SciPy computes float32 in float32, and unsigned integers wrap
    around in its ``x - max``: its own values are not the reference)."""
    x = args[0]
    with np.errstate(all="ignore"):
        want = _outcome(getattr(sp, name), *args, **kwargs)
        got = _outcome(getattr(door, name), *args, **kwargs)
        wide = np.asarray(x)
        if wide.dtype.kind in "fiub" and wide.dtype.itemsize <= 8:
            wide = wide.astype(np.float64)
        reference = _outcome(getattr(sp, name), wide, *args[1:], **kwargs)
    if want is IndexError:  # a SciPy bug (an empty array with several axes)
        assert got in (ValueError, AxisError) or not isinstance(got, type)
        return
    if isinstance(want, type):  # SciPy raised: the door raises the same kind
        assert isinstance(got, type) and issubclass(got, want), (got, want)
        return
    assert not isinstance(got, type), f"the door raised {got.__name__}"
    assert len(got) == len(want) == len(reference)
    finite = np.abs(wide[np.isfinite(wide)]) if wide.dtype.kind in "fc" else np.zeros(1)
    spread = 1 + (float(finite.max()) if finite.size else 0.0)
    for (g_type, g_dtype, g_shape, g), (w_type, w_dtype, w_shape, _), ref in zip(
        got, want, reference
    ):
        assert (g_type, g_dtype, g_shape) == (w_type, w_dtype, w_shape)
        finfo = np.finfo(w_dtype if w_dtype.kind in "fc" else np.float64)
        eps = float(finfo.eps)
        wide_dtype = np.promote_types(w_dtype, np.float64)
        np.testing.assert_allclose(
            g.astype(wide_dtype),
            ref[3].astype(wide_dtype),
            rtol=8 * eps * spread,
            # (softmax: the smallest normal float, as in the README's contract)
            atol=8 * eps * spread if name != "softmax" else float(finfo.tiny),
        )


INPUTS = {
    "float64 2-d": np.arange(12.0).reshape(3, 4) / 3,
    "float32 3-d": (np.arange(24, dtype=np.float32).reshape(2, 3, 4) - 9) / 4,
    "float16": np.float16([1.5, -2, 0.25]),
    "big-endian": np.arange(6, dtype=">f8").reshape(2, 3),
    "strided": np.arange(30.0).reshape(5, 6)[::2, ::-3],
    "int64": np.arange(5),
    "int8": np.arange(5, dtype=np.int8),
    "int16": np.arange(5, dtype=np.int16),
    "uint32": np.arange(5, dtype=np.uint32),
    "bool": np.array([True, False, True]),
    "list": [[1.0, 2.0], [3.0, 5.0]],
    "python int": 3,
    "python float": -2.5,
    "float32 scalar": np.float32(1.5),
    "0-d array": np.array(0.5),
    "empty": np.zeros(0),
    "empty rows": np.zeros((0, 3)),
    "specials": np.array([[0.0, -np.inf, 1.0], [np.inf, 1.0, 2.0], [np.nan, 0, 1], [-np.inf] * 3]),
    "large": np.array([1000.0, 999.0, -1000.0]),
    "complex": np.array([1 + 1j, 2 - 1j]),
    "long double": np.arange(3, dtype=np.longdouble),
}
AXES = [None, 0, -1, (0, 1), 2, (0, 0)]


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("axis", AXES, ids=str)
@pytest.mark.parametrize("key", list(INPUTS))
def test_softmax_like_same_as_scipy(name, key, axis):
    assert_same_as_scipy(name, INPUTS[key], axis)


@pytest.mark.parametrize("options", [{}, {"keepdims": True}, {"return_sign": True},
                                     {"b": 2}, {"b": np.float64(0.5)}, {"b": -1.0},
                                     {"keepdims": True, "return_sign": True}])  # fmt: skip
@pytest.mark.parametrize("axis", AXES, ids=str)
@pytest.mark.parametrize("key", list(INPUTS))
def test_logsumexp_same_as_scipy(key, axis, options):
    x = INPUTS[key]
    scipy_raises = isinstance(_outcome(sp.logsumexp, x, axis, **options), type)
    if key.startswith("empty") and options.get("return_sign") and not scipy_raises:
        # An empty sum is 0: sign 0, as SciPy gives for other zero sums (for
        # an empty one SciPy 1.17 gives -1)
        value, sign = door.logsumexp(x, axis, **options)
        assert (np.asarray(value) == -np.inf).all() and (np.asarray(sign) == 0).all()
        return
    assert_same_as_scipy("logsumexp", x, axis, **options)


def test_logsumexp_weights_broadcast_both_ways():
    a = np.arange(8.0).reshape(4, 1, 2, 1)
    b = np.linspace(-1, 2, 15).reshape(3, 1, 5)
    for axis in (None, 0, (1, 3)):
        for sign in (False, True):
            assert_same_as_scipy("logsumexp", a, axis, b, False, sign)
    assert_same_as_scipy("logsumexp", a, 1, np.float32([1, 0]), True)  # positional order


def test_subnormal_float32_weights_keep_their_digits():
    """b of subnormal float32 values: b * exp(x - max) is computed wide, not
    rounded to a few subnormal bits (found by the random-input test: 9% off)."""
    x = np.array([0.0, 1.0], dtype=np.float32)
    b = np.array([6e-45, 6e-45], dtype=np.float32)
    want = sp.logsumexp(x.astype(np.float64), b=b.astype(np.float64))
    got = door.logsumexp(x, b=b)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=2e-7)


@settings(max_examples=150, deadline=None)
@given(
    x=hnp.arrays(
        st.sampled_from([np.float32, np.float64]),
        hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=7),
        elements=st.floats(-50, 50, width=32),
    ),
    data=st.data(),
)
def test_random_inputs_same_as_scipy(x, data):
    axis = data.draw(st.sampled_from([None, *range(-x.ndim, x.ndim)]))
    name = data.draw(st.sampled_from(NAMES))
    assert_same_as_scipy(name, x, axis)
    if name == "logsumexp":
        b = data.draw(hnp.arrays(x.dtype, x.shape[-1:], elements=st.floats(-2, 2, width=32)))
        assert_same_as_scipy(name, x, axis, b, data.draw(st.booleans()), data.draw(st.booleans()))


def test_runs_on_the_fast_kernel(monkeypatch):
    """Real-valued NumPy input reaches fastsoftmax's functions, never SciPy's."""
    seen = []
    for name in NAMES:
        original = getattr(fs._api, name)
        monkeypatch.setattr(
            fs._api, name, lambda *a, _o=original, _n=name, **k: seen.append(_n) or _o(*a, **k)
        )
    monkeypatch.setattr(door, "_delegate", lambda *a: pytest.fail("went to SciPy"))
    x = np.float32([[1, 2, 3], [4, 5, 7]])
    for name in NAMES:
        getattr(door, name)(x)
    door.logsumexp(x, 1, np.float32([1, -1, 2]), return_sign=True)
    assert seen == [*NAMES, "logsumexp"]


def test_other_inputs_go_to_scipy():
    z = np.array([1 + 2j, 3 - 1j])
    assert np.array_equal(door.softmax(z), sp.softmax(z))
    assert door.logsumexp(z) == sp.logsumexp(z)
    ld = np.arange(3, dtype=np.longdouble)
    assert door.log_softmax(ld).dtype == np.longdouble


def test_differs_from_fastsoftmax_softmax_where_the_readme_says():
    x = np.array([[1.0, 2.0], [3.0, 5.0]])
    assert not np.allclose(door.softmax(x), fs.softmax(x))  # all axes vs the last one
    np.testing.assert_allclose(door.softmax(x), fs.softmax(x, axis=None))
    assert np.shape(door.logsumexp(x)) == () and fs.logsumexp(x).shape == (2,)
    with pytest.raises(TypeError):
        door.softmax([True, False])  # SciPy's softmax refuses booleans ...
    assert fs.softmax([True, False]).dtype == np.float64  # ... ours computes them
    with pytest.raises(ValueError):
        door.softmax(np.zeros((2, 0)), axis=1)  # SciPy: no max of nothing
    assert fs.softmax(np.zeros((2, 0))).shape == (2, 0)


def test_scipys_own_tests_pass_on_the_door(tmp_path):
    """SciPy's installed test module(s) for these functions, run with
    scipy.special patched to the door (tests/scipy_suite's plugin)."""
    if not SCIPY_TEST_MODULES:
        pytest.skip("this SciPy was installed without its tests")
    plugin_dir = Path(__file__).parent / "scipy_suite"
    path = [str(plugin_dir), *filter(None, [os.environ.get("PYTHONPATH")])]
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    command += ["-p", "fastsoftmax_scipy_plugin", "--pyargs"]
    command += [f"scipy.special.tests.{m}" for m in SCIPY_TEST_MODULES]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path))
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "fastsoftmax door: patched=True" in done.stdout
    calls = done.stdout.split("fastsoftmax door: patched=True calls=")[1].split("\n")[0]
    counts = ast.literal_eval(calls)  # the plugin's count of calls that reached the door
    # (SciPy's complex cases go to SciPy: 352 of 450 calls with SciPy 1.17)
    assert counts["kernel"] >= 50 and all(counts[n] > 0 for n in NAMES), counts
    passed = int(done.stdout.rsplit(" passed", 1)[0].rsplit(" ", 1)[-1].split("\n")[-1])
    assert passed >= 100


@pytest.fixture
def clean_patch():
    yield
    door.unpatch_scipy()
    assert sp.softmax is door._scipy_function("softmax")


@pytest.mark.usefixtures("clean_patch")
def test_patch_and_unpatch():
    originals = {name: getattr(sp, name) for name in NAMES}
    before = types.ModuleType("loaded_before")
    exec("from scipy.special import logsumexp, softmax as sm", before.__dict__)
    sys.modules["loaded_before"] = before
    try:
        fs.patch_scipy()
        assert door.is_scipy_patched()
        for name in NAMES:
            assert getattr(sp, name) is getattr(door, name)
        assert before.logsumexp is door.logsumexp and before.sm is door.softmax
        later = types.ModuleType("loaded_later")
        exec("from scipy.special import log_softmax", later.__dict__)
        sys.modules["loaded_later"] = later
        assert later.log_softmax is door.log_softmax
        # SciPy's defining module keeps its own (the door calls them for complex input)
        from scipy.special import _logsumexp

        assert _logsumexp.softmax is originals["softmax"]
        assert sp.softmax(np.array([1 + 0j, 1])).dtype == np.complex128
        fs.patch_scipy()  # a second call changes nothing
        fs.unpatch_scipy()
        assert not door.is_scipy_patched()
        for name in NAMES:
            assert getattr(sp, name) is originals[name]
        assert before.logsumexp is originals["logsumexp"] and before.sm is originals["softmax"]
        assert later.log_softmax is originals["log_softmax"]
        assert door.softmax is not originals["softmax"]  # the door itself is untouched
        fs.unpatch_scipy()  # a second call changes nothing
    finally:
        sys.modules.pop("loaded_before", None)
        sys.modules.pop("loaded_later", None)


@pytest.mark.usefixtures("clean_patch")
def test_patched_scipy_context_manager():
    original = sp.logsumexp
    with fs.patched_scipy():
        assert sp.logsumexp is door.logsumexp
        with fs.patched_scipy():
            assert sp.logsumexp is door.logsumexp
        assert sp.logsumexp is door.logsumexp  # the outer one still holds
    assert sp.logsumexp is original
    fs.patch_scipy()
    with fs.patched_scipy():
        pass
    assert sp.logsumexp is door.logsumexp  # patched before: stays patched


@pytest.mark.usefixtures("clean_patch")
def test_patch_reaches_a_library_call():
    """scikit-learn's LatentDirichletAllocation.score calls scipy.special.logsumexp,
    imported by name when sklearn.decomposition loaded; patched, it runs ours,
    with the same score."""
    lda_module = pytest.importorskip("sklearn.decomposition._lda")
    from sklearn.decomposition import LatentDirichletAllocation

    rng = np.random.default_rng(0)
    counts = rng.poisson(0.3, size=(40, 60))
    lda = LatentDirichletAllocation(n_components=5, max_iter=3, random_state=0).fit(counts)
    plain = lda.score(counts)
    calls = []
    ours = door.logsumexp
    with fs.patched_scipy():
        assert lda_module.logsumexp is ours
        lda_module.logsumexp = lambda *a, **k: calls.append(1) or ours(*a, **k)
        try:
            patched = lda.score(counts)
        finally:
            lda_module.logsumexp = ours
    assert len(calls) == counts.shape[0]
    assert patched == pytest.approx(plain, rel=1e-12)
