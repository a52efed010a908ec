"""A/B: this tree against another commit, W1-W3, alternating, in one invocation.

    python benchmarks/ab.py [--base REF] [--rounds 5] [--stores memory,sqlite] [--quick]

The other commit (default ``HEAD~1``) is checked out once into a temporary git worktree.
Each round runs every workload and store once per side (``run.py --child``, a fresh
process each, 3 timed runs), the sides alternating so the host's drift hits both alike.
It prints, per workload and store, the median over rounds of each side's median wall and
CPU µs per task, and the ratio this tree / base: the honest figure on a noisy machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def child(tree: Path, workload: str, store: str, quick: bool) -> dict[str, Any]:
    cmd = [sys.executable, str(tree / "benchmarks" / "run.py"), "--child", workload]
    cmd += ["--stores", store, "--repeat", "3"] + (["--quick"] if quick else [])
    env = {**os.environ, "PYTHONPATH": str(tree)}
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env, cwd=tree)
    if proc.returncode != 0:
        raise RuntimeError(f"{tree}: {workload} on {store} failed:\n{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="HEAD~1", help="the commit to compare against")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--stores", default="memory,sqlite")
    parser.add_argument("--workloads", default="W1,W2,W3")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    stores = args.stores.split(",")
    workloads = args.workloads.split(",")
    with tempfile.TemporaryDirectory(prefix="statecore-ab-") as tmp:
        base = Path(tmp) / "base"
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "--detach", str(base), args.base],
            check=True,
            capture_output=True,
        )
        try:
            sides = {"base": base, "this": REPO}
            got: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
            for r in range(args.rounds):
                order = ["base", "this"] if r % 2 == 0 else ["this", "base"]
                for wl in workloads:
                    for store in stores:
                        for side in order:
                            res = child(sides[side], wl, store, args.quick)
                            got.setdefault((wl, store, side), []).append(
                                (res["median_us_per_task"], res["median_cpu_us_per_task"])
                            )
                print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
        finally:
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "remove", "--force", str(base)],
                check=False,
                capture_output=True,
            )
    print(f"# A/B: this tree vs {args.base}, median of {args.rounds} alternating rounds")
    print("| workload | store | base µs/task (CPU) | this µs/task (CPU) | ratio wall | ratio CPU |")
    print("|---|---|---:|---:|---:|---:|")
    for wl in workloads:
        for store in stores:
            b = got[(wl, store, "base")]
            t = got[(wl, store, "this")]
            bw, bc = statistics.median(x for x, _ in b), statistics.median(y for _, y in b)
            tw, tc = statistics.median(x for x, _ in t), statistics.median(y for _, y in t)
            print(
                f"| {wl} | {store} | {bw:.1f} ({bc:.1f}) | {tw:.1f} ({tc:.1f}) "
                f"| {tw / bw:.2f} | {tc / bc:.2f} |"
            )


if __name__ == "__main__":
    main()
