"""Where the wall time goes: py-spy samples ``run.py --child`` and this folds the stacks.

    python benchmarks/spy.py [--workload W3] [--store sqlite] [--runs 20] [--top 25]

py-spy (``pip install py-spy``) samples every thread of a fresh ``run.py --child``
process at ``--rate`` Hz while it runs the workload ``--runs`` times on fresh stores; the
warm-up and the flow build are in the samples too, so the flow is built once and the
runs dominate. It prints the share of samples each function holds itself (self) and under
it (total), and the same per statecore module, for the driver thread (the one that calls
``flow.run``) and for all threads. Unlike cProfile, sampling does not inflate small calls.
``--svg FILE`` also writes py-spy's flame graph, ``--raw FILE`` keeps the folded stacks.
A thread blocked in a C call (a queue's ``get``) can count as active: read the driver
thread's block first.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _frame_name(frame: str) -> tuple[str, str]:
    """``func (path/to/file.py:12)`` -> (``file.py:func``, module-ish path)."""
    func, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0]
    if "/statecore/" in path:
        short = "statecore/" + path.split("/statecore/", 1)[1]
    elif "/site-packages/" in path:
        short = path.split("/site-packages/", 1)[1]
    elif "/lib/python3" in path:
        short = "stdlib/" + path.split("/lib/python3", 1)[1].split("/", 1)[-1]
    else:
        short = os.path.basename(path)
    return f"{short}:{func}", short


def summarise(raw: Path, top: int) -> str:
    self_by: collections.Counter[str] = collections.Counter()
    total_by: collections.Counter[str] = collections.Counter()
    module_self: collections.Counter[str] = collections.Counter()
    driver_self: collections.Counter[str] = collections.Counter()
    samples = driver = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";")[1:]]  # [0] is the thread
        if not frames:
            continue
        samples += count
        leaf, leaf_module = frames[-1]
        self_by[leaf] += count
        module_self[leaf_module] += count
        for name in {name for name, _ in frames}:
            total_by[name] += count
        if any(name.endswith("flow.py:Flow.run") for name, _ in frames):
            driver += count
            driver_self[leaf] += count
    out = [f"{samples} samples, {driver} in the driver thread (under Flow.run)", ""]

    def block(title: str, counter: collections.Counter[str], base: int) -> None:
        out.append(title)
        for name, n in counter.most_common(top):
            out.append(f"  {n / max(base, 1):6.1%}  {name}")
        out.append("")

    block("driver thread, self:", driver_self, driver)
    block("all threads, self:", self_by, samples)
    block("all threads, total (inclusive):", total_by, samples)
    block("all threads, self by file:", module_self, samples)
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", default="W3")
    parser.add_argument("--store", default="sqlite")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--rate", type=int, default=250)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--svg", help="also write a flame graph here")
    parser.add_argument("--raw", help="keep py-spy's folded stacks here")
    args = parser.parse_args(argv)
    spy = shutil.which("py-spy")
    if spy is None:
        print("py-spy is not installed: pip install py-spy", file=sys.stderr)
        return 1
    child = [sys.executable, str(HERE / "run.py"), "--child", args.workload]
    child += ["--stores", args.store, "--repeat", str(args.runs)]
    with tempfile.TemporaryDirectory(prefix="statecore-spy-") as tmp:
        raw = Path(tmp) / "stacks.txt"
        cmd = [spy, "record", "--rate", str(args.rate), "--threads", "--format", "raw"]
        subprocess.run([*cmd, "-o", str(raw), "--", *child], check=True, capture_output=True)
        if args.svg:
            svg = [spy, "record", "--rate", str(args.rate), "-o", args.svg, "--", *child]
            subprocess.run(svg, check=True, capture_output=True)
        print(f"# {args.workload} on {args.store}, {args.runs} runs, py-spy at {args.rate} Hz")
        print(summarise(raw, args.top))
        if args.raw:
            shutil.copyfile(raw, args.raw)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
