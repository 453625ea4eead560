"""What counting bytes and tracking memory add to a fake-mode analysis.

    python benchmarks/cost_overhead.py                       # this checkout
    python benchmarks/cost_overhead.py --baseline /path/to/other/checkout

Each case (ResNet-50 and BERT-base in fake mode, Llama-2-70B's shape on the meta device) is built
once per process, analysed once to warm up, then timed `--repeats` times. With `--baseline`, the
same runs are made in a subprocess that imports torchtally from the other checkout (e.g. a
worktree of the commit before), alternating with this one, and the ratio of the medians is shown.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

CASES = ("resnet50", "bert_base", "llama70b-80")


def time_case(case: str, repeats: int) -> list[float]:
    from benchmark import build_case

    import torchtally

    mode = "meta" if case.startswith("llama70b") else "fake"
    model, args = build_case(case, device="meta" if mode == "meta" else None)
    torchtally.analyze(model, args, mode=mode, warn_unsupported=False)  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        torchtally.analyze(model, args, mode=mode, warn_unsupported=False)
        times.append(time.perf_counter() - started)
    return times


def checkout_env(root: Path) -> dict[str, str]:
    packages = sorted(str(p) for p in (root / "packages").glob("*/src"))
    return {**os.environ, "PYTHONPATH": os.pathsep.join(packages), "OMP_NUM_THREADS": "1"}


def run_in(root: Path, case: str, repeats: int) -> list[float]:
    command = [sys.executable, __file__, "--worker", case, "--repeats", str(repeats)]
    done = subprocess.run(
        command, env=checkout_env(root), capture_output=True, text=True, check=True
    )
    times: list[float] = json.loads(done.stdout.strip().splitlines()[-1])
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="alternations with --baseline")
    parser.add_argument("--baseline", type=Path, help="another checkout to compare with")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(time_case(args.worker, args.repeats)))
        return 0
    this = HERE.parent
    print("| case | this s (median) | baseline s (median) | ratio |")
    print("|------|-----------------|---------------------|-------|")
    for case in args.cases:
        ours: list[float] = []
        theirs: list[float] = []
        for _ in range(args.rounds if args.baseline else 1):
            ours += run_in(this, case, args.repeats)
            if args.baseline:
                theirs += run_in(args.baseline, case, args.repeats)
        mine = statistics.median(ours)
        if theirs:
            base = statistics.median(theirs)
            print(f"| {case} | {mine:.4f} | {base:.4f} | {mine / base:.3f} |")
        else:
            print(f"| {case} | {mine:.4f} | | |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
