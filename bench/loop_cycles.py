"""Cycles per 8 floats of each pass's inner loop, on cores this machine may not be.

Disassembles the compiled extension (objdump), takes the hot loop of each float32
row pass at each SIMD level (the innermost loop of the function with the most
vector instructions), and asks llvm-mca how many cycles an iteration takes on
each target core in a steady state. A static model, not a measurement: it shows
where a loop is bound (FMA pipes, shuffles, loads) on a core we do not have.

    python bench/loop_cycles.py [--so PATH] [--mcpu znver1,znver3,skylake-avx512]

Needs objdump (binutils) and llvm-mca (LLVM) on PATH.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys

# (pass, function name pattern, the instruction that marks its main loop). The
# functions named hold the unmasked and the masked loop: a loop that loads mask
# bytes (MASK_LOAD) is never the one taken.
STORED = r"\(fastsoftmax::\w+::\(anonymous namespace\)::Stored\)"
LAST_PASS_OF = r"\(fastsoftmax::\w+::\(anonymous namespace\)::LastPass\)"
NO_CARRY = LAST_PASS_OF + "0"  # no carried last pass
LAST_PASS = r"(finish_softmax_row|softmax_row_in_cache)<float>\("  # inlined into the latter
# A group's exp form: no subnormal results, temperature 1.
FAST_FORM = r"std::integral_constant<bool, false>, std::integral_constant<bool, false> "
GROUP_SOFTMAX = "exp + store + sum, carried scale, next row scanned (softmax groups)"
GROUP_LOG_SOFTMAX = "exp + split sum, carried y from x, next row scanned (log_softmax groups)"
FROM_X_LEVELS = ("avx512",)  # the levels whose log_softmax groups carry y from x
# log_softmax's last pass from x, as a pass of its own (subtract_row, one vector
# an iteration); its groups at AVX-512 carry it in their exp loops instead.
FROM_X = "y = (x - max) - log(sum) (log_softmax)"
SCANS_AHEAD = ("avx512", "avx2")  # the levels whose softmax groups scan the next row
PASSES = (
    ("scan (max, min, NaN)", r"scan_row<float>\(", r"maxps"),
    (
        "exp + store + sum (softmax)",
        rf"exp_sums_loop<float, false, false, {STORED}1, false, false, {NO_CARRY}>",
        r"v?fmadd|mulps",
    ),
    (
        # What softmax's groups run: the previous group's last pass carried, and
        # on the table levels the next group's row scanned (its vmaxps), in place
        # of a separate scan pass.
        GROUP_SOFTMAX,
        rf"group_exp_sums_of<float, {STORED}1, false, {LAST_PASS_OF}1, false>"
        rf".*operator\(\)<{FAST_FORM}>",
        r"v?fmadd|mulps|vmaxps",
    ),
    (
        # What log_softmax's groups run where there are 32 vector registers:
        # logsumexp's loop with the previous group's last pass from x carried
        # (its two vsubps a vector) and the next group's row scanned. The loop of
        # temperature 1 is inlined into the group function; the one carrying
        # has the most of these.
        GROUP_LOG_SOFTMAX,
        r"softmax_row_group<float>\(",
        r"v?fmadd|mulps|vsubps|vmaxps",
    ),
    (
        # log_softmax's rows over 64 KB, single rows, and groups with 16
        # vector registers (which carry the pass `y -= log(sum)` in this loop).
        "exp + store d + split sum (log_softmax, d stored)",
        rf"exp_sums_loop<float, false, false, {STORED}2, true, false, {NO_CARRY}>",
        r"v?fmadd|mulps",
    ),
    (
        "exp + split sum (logsumexp)",
        rf"exp_sums_loop<float, false, false, {STORED}0, true, false, {NO_CARRY}>",
        r"v?fmadd|mulps",
    ),
    ("scale (softmax)", LAST_PASS, r"mulps"),
    ("y -= log(sum) (log_softmax, d stored)", LAST_PASS, r"subps"),
    (FROM_X, r"subtract_row_impl<false, false, float>\(", r"subps"),
)
ONE_VECTOR = (FROM_X,)  # passes whose loop takes one vector an iteration, not four
MASK_LOAD = r"pmovzxb|punpcklbw|movzbl"
LEVELS = {"avx512": 16, "avx2": 8, "sse2": 4}  # float lanes
# The cores whose model is asked for each level (a level needs its ISA).
CORES = {
    "avx512": ("skylake-avx512",),
    "avx2": ("znver1", "znver3"),
    "sse2": ("znver1", "znver3"),
}


def functions(so: str) -> dict[str, tuple[int, int]]:
    """Demangled name -> (start, end) of each local function of the object."""
    out = subprocess.run(
        ["nm", "-C", "-S", "--defined-only", so], capture_output=True, text=True, check=True
    ).stdout
    found = {}
    for line in out.splitlines():
        parts = line.split(" ", 3)
        if len(parts) == 4 and parts[2] in "tT":
            start, size = int(parts[0], 16), int(parts[1], 16)
            found[parts[3]] = (start, start + size)
    return found


def disassemble(so: str, start: int, end: int) -> list[tuple[int, str]]:
    out = subprocess.run(
        [
            "objdump",
            "-d",
            "--no-show-raw-insn",
            "-M",
            "att",
            f"--start-address={start}",
            f"--stop-address={end}",
            so,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lines = []
    for line in out.splitlines():
        m = re.match(r"\s*([0-9a-f]+):\s+(.*)$", line)
        if m:
            lines.append((int(m.group(1), 16), m.group(2).split("#")[0].strip()))
    return lines


def hot_loop(
    lines: list[tuple[int, str]], marker: str, forward_branches: bool = False
) -> list[str]:
    """The loop (a backward branch) with the most `marker` instructions and no
    inner loop: the pass's main loop, which takes four vectors an iteration.
    With forward_branches, a conditional branch forward inside the body (the
    test that skips the next row's scan) leaves it a loop of its own, a backward
    one or an unconditional jump (a row's tail blocks around the loop) does not."""
    best: list[str] = []
    best_score = -1
    index = {address: i for i, (address, _) in enumerate(lines)}
    for i, (_, text) in enumerate(lines):
        m = re.match(r"j\w+\s+([0-9a-f]+)", text)
        if not m:
            continue
        target = int(m.group(1), 16)
        if target not in index or index[target] >= i:
            continue
        body = [t for _, t in lines[index[target] : i]]
        inner = any(
            re.match(r"j\w+\s+([0-9a-f]+)", t)
            and target < int(t.split()[1], 16) < (address + 1 if forward_branches else lines[i][0])
            for address, t in lines[index[target] : i]
        )
        if forward_branches and any(t.startswith("jmp") for t in body):
            continue
        advances = any(re.match(r"(add|sub)\s+\$-?0x[0-9a-f]+,%r", t) for t in body)
        if not advances or any(t.startswith("ret") for t in body):
            continue  # a jump back to shared code, not a loop over the row
        if any(re.search(MASK_LOAD, t) for t in body):
            continue  # the masked loop
        score = sum(1 for t in body if re.match(rf"\S*({marker})", t))
        if not inner and score > best_score:
            best, best_score = body, score
    if not best:
        sys.exit(f"no loop with {marker!r} found")
    # The branch target as a label llvm-mca can parse. Prefetches of the row
    # ahead (a group's next row, on paths the loop picks at run time) are left
    # out: they belong to the group, not to the pass.
    body = (t for t in best if not t.startswith("j") and not t.startswith("prefetch"))
    return ["loop:", *body, "jne loop"]


# LLVM 14's znver1 model has no figure for a lane-crossing vpermps: it gives
# it a placeholder latency of 100 cycles, which made every table-exp loop look
# bound by it. Zen 1 runs it as a few in-lane operations (it splits 256-bit
# work into two 128-bit halves), so here it stands as three dependent in-lane
# permutes: three operations and three cycles of latency on that model.
VPERMPS = re.compile(r"vpermps\s+(.+?),\s*(%ymm\d+),\s*(%ymm\d+)$")


def for_model(asm: list[str], mcpu: str) -> list[str]:
    """The loop as llvm-mca is asked about it on `mcpu`: on znver1, each
    vpermps replaced by its stand-in (see VPERMPS)."""
    if mcpu != "znver1":
        return asm
    out = []
    for line in asm:
        m = VPERMPS.match(line)
        if m is None:
            out.append(line)
            continue
        table, index, target = m.groups()
        out.append(f"vpermilps {table}, {index}, {target}")
        out += [f"vpermilps {index}, {target}, {target}"] * 2
    return out


def cycles(asm: list[str], mcpu: str) -> float:
    out = subprocess.run(
        ["llvm-mca", f"-mcpu={mcpu}", "-iterations=200"],
        input="\n".join(for_model(asm, mcpu)) + "\n",
        capture_output=True,
        text=True,
    ).stdout
    m = re.search(r"Total Cycles:\s+(\d+)", out)
    return int(m.group(1)) / 200 if m else float("nan")


def fma_calibration(core: str, register: str) -> float:
    """Cycles the model gives 8 independent FMAs of one register width: what it
    believes the core's FMA throughput is (LLVM 14 gives znver1 two 256-bit FMAs a
    cycle and znver3 one, the reverse of the hardware), to read the table with."""
    asm = [f"vfmadd213ps %{register}1, %{register}2, %{register}{k}" for k in range(3, 11)]
    return cycles(asm, core)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--so", help="the extension (default: the installed fastsoftmax._core)")
    args = parser.parse_args()
    for tool in ("objdump", "llvm-mca", "nm"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found")
    so = args.so
    if so is None:
        from fastsoftmax import _core

        so = _core.__file__
    table = functions(so)
    if not any(name.startswith("fastsoftmax::") for name in table):
        sys.exit(f"{so} names none of its kernels (stripped): build with symbols (RelWithDebInfo)")
    print("| model | cycles for 8 independent ymm FMAs | for 8 zmm FMAs |")
    print("|---|---|---|")
    for core in ("znver1", "znver3", "skylake-avx512"):
        zmm = fma_calibration(core, "zmm") if core == "skylake-avx512" else float("nan")
        print(f"| {core} | {fma_calibration(core, 'ymm'):.2f} | {zmm:.2f} |")
    print()
    print("znver1: each vpermps modelled as three in-lane permutes (VPERMPS in this file).")
    print()
    print("| pass | level | core | cycles per 8 floats (loop size) |")
    print("|---|---|---|---|")
    for name, pattern, marker in PASSES:
        for level, lanes in LEVELS.items():
            matches = [k for k in table if f"fastsoftmax::{level}::" in k and re.search(pattern, k)]
            if not matches:
                compiled = any(f"fastsoftmax::{level}::" in k for k in table)
                if level in SCANS_AHEAD and compiled:  # every pass is compiled there
                    sys.exit(f"no function for {name!r} at {level}: has its name changed?")
                continue
            grouped = name in (GROUP_SOFTMAX, GROUP_LOG_SOFTMAX)
            if grouped and level not in SCANS_AHEAD:
                continue
            if name == GROUP_LOG_SOFTMAX and level not in FROM_X_LEVELS:
                continue
            # Loops with forward branches: the groups' (the test that skips the
            # next row's scan) and the split sums' (a block holding the max
            # takes its count out of line); the model follows the path that
            # falls through.
            forward = grouped or "split sum" in name
            asm = hot_loop(disassemble(so, *table[matches[0]]), marker, forward_branches=forward)
            floats = (1 if name in ONE_VECTOR else 4) * lanes
            for core in CORES[level]:
                per_8 = cycles(asm, core) * 8 / floats
                size = f"{len(asm) - 2} instructions, {floats} floats"
                print(f"| {name} | {level} | {core} | {per_8:.2f} ({size}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
