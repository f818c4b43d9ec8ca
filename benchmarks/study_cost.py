"""What a whole study costs on this machine: cold and warm wall time, in seconds and in reference images.

Run from the repository root:
    .venv/bin/python benchmarks/study_cost.py [--profile smoke] [--data-dir DIR] [--no-warm] [--set name=value ...]

Measures, in one run: the bare ResNet50 training throughput at 96 px
(``training_speed.bare_resnet50_rate``, the machine's yardstick), then
``lesionscan study`` cold (a new artifacts folder, so an empty training cache)
and warm (the same command again, every model from the cache). A study's cost
in "reference images" is its wall time times the bare throughput: about the
same figure on a fast and a slow machine, so budgets can be stated once
(issue 12: smoke cold at most 9,000, warm at most 90 s; cpu cold at most
108,000, an hour at 30 images/s). Peak memory is that of the largest process
of the study (a chapter's kernel), from ``getrusage(RUSAGE_CHILDREN)``.
Never run by the tests.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from training_speed import print_bare_rate  # noqa: E402  (benchmarks/ is the script's folder)

BUDGETS = {"smoke": 9_000, "cpu": 108_000}  # cold cost in reference images (issue 12)
WARM_SECONDS = {"smoke": 90}


def run_study(command: list[str], log: Path) -> float:
    """Wall seconds of ``command``, its output written to ``log``."""
    start = time.perf_counter()
    with open(log, "w") as out:
        code = subprocess.call(command, stdout=out, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    if code:
        sys.exit(f"{' '.join(command)} failed with exit code {code}; its output is in {log}")
    return seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--data-dir", help="HAM10000 folder (the cpu and paper profiles)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="passed to lesionscan study")
    parser.add_argument("--no-warm", action="store_true", help="skip the warm rerun")
    parser.add_argument("--keep", help="write the runs here (default: a temporary folder, deleted)")
    args = parser.parse_args(argv)

    bare = print_bare_rate()
    with tempfile.TemporaryDirectory(prefix="lesionscan-cost-") as tmp:
        folder = Path(args.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        command = [str(Path(sys.executable).with_name("lesionscan")), "study", "--profile", args.profile,
                   "--artifacts", str(folder / "artifacts")]
        command += ["--data-dir", args.data_dir] if args.data_dir else []
        for setting in args.set:
            command += ["--set", setting]
        print("$ " + " ".join(command), flush=True)
        cold = run_study(command, folder / "cold.log")
        # The largest child process so far (a chapter's kernel); measured before the warm run, it is the cold's.
        cold_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"cold: {cold:.0f} s, {cold * bare:,.0f} reference images, peak {cold_mb:,.0f} MB", flush=True)
        rows = [("bare ResNet50 at 96 px (images/s)", f"{bare:.1f}", "-"),
                (f"{args.profile} cold (s)", f"{cold:.0f}", "-"),
                (f"{args.profile} cold (reference images)", f"{cold * bare:,.0f}",
                 f"<= {BUDGETS[args.profile]:,}" if args.profile in BUDGETS else "-"),
                (f"{args.profile} cold peak memory (MB)", f"{cold_mb:,.0f}", "-")]
        if not args.no_warm:
            warm = run_study(command, folder / "warm.log")
            print(f"warm: {warm:.0f} s", flush=True)
            rows += [(f"{args.profile} warm (s)", f"{warm:.0f}",
                      f"<= {WARM_SECONDS[args.profile]}" if args.profile in WARM_SECONDS else "-"),
                     (f"{args.profile} warm (reference images)", f"{warm * bare:,.0f}", "-")]
    print()
    widths = [max(len(r[i]) for r in rows + [("measure", "value", "target")]) for i in range(3)]
    for row in [("measure", "value", "target"), tuple("-" * w for w in widths)] + rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
