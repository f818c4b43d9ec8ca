"""One run's folder: the one owner of every path under ``ARTIFACTS/PROFILE/``, and the run's parameters.

Every chapter opens the same run and finds there what earlier chapters
wrote. Paths are made here only: declared results (``study.results``) through
:meth:`Run.path`, trained models through :meth:`Run.trained_path`, derived
splits through :meth:`Run.split_table`, the book's staging folder, logs and
manifest through their properties. A new run removes every output of an
earlier one (:meth:`Run.clear_outputs`); derived splits are keyed by
everything they depend on, so no run can read another run's split.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lesionscan.core import atomic, parameters
from lesionscan.core.errors import DataError, ParameterError
from lesionscan.study import results
from lesionscan.study.results import Result

PARAMS_FILE = "params.json"
# Everything a run writes besides params.json (and the synthetic data, shared under ARTIFACTS/data/).
OUTPUT_DIRS = ("models", "predictions", "metrics", "figures", "tables", "splits", "logs", "book", "_build")
OUTPUT_FILES = ("split.csv", "manifest.json")
BOOK_DIRS = ("book", "_build")
INCOMPLETE_SUFFIX = ".incomplete"  # ARTIFACTS/PROFILE.incomplete: a study still running, failed or interrupted


@dataclass
class Run:
    """The artifacts of one study run and the parameters it ran with (flat, as the user set them)."""

    dir: Path
    params: dict[str, Any]
    root: Path | None = None  # the artifacts folder (shared data and caches); default: the run folder's parent
    _parameters: parameters.StudyParameters | None = field(default=None, init=False, repr=False, compare=False)
    _data_checksum: str | None = field(default=None, init=False, repr=False, compare=False)
    _dataset: Any = field(default=None, init=False, repr=False, compare=False)
    _split_files: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def parameters(self) -> parameters.StudyParameters:
        """The parameters as typed sections (what the package's stages take)."""
        if self._parameters is None:
            self._parameters = parameters.sections(self.params)
        return self._parameters

    # --- where things live -------------------------------------------------
    @property
    def data_dir(self) -> Path:
        return Path(self.params["data_dir"])

    @property
    def manifest_path(self) -> Path:
        return self.dir / "manifest.json"

    @property
    def stage_dir(self) -> Path:
        """Where the book is assembled (sources and executed chapters) before ``jupyter-book build``."""
        return self.dir / "book"

    def generated_page(self, name: str) -> Path:
        """A book page the run writes (findings, appendix, the manifest it links), beside the hand-written ones."""
        return self.stage_dir / "book" / name

    @property
    def html_index(self) -> Path:
        """The built book's front page (``jupyter-book build --path-output`` is the run folder)."""
        return self.dir / "_build" / "html" / "index.html"

    def log_path(self, chapter: str) -> Path:
        """The kernel's stderr while ``chapter`` ran."""
        return self.dir / "logs" / f"{chapter}.stderr.log"

    def path(self, result: Result) -> Path:
        """Where the declared ``result`` lives."""
        return self.dir / result.relative_path

    def trained_path(self, name: str, what: str) -> Path:
        """A file of trained model ``name``: ``what`` is model, history, predictions or metrics."""
        folder, pattern = results.TRAINED[what]
        return self.dir / folder / pattern.format(name=name)

    def model_path(self, name: str) -> Path:
        return self.trained_path(name, "model")

    def history_path(self, name: str) -> Path:
        return self.trained_path(name, "history")

    def predictions_path(self, name: str) -> Path:
        return self.trained_path(name, "predictions")

    def metrics_path(self, name: str) -> Path:
        return self.trained_path(name, "metrics")

    # --- declared results --------------------------------------------------
    def save(self, result: Result, value) -> Any:
        """Write a declared result (table: DataFrame, statement: dict, figure: Figure); return it for display.

        A figure is closed after writing (which keeps the inline backend from
        showing it twice); the returned figure still renders in the notebook.
        """
        path = self.path(result)
        if result.kind in (results.TABLE, results.SPLIT):
            atomic.write_csv(path, value)
        elif result.kind == results.STATEMENT:
            atomic.write_json(path, value)
        elif result.kind == results.FIGURE:
            from lesionscan.figures.style import save_figure

            save_figure(value, path)
        else:
            raise ValueError(f"result {result.name!r} has unknown kind {result.kind!r}")
        return value

    def read(self, result: Result):
        """A declared result as written (table: DataFrame, statement: dict); missing: :class:`results.MissingResult`."""
        path = self.path(result)
        if not path.exists():
            raise result.missing(path)
        if result.kind in (results.TABLE, results.SPLIT):
            import pandas as pd

            return pd.read_csv(path)
        if result.kind == results.STATEMENT:
            return json.loads(path.read_text())
        raise ValueError(f"result {result.name!r} is a {result.kind}: read it from {path}")

    def read_predictions(self, name: str):
        """The test predictions of trained model ``name``, written by the chapter that trains it."""
        import pandas as pd

        path = self.predictions_path(name)
        if not path.exists():
            raise results.missing_trained(name, "predictions", path)
        return pd.read_csv(path)

    def read_metrics(self, name: str) -> dict:
        """The test metrics of trained model ``name``, written by the chapter that trains it."""
        path = self.metrics_path(name)
        if not path.exists():
            raise results.missing_trained(name, "metrics", path)
        return json.loads(path.read_text())

    def trained_metrics(self) -> dict[str, dict]:
        """The metrics of every model trained (or reused) in this run so far, by name."""
        folder, _ = results.TRAINED["metrics"]
        out = {}
        for path in sorted((self.dir / folder).glob("*.json")):
            metrics = json.loads(path.read_text())
            if "training" in metrics:  # the other files there are declared statements
                out[path.stem] = metrics
        return out

    # --- splits ---------------------------------------------------------------
    def split_file(self, protocol: str | None = None) -> Path:
        """The split of ``protocol`` (default: the run's) as a file, made once under a key of all it depends on.

        The key hashes the data's metadata (image, lesion and class of every
        image), the protocol, the seed and both fractions: another seed,
        another data folder or other fractions give another file, so a split
        of an earlier run is never read by mistake.
        """
        from lesionscan.data import split

        p = self.parameters
        protocol = protocol or p.split.protocol
        if protocol in self._split_files:
            return self._split_files[protocol]
        dataset = self.dataset
        digest = hashlib.sha256()
        digest.update(dataset[["image_id", "lesion_id", "dx"]].to_csv(index=False).encode())
        digest.update(f"{protocol}|{p.seed}|{p.split.val_fraction!r}|{p.split.test_fraction!r}".encode())
        path = self.dir / "splits" / f"{protocol}-{digest.hexdigest()[:16]}.csv"
        if not path.exists():
            table = split.make_split(dataset, protocol, seed=p.seed, val_fraction=p.split.val_fraction,
                                     test_fraction=p.split.test_fraction)
            split.write_split(table, path)
        self._split_files[protocol] = path
        return path

    @property
    def dataset(self):
        """The data's table (``ham10000.load_dataset``, images located, not decoded), read once per run object."""
        if self._dataset is None:
            from lesionscan.data import ham10000

            self._dataset = ham10000.load_dataset(self.data_dir, verify_images=False)
        return self._dataset

    def split_table(self, protocol: str | None = None):
        """The split of ``protocol`` (default: the run's) as a table (see :meth:`split_file`)."""
        from lesionscan.data import split

        return split.read_split(self.split_file(protocol))

    @property
    def data_checksum(self) -> str:
        """The data's checksum (``ham10000.data_checksum``), computed once per run object."""
        if self._data_checksum is None:
            from lesionscan.data import ham10000

            self._data_checksum = ham10000.data_checksum(self.data_dir)
        return self._data_checksum

    @property
    def artifacts(self) -> Path:
        """The artifacts folder: its ``data/`` and ``.cache/`` are shared by every run under it."""
        return self.root if self.root is not None else self.dir.parent

    @property
    def training_cache_dir(self) -> Path:
        """The training cache shared by every run under the same artifacts folder (outside each run's folder)."""
        return self.artifacts / ".cache" / "training"

    @property
    def map_cache_dir(self) -> Path:
        """Chapter 6's map scores, cached beside the models they were computed from."""
        return self.artifacts / ".cache" / "maps"

    # --- a new run ---------------------------------------------------------
    def clear_outputs(self, keep_book: bool = False) -> None:
        """Remove every output of an earlier run, so nothing this run shows can come from another.

        ``keep_book`` leaves the last built book (``book/``, ``_build/``) alone: a chapter run on its own
        with other parameters must not read the old results, but need not unpublish the old book.
        """
        for name in OUTPUT_DIRS:
            if keep_book and name in BOOK_DIRS:
                continue
            if (self.dir / name).exists():
                shutil.rmtree(self.dir / name)
        for name in OUTPUT_FILES:
            (self.dir / name).unlink(missing_ok=True)

    def output_files(self) -> dict[str, tuple[int, int]]:
        """Every file the chapters wrote so far (relative path -> modification time, size), for the manifest."""
        found = {}
        for name in ("models", "predictions", "metrics", "figures", "tables", "splits", *OUTPUT_FILES):
            base = self.dir / name
            for path in ([base] if base.is_file() else sorted(base.rglob("*")) if base.is_dir() else []):
                if path.is_file() and not path.name.startswith("."):
                    stat = path.stat()
                    found[path.relative_to(self.dir).as_posix()] = (stat.st_mtime_ns, stat.st_size)
        return found

    # --- data description ------------------------------------------------
    @property
    def is_synthetic(self) -> bool:
        """Whether the run's images are generated: the profile's own set, or a ``data synth`` folder (its marker)."""
        from lesionscan.data import synthetic

        return self.parameters.data.source == "synthetic" or (self.data_dir / synthetic.MARKER).exists()

    @property
    def data_label(self) -> str:
        """How the book names the data, so no synthetic result passes for a real one."""
        if self.is_synthetic:
            return "synthetic data (generated by lesionscan, not real dermoscopy)"
        return f"HAM10000 images from {self.data_dir.name}"

    @property
    def weights_label(self) -> str:
        w = self.parameters.model.weights
        if w == "none":
            return "random-initialised ResNet50 (no ImageNet weights)"
        if w == "imagenet":
            return "ResNet50 with ImageNet weights"
        return f"ResNet50 with weights from {Path(w).name}"


def synthetic_data_dir(artifacts: Path, params: dict[str, Any]) -> Path:
    """Where the synthetic set of these parameters lives; shared between runs that agree."""
    return artifacts / "data" / (
        f"synthetic-n{params['synthetic_images']}-s{params['synthetic_size']}-seed{params['seed']}")


def prepare_data(artifacts: Path, params: dict[str, Any], data_dir: str | os.PathLike | None) -> Path:
    """Return the data directory of a run, generating the synthetic set if needed."""
    if params["data"] == "synthetic" and data_dir is None:
        from lesionscan.data import synthetic

        target = synthetic_data_dir(artifacts, params)
        if not (target / synthetic.METADATA_FILE).exists():
            print(f"Generating {params['synthetic_images']} synthetic images in {target} ...", flush=True)
            synthetic.generate(target, n_images=params["synthetic_images"], size=params["synthetic_size"],
                               seed=params["seed"], progress=True)
        return target.resolve()
    return given_data_dir(params, data_dir)


def given_data_dir(params: dict[str, Any], data_dir: str | os.PathLike | None) -> Path:
    """The folder a run on real data reads (``--data-dir``), refused if missing or not a folder."""
    if data_dir is None:
        raise ParameterError(
            f"profile {params['profile']!r} runs on real data: pass --data-dir DIR "
            "(a folder in the HAM10000 layout; `lesionscan data check DIR` validates it)")
    path = Path(data_dir)
    if not path.is_dir():
        raise DataError(f"--data-dir {path}: " + ("not found" if not path.exists() else "is a file; expected a folder"))
    return path.resolve()


def complete_dir(artifacts: str | os.PathLike, profile: str) -> Path:
    """Where the last complete run of ``profile`` lives (what the book and a chapter opened by hand read)."""
    return Path(artifacts).resolve() / profile


def incomplete_dir(artifacts: str | os.PathLike, profile: str) -> Path:
    """Where ``lesionscan study`` writes a run until it has finished: a failed run stays here, marked so."""
    return Path(artifacts).resolve() / f"{profile}{INCOMPLETE_SUFFIX}"


def create(profile: str, artifacts: str | os.PathLike = "artifacts", data_dir: str | os.PathLike | None = None,
           overrides=(), run_dir: str | os.PathLike | None = None) -> Run:
    """Resolve the parameters, prepare the data and write ``params.json``.

    ``run_dir``: the folder to write in (``lesionscan study`` gives a new one,
    :func:`incomplete_dir`); default ``ARTIFACTS/PROFILE``. When the parameters
    differ from those the folder last ran with, the earlier run's outputs are
    removed first: a chapter run on its own with a changed knob must not read
    a model or table the old parameters made.
    """
    params = parameters.resolve(profile, overrides)
    if data_dir is not None:
        params["data"] = "directory"
    if params["external_test_dir"]:  # the chapters run elsewhere: a relative path means the caller's folder
        params["external_test_dir"] = str(Path(params["external_test_dir"]).expanduser().resolve())
    artifacts = Path(artifacts).resolve()
    params["data_dir"] = str(prepare_data(artifacts, params, data_dir))
    run = Run(dir=Path(run_dir).resolve() if run_dir is not None else complete_dir(artifacts, profile), params=params,
              root=artifacts)
    run.dir.mkdir(parents=True, exist_ok=True)
    params_file = run.dir / PARAMS_FILE
    if not params_file.exists() or json.loads(params_file.read_text()) != json.loads(json.dumps(params)):
        run.clear_outputs(keep_book=True)  # other parameters: nothing an earlier run left may be read as this run's
    atomic.write_json(params_file, params)
    return run


def open_run(profile: str = "smoke", artifacts: str | os.PathLike = "artifacts",
             data_dir: str | os.PathLike | None = None, overrides: dict | None = None,
             run_dir: str | os.PathLike | None = None) -> Run:
    """The run a chapter works in.

    Inside ``lesionscan study`` the run already exists in ``run_dir`` (the
    chapter's parameter) and its ``params.json`` is the truth. A chapter run
    on its own (an instructor changing a knob in the parameters cell) works
    in ``ARTIFACTS/PROFILE``, creating or updating the run with its overrides.
    """
    artifacts = Path(artifacts).resolve()
    if run_dir is not None:
        params_file = Path(run_dir) / PARAMS_FILE
        if not params_file.exists():
            raise ParameterError(f"run_dir={run_dir}: no {PARAMS_FILE} there; it is set by `lesionscan study` (leave "
                                 "it None to work in ARTIFACTS/PROFILE)")
        return Run(dir=Path(run_dir).resolve(), params=json.loads(params_file.read_text()), root=artifacts)
    folder = complete_dir(artifacts, profile)
    params_file = folder / PARAMS_FILE
    if params_file.exists() and not overrides and data_dir is None:
        return Run(dir=folder, params=json.loads(params_file.read_text()), root=artifacts)
    return create(profile, artifacts, data_dir, overrides or {})
