"""The paper profile's protocol, proven to run: the whole study on the real images at 224 px, counts shrunk.

Run from the repository root (the real HAM10000 in the official layout, with its lesion masks):
    nice -n 15 .venv/bin/python benchmarks/paper_dry_run.py --data-dir DIR [--keep DIR] [--set name=value ...]

Prints the machine's bare ResNet50 throughput first (``training_speed.bare_resnet50_rate``
at 96 px, batch 32: the yardstick every time is quoted beside), writes a ResNet50 no-top
weights file with random values in the layout of Keras' ImageNet file
(``lesionscan.model.backbone_weights.write_random_weights``), then runs

    lesionscan study --profile paper --data-dir DIR --set weights=FILE --set <counts>

in a subprocess with an artifacts folder of its own, measuring its wall time and its peak
memory: that of the largest process of the study (a chapter's kernel, ``getrusage`` of a
wrapper process's children, as ``study_cost.py`` measures it) and that of the whole process
tree at once (sampled from ``/proc`` every second). Only counts are shrunk (:data:`COUNTS`):
images per class and epoch, epochs of each phase, extra seeds, ablation variants, leakage
protocols, example images per class, bootstrap resamples. Every fraction, size and switch is
the paper profile's: 224 px, the seed split's 15 % validation and 15 % test subsets (about
1,500 images each, all predicted at 224 px), two-phase training with phase 1 on cached
features, the last 40 % of the backbone unfrozen in phase 2, the full ablation mode, the map
scores over every test image with a mask, the book.

Then :func:`checks` reads the run's artifacts and prints a table: the study finished with only
counts changed; both phases ran; phase 1 trained on cached backbone features at 224 px;
phase 2 trained the last 40 % of the backbone with batch normalisation frozen (inference
mode); the trained backbones still hold the weights file's values wherever they were frozen
(so ``weights=PATH`` was loaded, and no batch-norm statistic moved); the attention maps are
7 x 7 and were scored against the lesion masks; the book's index.html exists. The slow test
``tests/e2e/test_paper_dry_run.py`` runs the same :func:`dry_run` and asserts the same checks.
Never run by the fast tests.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PAPER_SIZE = 224
# The paper profile's settings that are counts, shrunk; nothing else is changed (checked by ``checks``).
COUNTS = {
    "balance_target": "8",        # images per class and epoch (paper: 2,000)
    "epochs_phase1": "1",         # frozen-backbone epochs (paper: 20)
    "epochs_phase2": "1",         # fine-tuning epochs (paper: 50)
    "extra_seeds": "",            # more training seeds of both main models (paper: 1,2)
    "ablation_models": "",        # ablation variants beside the two main models (paper: three)
    "leakage_protocols": "",      # more split protocols for the SA model (paper: image,lesion)
    "explain_per_class": "1",     # example images per class in chapter 6 (paper: 2)
    "bootstrap_resamples": "20",  # resamples of every interval (paper: 1,000)
}
MAIN_MODELS = ("baseline", "soft_attention")

# The study in a wrapper process, whose children's peak RSS (ru_maxrss) is the study's largest process alone.
_WRAPPER = """
import json, resource, subprocess, sys
code = subprocess.call(sys.argv[2:])
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
with open(sys.argv[1], "w") as out:
    json.dump({"code": code, "peak_process_mb": peak}, out)
sys.exit(code)
"""


@dataclass
class DryRun:
    """What one dry run left: its run folder, weights file, log, exit code, wall time and peak memory."""

    run_dir: Path
    weights: Path
    log: Path
    code: int
    seconds: float
    peak_process_mb: float | None
    peak_tree_mb: float | None
    command: list[str]

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


# --- running -----------------------------------------------------------------------------------------------------


def _tree_rss_bytes(root: int) -> int | None:
    """Resident memory of ``root`` and all its descendants now, from /proc (None where there is no /proc)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    parents: dict[int, int] = {}
    for entry in proc.iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree, grew = {root}, True
    while grew:
        new = {pid for pid, parent in parents.items() if parent in tree and pid not in tree}
        tree |= new
        grew = bool(new)
    page, total = os.sysconf("SC_PAGE_SIZE"), 0
    for pid in tree:
        try:
            total += int((proc / str(pid) / "statm").read_text().split()[1]) * page
        except (OSError, IndexError, ValueError):
            continue
    return total


def study_command(data_dir, artifacts, weights, counts: dict[str, str] = COUNTS, extra=()) -> list[str]:
    """``lesionscan study --profile paper`` on ``data_dir`` with the weights file and the shrunk counts."""
    command = [str(Path(sys.executable).with_name("lesionscan")), "study", "--profile", "paper",
               "--data-dir", str(data_dir), "--artifacts", str(artifacts), "--set", f"weights={weights}"]
    for name, value in counts.items():
        command += ["--set", f"{name}={value}"]
    for setting in extra:
        command += ["--set", setting]
    return command


