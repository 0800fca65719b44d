"""`avid process INPUT... --out DIR`: extract face tracks and speech with embeddings from each input."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tqdm import tqdm

from ..errors import AvidError
from ..ingest import Models, output_stem, process_file, write_result
from ..inputs import expand_inputs
from . import EXIT_PARTIAL
from ._common import config_from_args

log = logging.getLogger("avid")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "process", help="extract face tracks and speech segments with embeddings",
        description="Process videos, audio files and images. Writes DIR/<name>.json (schema in README.md) and "
                    "DIR/<name>.npz (the embeddings). Folders are searched recursively; quote globs.")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="file, folder or glob")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    paths = expand_inputs(args.inputs)
    models = Models(cfg)
    out_dir = Path(args.out)
    stems = _unique_stems(paths)
    failures: list[AvidError] = []
    for path in paths:
        try:
            result = _process_one(path, cfg, models, quiet=args.quiet)
        except AvidError as err:
            failures.append(err)
            print(f"avid: error: {err}", file=sys.stderr)
            continue
        json_path = write_result(result, out_dir, stems[path])
        for warning in result.warnings:
            print(f"avid: warning: {path}: {warning}", file=sys.stderr)
        print(f"{path}\t{json_path}\t{len(result.face_tracks)} face tracks\t"
              f"{len(result.speech_regions)} speech regions")
    if failures and len(paths) > 1:
        print(f"avid: {len(failures)} of {len(paths)} inputs failed", file=sys.stderr)
        return EXIT_PARTIAL if len(failures) < len(paths) else failures[0].exit_code
    return failures[0].exit_code if failures else 0


def _process_one(path: Path, cfg, models: Models, quiet: bool):
    show = not quiet and sys.stderr.isatty()
    with tqdm(unit="s", desc=path.name[:30], disable=not show, leave=False,
              bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}]") as bar:
        def progress(done: float, total: float) -> None:
            bar.total = round(total, 1)
            bar.update(max(0.0, round(done, 1) - bar.n))

        return process_file(path, cfg, models, progress=progress)


def _unique_stems(paths: list[Path]) -> dict[Path, str]:
    """Output names: the input's stem, with a number added where two inputs share one."""
    stems: dict[Path, str] = {}
    used: set[str] = set()
    for path in paths:
        stem, n = output_stem(path), 1
        while stem.casefold() in used:
            n += 1
            stem = f"{output_stem(path)}-{n}"
        used.add(stem.casefold())
        stems[path] = stem
    return stems
