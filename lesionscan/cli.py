"""The ``lesionscan`` command: data tools and the one-command study."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lesionscan.core.errors import LesionScanError


def _cmd_synth(args) -> None:
    from lesionscan.data import synthetic

    out = synthetic.generate(args.dir, n_images=args.images, size=args.size, seed=args.seed, progress=True)
    print(f"wrote {args.images} synthetic images to {out}")


def _cmd_check(args) -> None:
    from lesionscan.data import ham10000

    report = ham10000.check_report(args.dir)
    print(report.summary())
    report.raise_for_problems()  # every problem at once, on stderr, exit 2
    print(f"\nchecksum: {ham10000.data_checksum(report.frame)} (what a run's manifest records as data_checksum)")


def _cmd_download(args) -> None:
    from lesionscan.data import download

    folder = download.download(args.dir, mirror=args.mirror, keep_archives=args.keep_archives)
    print(f"HAM10000 is in {folder}; run `lesionscan data check {folder}` to see it")


def _cmd_split(args) -> None:
    from lesionscan.data import ham10000, split

    frame = ham10000.load_dataset(args.dir)
    table = split.make_split(frame, args.protocol, seed=args.seed)
    split.write_split(table, args.out)
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

    for name, description in parameters.PROFILE_DESCRIPTIONS.items():
        print(f"{name:8} {description}")
    if args.show:
        params = parameters.resolve(args.show)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lesionscan", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    data_parser = sub.add_parser("data", help="generate, check or split a dataset in the HAM10000 layout")
    data_sub = data_parser.add_subparsers(dest="data_command", required=True)
    synth = data_sub.add_parser("synth", help="write a synthetic dataset in the HAM10000 layout")
    synth.add_argument("dir")
    synth.add_argument("--images", type=int, default=800)
    synth.add_argument("--size", type=int, default=128, help="image width in px (height is 3/4 of it)")
    synth.add_argument("--seed", type=int, default=0)
    synth.set_defaults(func=_cmd_synth)
    fetch = data_sub.add_parser("download", help="fetch HAM10000 from Harvard Dataverse into the official layout")
    fetch.add_argument("dir")
    fetch.add_argument("--mirror", metavar="URL",
                       help="base URL of a copy serving the same Dataverse API paths (default: https://dataverse.harvard.edu)")
    fetch.add_argument("--keep-archives", action="store_true", help="keep the zips in DIR/.download after unpacking")
    fetch.set_defaults(func=_cmd_download)
    check = data_sub.add_parser("check", help="validate a dataset and report its layout, classes, lesions, "
                                              "image sizes, masks and problems")
    check.add_argument("dir")
    check.set_defaults(func=_cmd_check)
    split = data_sub.add_parser("split", help="write a train/val/test split table")
    split.add_argument("dir")
    split.add_argument("--protocol", default="seed", choices=("seed", "lesion", "image"))
    split.add_argument("--seed", type=int, default=0)
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

    prof = sub.add_parser("profiles", help="list profiles, or every parameter of one")
    prof.add_argument("--show", metavar="PROFILE")
    prof.set_defaults(func=_cmd_profiles)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except LesionScanError as err:
        print(f"lesionscan: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lesionscan: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