def dry_run(data_dir, folder, counts: dict[str, str] = COUNTS, extra=(), seed: int = 0) -> DryRun:
    """Write the random weights file in ``folder``, run the study there; wall time and peak memory.

    ``folder`` receives ``resnet50_random_notop.h5``, ``artifacts/`` and ``study.log``.
    """
    from lesionscan.model import backbone_weights

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = backbone_weights.write_random_weights(folder / "resnet50_random_notop.h5", seed=seed)
    artifacts, log, report = folder / "artifacts", folder / "study.log", folder / "wrapper.json"
    command = study_command(data_dir, artifacts, weights, counts, extra)
    peak_tree = [0]
    start = time.perf_counter()
    with open(log, "w") as out:
        wrapper = subprocess.Popen([sys.executable, "-c", _WRAPPER, str(report), *command], stdout=out,
                                   stderr=subprocess.STDOUT)
        done = threading.Event()

        def sample():
            while not done.wait(1.0):
                now = _tree_rss_bytes(wrapper.pid)
                if now is None:
                    return
                peak_tree[0] = max(peak_tree[0], now)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            code = wrapper.wait()
        finally:
            done.set()
            sampler.join()
    seconds = time.perf_counter() - start
    measured = json.loads(report.read_text()) if report.exists() else {}
    return DryRun(run_dir=artifacts / "paper", weights=weights, log=log, code=code, seconds=seconds,
                  peak_process_mb=measured.get("peak_process_mb"),
                  peak_tree_mb=peak_tree[0] / 2**20 if peak_tree[0] else None, command=command)


# --- checking ----------------------------------------------------------------------------------------------------


def _history(run_dir: Path, name: str):
    import pandas as pd

    return pd.read_csv(run_dir / "models" / f"{name}_history.csv")


def _params(run_dir: Path) -> dict:
    return json.loads((run_dir / "params.json").read_text())


def _check_finished(run_dir: Path, weights: Path, image_size: int, counts: dict[str, str]) -> tuple[bool, str]:
    from lesionscan.core.parameters import PROFILES

    manifest = json.loads((run_dir / "manifest.json").read_text())
    params = _params(run_dir)
    paper = PROFILES["paper"]
    allowed = set(counts) | {"weights", "data"}
    changed = {name: (paper[name], params.get(name)) for name in paper if params.get(name) != paper[name]}
    others = sorted(set(changed) - allowed)
    chapters = {name: info["status"] for name, info in manifest["chapters"].items()}
    ok = (manifest["status"] == "ok" and params["profile"] == "paper" and not others
          and params["image_size"] == image_size and params["weights"] == str(weights)
          and all(status == "ok" for status in chapters.values()))
    shrunk = ", ".join(f"{name} {old!r}->{new!r}" for name, (old, new) in changed.items() if name in counts)
    detail = (f"status {manifest['status']}, {len(chapters)} steps ok: {', '.join(chapters)}; {image_size} px, "
              f"weights={Path(params['weights']).name}; counts changed: {shrunk}"
              + (f"; OTHER SETTINGS CHANGED: {', '.join(others)}" if others else ""))
    return ok, detail


def _check_phases(run_dir: Path) -> tuple[bool, str]:
    parts, ok = [], True
    for name in MAIN_MODELS:
        phases = _history(run_dir, name)["phase"].tolist()
        first_finetune = phases.index("finetune") if "finetune" in phases else 0
        ok &= first_finetune > 0 and set(phases[:first_finetune]) == {"frozen"} \
            and set(phases[first_finetune:]) == {"finetune"}
        parts.append(f"{name}: {', '.join(phases)}")
    return ok, "; ".join(parts)


def _load(run_dir: Path, name: str):
    from lesionscan.model import saving

    return saving.load_model(run_dir / "models" / f"{name}.keras")


def _check_cached_phase1(run_dir: Path, models: dict, image_size: int) -> tuple[bool, str]:
    from lesionscan.model.layers import BACKBONE_OUTPUT

    parts, ok = [], True
    grid = image_size // 32
    for name in MAIN_MODELS:
        history = _history(run_dir, name)
        inputs = dict(zip(history["phase"], history["inputs"])) if "inputs" in history else {}
        size = int(models[name].inputs[0].shape[1])
        features = tuple(models[name].get_layer(BACKBONE_OUTPUT).output.shape[1:])
        ok &= inputs.get("frozen") == "cached features" and inputs.get("finetune") == "images" \
            and size == image_size and features == (grid, grid, 2048)
        parts.append(f"{name}: frozen on {inputs.get('frozen')}, finetune on {inputs.get('finetune')}, input "
                     f"{size} px, backbone features {features}")
    return ok, "; ".join(parts)


