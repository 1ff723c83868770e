"""Fuzz every public function on every backend and SIMD level: one command.

    python tests/fuzz/run.py                      # 100,000 inputs on 2 processes
    python tests/fuzz/run.py --inputs 5000 --jobs 1 --seed 7
    python tests/fuzz/run.py --replay FILE...     # rerun saved inputs, verbosely
    python tests/fuzz/run.py --grow-corpus        # keep inputs that cover new choices
    python tests/fuzz/run.py --engine atheris -- -runs=100000   # coverage-guided

Inputs are byte strings that ``harness.decode`` turns into calls. The
default engine mutates the corpus (``tests/fuzz/corpus``, replayed by
tests/test_fuzz.py in every test run) and random bytes, with a seed it
prints. Each worker is a separate process: a crash (a signal), a hang (an
input taking longer than --timeout seconds) or a mismatch stops the run,
saves the input under ``fuzz-failures/`` and prints how to replay it. The
exit status is 0 only when every input passed.

atheris (``pip install atheris``, CPython on Linux and macOS), when asked
for, runs libFuzzer's coverage-guided loop over the Python code of the
package, with the same harness and corpus.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
sys.path[:0] = [str(HERE.parent), str(HERE)]  # conftest (the oracle) and harness


# tests/test_fuzz.py proves the runner reports each kind of failure: with
# FASTSOFTMAX_FUZZ_FAULT set (abort, hang or mismatch), the first new input of a
# worker is this one, and checking it fails that way.
FAULT_INPUT = b"\x00fault"


def _inject_fault(data: bytes) -> None:
    fault = os.environ.get("FASTSOFTMAX_FUZZ_FAULT")
    if data != FAULT_INPUT or not fault:
        return
    if fault == "abort":
        os.abort()
    if fault == "hang":
        time.sleep(3600)
    raise AssertionError("injected mismatch")


def corpus_inputs(directory: Path = CORPUS) -> list[bytes]:
    return [p.read_bytes() for p in sorted(directory.glob("*")) if p.is_file()]


def save_input(data: bytes, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / hashlib.sha1(data).hexdigest()
    path.write_bytes(data)
    return path


def mutate(rng: random.Random, pool: list[bytes]) -> bytes:
    """A new input: random bytes, or a corpus input with bytes changed,
    inserted, deleted or spliced from another."""
    if not pool or rng.random() < 0.25:
        return rng.randbytes(rng.randrange(0, 48))
    data = bytearray(rng.choice(pool))
    for _ in range(rng.randrange(1, 5)):
        what = rng.randrange(4)
        at = rng.randrange(len(data) + 1)
        if what == 0 and data:
            data[min(at, len(data) - 1)] = rng.randrange(256)
        elif what == 1:
            data[at:at] = rng.randbytes(rng.randrange(1, 4))
        elif what == 2 and data:
            del data[at : at + rng.randrange(1, 4)]
        else:
            other = rng.choice(pool)
            cut = rng.randrange(len(other) + 1)
            data[at:] = other[cut:]
    return bytes(data)


def worker(args: argparse.Namespace) -> int:
    """The fuzz loop of one process (``--worker``): checks its share of inputs,
    writing each to ``--current`` first so that the parent can name the input
    of a crash or a hang."""
    import faulthandler

    import harness

    rng = random.Random(args.seed)
    pool = corpus_inputs()
    seen: set = set()
    for data in pool:
        seen |= harness.features(data, harness.check(data))
    current = Path(args.current)
    added = 0
    faulty = "FASTSOFTMAX_FUZZ_FAULT" in os.environ
    for i in range(args.inputs):
        data = FAULT_INPUT if faulty and i == 0 else mutate(rng, pool)
        current.write_bytes(data)
        faulthandler.dump_traceback_later(args.timeout, exit=True)
        _inject_fault(data)
        outcome = harness.check(data)  # AssertionError: the parent reports it
        faulthandler.cancel_dump_traceback_later()
        if (i + 1) % 10_000 == 0:
            print(f"worker {args.seed}: {i + 1} inputs passed", flush=True)
        new = harness.features(data, outcome) - seen
        if new:
            seen |= new
            pool.append(data)
            if args.grow_corpus:
                save_input(data, CORPUS)
                added += 1
    current.unlink()
    if args.grow_corpus:
        print(f"worker {args.seed}: {added} inputs added to {CORPUS}")
    return 0


def run(args: argparse.Namespace) -> int:
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    share = [args.inputs // args.jobs + (i < args.inputs % args.jobs) for i in range(args.jobs)]
    print(f"fuzz: {args.inputs} inputs, {args.jobs} processes, seed {seed}", flush=True)
    started = time.perf_counter()
    procs = []
    for i, count in enumerate(share):
        cmd = [sys.executable, __file__, "--worker", "--inputs", str(count), "--seed",
               str(seed + i), "--timeout", str(args.timeout),
               "--current", str(work / f"current-{i}")]  # fmt: skip
        if args.grow_corpus:
            cmd.append("--grow-corpus")
        procs.append(subprocess.Popen(cmd))
    failed = False
    for i, proc in enumerate(procs):
        code = proc.wait()
        if code != 0:
            failed = True
            current = work / f"current-{i}"
            kind = f"signal {-code}" if code < 0 else f"exit status {code}"
            if current.exists():
                saved = save_input(current.read_bytes(), Path("fuzz-failures"))
                print(f"fuzz: worker {i} failed ({kind}) on {saved}; replay with\n"
                      f"  python {__file__} --replay {saved}")  # fmt: skip
            else:
                print(f"fuzz: worker {i} failed ({kind}) before its first input")
    elapsed = time.perf_counter() - started
    if failed:
        return 1
    print(f"fuzz: {args.inputs} inputs passed on every backend in {elapsed:.0f} s")
    return 0


def replay(paths: list[str]) -> int:
    import harness

    for path in paths:
        data = Path(path).read_bytes()
        print(f"{path}: {harness.decode(data).describe()}")
        print(f"  -> {harness.check(data)}")
    return 0


def atheris_main(extra: list[str]) -> int:
    import atheris
    import harness

    # every loaded function's bytecode (an import hook would miss the package
    # when an editable install's finder loads it)
    atheris.instrument_all()

    def one_input(data: bytes) -> None:
        harness.check(data)

    new = Path("fuzz-new-inputs")
    new.mkdir(exist_ok=True)
    atheris.Setup([sys.argv[0], *extra, str(new), str(CORPUS)], one_input)
    atheris.Fuzz()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=100_000)
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--seed", type=int)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per input")
    parser.add_argument("--grow-corpus", action="store_true")
    parser.add_argument("--replay", nargs="+", metavar="FILE")
    parser.add_argument("--engine", choices=["random", "atheris"], default="random")
    parser.add_argument("--work-dir", default=os.path.join(os.environ.get("TMPDIR", "/tmp"),
                                                           "fastsoftmax-fuzz"))  # fmt: skip
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--current", help=argparse.SUPPRESS)
    parser.add_argument("extra", nargs="*", help="libFuzzer flags (after --) for atheris")
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    if args.replay:
        return replay(args.replay)
    if args.engine == "atheris":
        return atheris_main(args.extra)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
