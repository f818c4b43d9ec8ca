"""What ``lesionscan evaluate`` costs on a folder the size of the ISIC 2018 Task 3 test set (1,512 images).

Run from the repository root:
    .venv/bin/python benchmarks/evaluate_speed.py [--images 1512] [--size 96] [--kind soft_attention]
                                                  [--data DIR] [--model M.keras]

Prints the machine's bare ResNet50 training throughput first (the yardstick
every time is reported beside), then writes, unless given, a synthetic
external set in the ISIC 2018 layout at the challenge's image size (600 x
450 JPEGs, as the archives hold them) and a random-initialised model of
``--kind`` at ``--size`` px, and runs ``lesionscan evaluate`` on it in a
child process: wall time, images per second and the child's peak memory
(``getrusage(RUSAGE_CHILDREN)``). The metrics are meaningless (synthetic
images, an untrained model); the cost is what is measured. Never run by the
tests.
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

ISIC_WIDTH = 600  # the challenge's images are 600 x 450


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1512)
    parser.add_argument("--size", type=int, default=96, help="the model's input size in px")
    parser.add_argument("--kind", default="soft_attention")
    parser.add_argument("--data", help="an existing labelled folder (default: a synthetic ISIC 2018 set)")
    parser.add_argument("--model", help="an existing .keras model (default: a random-initialised one)")
    args = parser.parse_args(argv)

    bare = print_bare_rate()
    with tempfile.TemporaryDirectory(prefix="lesionscan-evaluate-") as tmp:
        data = args.data
        if data is None:
            from lesionscan.data import synthetic

            started = time.perf_counter()
            data = synthetic.generate_isic2018(Path(tmp) / "isic", n_images=args.images, size=ISIC_WIDTH, seed=1)
            print(f"wrote {args.images} synthetic {ISIC_WIDTH} x 450 images in {time.perf_counter() - started:.0f} s",
                  flush=True)
        model = args.model
        if model is None:
            from lesionscan.core.parameters import ModelSection
            from lesionscan.model import networks

            model = Path(tmp) / f"{args.kind}.keras"
            networks.build_model(args.kind, args.size, ModelSection(weights="none")).save(model)
        command = [sys.executable, "-m", "lesionscan.cli", "evaluate", "--model", str(model), "--data", str(data),
                   "--out", str(Path(tmp) / "predictions.csv")]
        started = time.perf_counter()
        code = subprocess.call(command)
        seconds = time.perf_counter() - started
        if code:
            sys.exit(f"{' '.join(command)} failed with exit code {code}")
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"\nevaluate: {args.images:,} images at {args.size} px ({args.kind}) in {seconds:.0f} s "
          f"({args.images / seconds:.0f} images/s, start-up included), peak memory {peak_mb:,.0f} MB; "
          f"bare ResNet50 {bare:.1f} images/s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