def _trainable_plan(backbone: list, fraction: float) -> int:
    """Index of the first backbone layer phase 2 unfreezes (``train.set_phase``'s rule)."""
    return len(backbone) - round(len(backbone) * fraction)


def _check_phase2(run_dir: Path, models: dict) -> tuple[bool, str]:
    import keras

    from lesionscan.model import networks

    fraction = float(_params(run_dir)["unfreeze_fraction"])
    parts, ok = [], True
    for name in MAIN_MODELS:
        backbone = networks.backbone_layers(models[name])
        first = _trainable_plan(backbone, fraction)
        norm = [isinstance(layer, keras.layers.BatchNormalization) for layer in backbone]
        wrong = [layer.name for i, layer in enumerate(backbone) if layer.trainable != (i >= first and not norm[i])]
        unfrozen = sum(1 for i, layer in enumerate(backbone) if layer.trainable and layer.weights)
        frozen_norms = sum(1 for i in range(first, len(backbone)) if norm[i] and not backbone[i].trainable)
        ok &= not wrong and unfrozen > 0
        parts.append(f"{name}: layers {first + 1}-{len(backbone)} of {len(backbone)} ({len(backbone) - first}, "
                     f"{(len(backbone) - first) / len(backbone):.0%}) in the unfrozen part; {unfrozen} with weights "
                     f"trainable, its {frozen_norms} batch norms frozen (inference mode)"
                     + (f"; WRONG: {', '.join(wrong[:5])}" if wrong else ""))
    return ok, "; ".join(parts)


def _check_weights_file(run_dir: Path, models: dict, weights: Path) -> tuple[bool, str]:
    import keras
    import numpy as np

    from lesionscan.model import backbone_weights, networks

    arrays = backbone_weights.read_legacy_file(weights)
    fraction = float(_params(run_dir)["unfreeze_fraction"])
    parts, ok = [], True
    for name in MAIN_MODELS:
        backbone = networks.backbone_layers(models[name])
        first = _trainable_plan(backbone, fraction)
        kept, moved, norms, unfrozen, problems = 0, 0, 0, 0, []
        for i, layer in enumerate(backbone):
            if layer.name not in arrays:
                continue
            values, stored = layer.get_weights(), arrays[layer.name]  # both kernel, bias / gamma, beta, mean, var
            same = len(values) == len(stored) and all(np.array_equal(a, b) for a, b in zip(values, stored))
            is_norm = isinstance(layer, keras.layers.BatchNormalization)
            if i < first or is_norm:
                kept += same
                norms += is_norm and same
                if not same:
                    problems.append(layer.name)
            else:
                unfrozen += 1
                moved += not same
        ok &= not problems and moved > 0
        parts.append(f"{name}: {kept} frozen layers equal the file ({norms} batch norms, statistics included), "
                     f"{moved} of {unfrozen} unfrozen layers trained away from it"
                     + (f"; DIFFER: {', '.join(problems[:5])}" if problems else ""))
    return ok, "; ".join(parts)


def _check_attention_grid(run_dir: Path, models: dict, image_size: int) -> tuple[bool, str]:
    import numpy as np

    from lesionscan.data import ham10000
    from lesionscan.explain import attention
    from lesionscan.model import pipeline

    params = _params(run_dir)
    test_ids = _read_csv(run_dir / "predictions" / "soft_attention.csv")["image_id"]
    dataset = ham10000.load_dataset(params["data_dir"], verify_images=False).set_index("image_id")
    path = dataset.loc[test_ids.iloc[0], "image_path"]
    batch = pipeline.preprocess(pipeline.load_image(path, image_size)[None].astype("float32"))
    maps = attention.attention_maps(models["soft_attention"], batch)
    grid = image_size // 32
    ok = maps.shape == (1, grid, grid) and bool(np.isfinite(maps).all())
    return ok, f"soft_attention's map of test image {test_ids.iloc[0]}: {maps.shape[1]} x {maps.shape[2]}"


def _read_csv(path: Path):
    import pandas as pd

    return pd.read_csv(path)


def _check_mask_scores(run_dir: Path) -> tuple[bool, str]:
    verdict = json.loads((run_dir / "metrics" / "mask_agreement_verdict.json").read_text())
    if not verdict.get("scored"):
        return False, f"not scored: {verdict.get('reason')}"
    scores = _read_csv(run_dir / "tables" / "mask_agreement_scores.csv")
    table = _read_csv(run_dir / "tables" / "mask_agreement.csv")
    tested = len(_read_csv(run_dir / "predictions" / "soft_attention.csv"))
    methods = sorted(set(table["method"]))
    images = scores["image_id"].nunique()
    ok = "soft attention" in methods and images > 0
    return ok, (f"{images} of {tested} test images scored against their masks by {len(methods)} methods "
                f"(the reference maps included): {', '.join(methods)}")


