"""The ``lesionscan`` command: data tools and the one-command study.

One error path (:func:`main`): whatever goes wrong, the user sees one line
naming the file or parameter and what was expected, and exit status 2
(130 for Ctrl-C); an unexpected error (a bug) gets one line and status 1.
``--debug`` (or ``LESIONSCAN_DEBUG=1``) shows the whole traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from lesionscan.core.errors import DEBUG_VARIABLE, LesionScanError, Terminated, debug_requested


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error: what was wrong and where to read the options (no usage block)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _bounded(parameter: str):
    """An argparse type for a CLI option that sets study parameter ``parameter``: its type and range."""
    from lesionscan.core import parameters

    def parse(text: str):
        if parameter == "seed":
            try:
                parameters.check_seed("seed", text.strip())
            except LesionScanError:
                raise argparse.ArgumentTypeError(f"{text}: expected an integer from 0 to {parameters.SEED_MAX}") \
                    from None
            return int(text)
        f = parameters.field_of(parameter)
        try:
            value = type(f.default)(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: expected {parameters.allowed(f)}") from None
        try:
            parameters.check_value("", value, f)
        except LesionScanError:
            raise argparse.ArgumentTypeError(f"{text}: expected {parameters.allowed(f)}") from None
        return value
    parse.__name__ = parameter  # argparse names the type in some messages
    return parse


def _cmd_synth(args) -> None:
    from lesionscan.data import synthetic

    if args.isic2018:
        out = synthetic.generate_isic2018(args.dir, n_images=args.images, size=args.size, seed=args.seed,
                                          progress=True)
        print(f"wrote {args.images} synthetic images in the ISIC 2018 Task 3 layout to {out} (an external test set "
              "for `--set external_test_dir=...` or `lesionscan evaluate`)")
        return
    out = synthetic.generate(args.dir, n_images=args.images, size=args.size, seed=args.seed, progress=True)
    print(f"wrote {args.images} synthetic images to {out}")


def _cmd_check(args) -> None:
    from lesionscan.data import ham10000, isic2018

    if isic2018.is_layout(args.dir):  # an external test set: labels in a one-hot CSV, no lesion ids or masks
        report = isic2018.check_report(args.dir)
        print(report.summary())
        report.raise_for_problems()
        print(f"\nchecksum: {report.checksum()} (what `lesionscan evaluate` and a run's external section record)")
        return
    report = ham10000.check_report(args.dir)
    print(report.summary())
    report.raise_for_problems()  # every problem at once, on stderr, exit 2
    print(f"\nchecksum: {ham10000.data_checksum(report.frame)} (what a run's manifest records as data_checksum)")


def _cmd_download(args) -> None:
    from lesionscan.data import download

    if args.isic2018:
        report = download.download_isic2018(args.dir, args.isic2018, mirror=args.mirror,
                                            keep_archives=args.keep_archives)
        folder = report.data_dir
        print(f"The ISIC 2018 Task 3 {args.isic2018} set ({len(report.frame):,} images) is in {folder}; run "
              f"`lesionscan data check {folder}` to see it and `lesionscan evaluate --model M --data {folder}` "
              f"to score a trained model M on it")
        return
    folder = download.download(args.dir, mirror=args.mirror, keep_archives=args.keep_archives)
    print(f"HAM10000 is in {folder}; run `lesionscan data check {folder}` to see it")


def _cmd_split(args) -> None:
    from lesionscan.data import ham10000, split

    split.check_split_target(args.out, args.dir)  # refuse a bad --out before the data are read
    frame = ham10000.load_dataset(args.dir)
    table = split.make_split(frame, args.protocol, seed=args.seed)
    split.write_split(table, args.out, data_dir=args.dir)
    print(f"wrote {len(table)} rows to {args.out} (protocol {args.protocol}, seed {args.seed})")
    print(split.support_table(table).to_string())


def _cmd_study(args) -> None:
    from lesionscan.study import publish, runner

    if args.html_dir:
        if args.no_book:
            raise LesionScanError("--html-dir publishes the built book: it cannot be combined with --no-book")
        publish.check_html_target(args.html_dir)  # refuse a bad target before the study runs, not after
    overrides = list(args.set or ()) + (["training_cache=false"] if args.no_cache else [])
    index = runner.run_study(profile=args.profile, data_dir=args.data_dir, artifacts=args.artifacts,
                             overrides=overrides, build=not args.no_book)
    print(f"\nBook: {Path(index).resolve()}")
    if args.html_dir:
        published = publish.publish_html(Path(index).parent, args.html_dir)
        print(f"Published: {published} (a static site: open it from the file system or serve the folder)")


def _cmd_profiles(args) -> None:
    from lesionscan.core import parameters

    params = parameters.resolve(args.show) if args.show else None  # an unknown profile fails before any output
    for name, description in parameters.PROFILE_DESCRIPTIONS.items():
        print(f"{name:8} {description}")
    if params:
        width = max(len(f"{key} = {params[key]}") for key in params)
        for key in sorted(params):
            setting = f"{key} = {params[key]}"
            note = "" if key == "profile" else f"  # {parameters.help_text(key)}"
            print(f"  {setting:<{width}}{note}")


def _cmd_predict(args) -> None:
    import contextlib

    from lesionscan import predict

    if args.json:  # stdout carries the JSON only: anything printed on the way goes to stderr
        with contextlib.redirect_stdout(sys.stderr):
            report = predict.run(args.model, args.images, out_dir=args.out)
        print(predict.format_json(report))
    else:
        report = predict.run(args.model, args.images, out_dir=args.out)
        print(predict.format_text(report))


def _cmd_evaluate(args) -> None:
    import contextlib

    from lesionscan import evaluate

    if args.json:  # stdout carries the JSON only: progress goes to stderr
        with contextlib.redirect_stdout(sys.stderr):
            report = evaluate.run(args.model, args.data, out=args.out, n_resamples=args.resamples, seed=args.seed)
        print(evaluate.format_json(report))
    else:
        report = evaluate.run(args.model, args.data, out=args.out, n_resamples=args.resamples, seed=args.seed)
        print(evaluate.format_text(report))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lesionscan", description=__doc__.split("\n\n")[0],
                     epilog=f"Errors are one line; --debug (or {DEBUG_VARIABLE}=1) shows the traceback.")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of any error")
    debug = _Parser(add_help=False)  # --debug after the subcommand too; SUPPRESS keeps the top-level value
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add = sub.add_parser

    def add_parser(name, **kwargs):
        return _add(name, parents=[debug], **kwargs)
    sub.add_parser = add_parser

    data_parser = sub.add_parser("data", help="generate, download, check or split a dataset (HAM10000 or ISIC 2018 "
                                              "Task 3 layout)")
    data_sub = data_parser.add_subparsers(dest="data_command", required=True, parser_class=_Parser)
    _add_data = data_sub.add_parser
    data_sub.add_parser = lambda name, **kwargs: _add_data(name, parents=[debug], **kwargs)
    synth = data_sub.add_parser("synth", help="write a synthetic dataset in the HAM10000 layout")
    synth.add_argument("dir")
    synth.add_argument("--images", type=_bounded("synthetic_images"), default=800)
    synth.add_argument("--size", type=_bounded("synthetic_size"), default=128,
                       help="image width in px (height is 3/4 of it)")
    synth.add_argument("--seed", type=_bounded("seed"), default=0)
    synth.add_argument("--isic2018", action="store_true",
                       help="write an external test set in the ISIC 2018 Task 3 layout instead (use another --seed "
                            "than the training set's)")
    synth.set_defaults(func=_cmd_synth)
    fetch = data_sub.add_parser("download", help="fetch HAM10000 from Harvard Dataverse (or, with --isic2018, an "
                                                 "ISIC 2018 Task 3 held-out set) into the official layout")
    fetch.add_argument("dir")
    fetch.add_argument("--isic2018", choices=("test", "validation"),
                       help="fetch the ISIC 2018 Task 3 test (1,512 images) or validation (193) set instead, from "
                            "the challenge's bucket, into a folder of its own")
    fetch.add_argument("--mirror", metavar="URL",
                       help="base URL of a copy serving the same paths (default: https://dataverse.harvard.edu, "
                            "whose Dataverse API paths it must serve; with --isic2018, "
                            "https://isic-challenge-data.s3.amazonaws.com/2018, whose archive names it must serve)")
    fetch.add_argument("--keep-archives", action="store_true", help="keep the zips in DIR/.download after unpacking")
    fetch.set_defaults(func=_cmd_download)
    check = data_sub.add_parser("check", help="validate a dataset and report its layout, classes, lesions, "
                                              "image sizes, masks and problems (HAM10000 layouts, or an ISIC "
                                              "2018 Task 3 folder: images and its one-hot ground-truth CSV)")
    check.add_argument("dir")
    check.set_defaults(func=_cmd_check)
    split = data_sub.add_parser("split", help="write a train/val/test split table")
    split.add_argument("dir")
    split.add_argument("--protocol", default="seed", choices=("seed", "lesion", "image"))
    split.add_argument("--seed", type=_bounded("seed"), default=0)
    split.add_argument("--out", required=True)
    split.set_defaults(func=_cmd_split)

    study_parser = sub.add_parser("study", help="run the chapters for a profile and build the book")
    study_parser.add_argument("--profile", default="smoke", help="smoke (default, synthetic, offline) or paper")
    study_parser.add_argument("--data-dir", help="a dataset in the HAM10000 layout (default: the profile's)")
    study_parser.add_argument("--artifacts", default="artifacts", help="where runs are written (default: artifacts)")
    study_parser.add_argument("--set", action="append", metavar="NAME=VALUE",
                       help="override one parameter; repeatable (see `lesionscan profiles --show smoke`)")
    study_parser.add_argument("--no-book", action="store_true", help="run the chapters but do not build the book")
    study_parser.add_argument("--no-cache", action="store_true",
                              help="train every model anew instead of reusing one trained before under the same "
                                   "recipe, data, split and code (same as --set training_cache=false)")
    study_parser.add_argument("--html-dir", metavar="DIR",
                       help="after a successful build, copy _build/html to DIR (replaced in one rename; DIR must be "
                            "new, empty or a previous --html-dir output)")
    study_parser.set_defaults(func=_cmd_study)

    pred = sub.add_parser("predict", help="classify images with a saved model and write attention and Grad-CAM "
                                          "overlays (a research model, not a diagnostic device)")
    pred.add_argument("--model", required=True, metavar="PATH", help="a .keras model saved by `lesionscan study`")
    pred.add_argument("images", nargs="+", metavar="IMAGE", help="JPEG, PNG, BMP, TIFF or WebP files")
    pred.add_argument("--out", metavar="DIR",
                      help="write <stem>.lesionscan.png here (created if missing; default: beside each image)")
    pred.add_argument("--json", action="store_true", help="print the results as JSON on stdout, nothing else")
    pred.set_defaults(func=_cmd_predict)

    ev = sub.add_parser("evaluate", help="score a saved model on a labelled folder (an ISIC 2018 Task 3 test set, "
                                         "or HAM10000): metrics with 95 %% intervals and a predictions CSV")
    ev.add_argument("--model", required=True, metavar="PATH", help="a .keras model saved by `lesionscan study`")
    ev.add_argument("--data", required=True, metavar="DIR", help="a labelled folder `lesionscan data check` reads")
    ev.add_argument("--out", metavar="FILE",
                    help="the predictions CSV (default: MODEL.FOLDER.predictions.csv in the current folder)")
    ev.add_argument("--resamples", type=_bounded("bootstrap_resamples"), default=1000,
                    help="bootstrap resamples of each interval (default 1000)")
    ev.add_argument("--seed", type=_bounded("seed"), default=0, help="seed of the bootstrap (default 0)")
    ev.add_argument("--json", action="store_true", help="print the results as JSON on stdout, nothing else")
    ev.set_defaults(func=_cmd_evaluate)

    prof = sub.add_parser("profiles", help="list profiles, or every parameter of one")
    prof.add_argument("--show", metavar="PROFILE")
    prof.set_defaults(func=_cmd_profiles)
    return parser


def _os_error(err: OSError) -> str:
    """An OSError as the user can act on it: the path(s) and what was expected there."""
    where = " -> ".join(str(p) for p in (err.filename, err.filename2) if p is not None)
    reason = err.strerror or str(err)
    path = Path(str(err.filename)) if err.filename is not None else None
    if isinstance(err, (FileExistsError, NotADirectoryError)) and path is not None:
        blocker = next((p for p in [path, *path.parents] if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            return f"{blocker}: is a file, where a folder was expected ({reason})"
    if isinstance(err, IsADirectoryError):  # a rename onto a folder names the folder second
        return f"{err.filename2 or err.filename}: is a folder, where a file was expected"
    return f"{where}: {reason}" if where else reason


def _silence_stdout() -> None:
    """After a closed pipe: point stdout at /dev/null, so the interpreter's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def main(argv: list[str] | None = None) -> int:
    """Run one command; return its exit status (0 ok, 2 the user's input, 130 Ctrl-C, 1 a bug)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = debug_requested(argv)
    try:
        args = build_parser().parse_args(argv)
        args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the error path, not at exit
    except KeyboardInterrupt as err:
        if debug:
            raise
        terminated = isinstance(err, Terminated)
        print(f"lesionscan: {'stopped by SIGTERM' if terminated else 'interrupted'}", file=sys.stderr)
        return 143 if terminated else 130
    except BrokenPipeError:
        _silence_stdout()
        if debug:
            raise
        print("lesionscan: error: the output was closed before it ended (broken pipe)", file=sys.stderr)
        return 2
    except LesionScanError as err:
        if debug:
            raise
        print(f"lesionscan: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        if debug:
            raise
        print(f"lesionscan: error: {_os_error(err)}", file=sys.stderr)
        return 2
    except MemoryError:
        if debug:
            raise
        print("lesionscan: error: out of memory; use smaller settings (`lesionscan profiles --show PROFILE` lists "
              "each one's range)", file=sys.stderr)
        return 2
    except Exception as err:  # a bug: one line here, the whole traceback with --debug
        if debug:
            raise
        print(f"lesionscan: internal error: {type(err).__name__}: {err}\n  rerun with --debug (or {DEBUG_VARIABLE}=1) "
              "for the traceback, and please report it", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