def _check_book(run_dir: Path) -> tuple[bool, str]:
    from lesionscan.study.results import CHAPTERS

    html = run_dir / "_build" / "html"
    pages = [chapter for chapter in CHAPTERS if (html / "notebooks" / f"{chapter}.html").exists()]
    ok = (html / "index.html").is_file() and len(pages) == len(CHAPTERS)
    return ok, f"{html / 'index.html'}{'' if (html / 'index.html').is_file() else ' MISSING'}; " \
               f"{len(pages)} of {len(CHAPTERS)} chapter pages"


def checks(run_dir, weights, image_size: int = PAPER_SIZE, counts: dict[str, str] = COUNTS) -> list[Check]:
    """Every check of a dry run's artifacts in ``run_dir`` (ARTIFACTS/paper), one :class:`Check` each.

    A check that cannot be made (a file missing, say) fails with the reason; the others still run.
    """
    run_dir, weights = Path(run_dir), Path(weights)
    models: dict = {}

    def loaded():
        if not models:
            models.update({name: _load(run_dir, name) for name in MAIN_MODELS})
        return models

    plan = [
        ("study finished, paper profile, only counts shrunk", lambda: _check_finished(run_dir, weights, image_size,
                                                                                     counts)),
        ("both phases ran", lambda: _check_phases(run_dir)),
        (f"phase 1 on cached features at {image_size} px", lambda: _check_cached_phase1(run_dir, loaded(),
                                                                                         image_size)),
        ("phase 2: last 40 % of backbone trainable, batch norm frozen",
         lambda: _check_phase2(run_dir, loaded())),
        ("weights=PATH loaded; frozen layers and batch-norm statistics unchanged",
         lambda: _check_weights_file(run_dir, loaded(), weights)),
        (f"attention maps {image_size // 32} x {image_size // 32}",
         lambda: _check_attention_grid(run_dir, loaded(), image_size)),
        ("maps scored against the lesion masks", lambda: _check_mask_scores(run_dir)),
        ("book built", lambda: _check_book(run_dir)),
    ]
    out = []
    for name, check in plan:
        try:
            ok, detail = check()
        except Exception as exc:  # a missing or unreadable artifact fails this check, not the others
            ok, detail = False, f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
        out.append(Check(name, bool(ok), detail))
    return out


def table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    lines = [header, tuple("-" * w for w in widths)] + rows
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in lines)


def checks_table(results: list[Check]) -> str:
    return table([("PASS" if c.ok else "FAIL", c.name, c.detail) for c in results], ("", "check", "detail"))


def _chapter_seconds(run_dir: Path) -> list[tuple[str, str]]:
    try:
        manifest = json.loads((run_dir / "manifest.json").read_text())
    except (OSError, ValueError):
        return []
    return [(name, f"{info['seconds']:.0f}") for name, info in manifest["chapters"].items()]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="the real HAM10000 (official layout, with its masks)")
    parser.add_argument("--keep", help="write the weights, the run and its log here (default: a temporary "
                                       "folder under /tmp, deleted)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="passed to lesionscan study after the counts (to try other counts)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights file")
    args = parser.parse_args(argv)

    from training_speed import print_bare_rate  # benchmarks/ is the script's folder

    bare = print_bare_rate()
    with tempfile.TemporaryDirectory(prefix="lesionscan-paper-dry-run-", dir="/tmp") as tmp:
        folder = Path(args.keep or tmp)
        run = dry_run(args.data_dir, folder, extra=args.set, seed=args.seed)
        print("$ " + " ".join(run.command), flush=True)
        print(f"study: exit code {run.code}, {run.seconds:.0f} s, log {run.log}", flush=True)
        results = checks(run.run_dir, run.weights) if run.code == 0 else []
        if run.code:
            print(run.log_tail(), flush=True)
        print()
        rows = [("bare ResNet50 at 96 px (images/s)", f"{bare:.1f}"),
                ("dry run wall time (s)", f"{run.seconds:.0f}"),
                ("dry run wall time (reference images)", f"{run.seconds * bare:,.0f}"),
                ("peak memory, largest process (MB)",
                 f"{run.peak_process_mb:,.0f}" if run.peak_process_mb else "-"),
                ("peak memory, whole process tree (MB)", f"{run.peak_tree_mb:,.0f}" if run.peak_tree_mb else "-")]
        rows += [(f"  {name} (s)", seconds) for name, seconds in _chapter_seconds(run.run_dir)]
        print(table(rows, ("measure", "value")))
        if results:
            print()
            print(checks_table(results))
        return 0 if run.code == 0 and results and all(c.ok for c in results) else 1


if __name__ == "__main__":
    sys.exit(main())
