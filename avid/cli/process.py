"""`avid process INPUT... --out DIR | --db DB`: extract face tracks and speech with embeddings from each input."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from tqdm import tqdm

from ..config import load_config
from ..errors import AvidError, UsageError
from ..io.inputs import expand_inputs
from ..io.results import output_stem, write_result
from ..pipeline.ingest import process_file
from ..pipeline.models import Models
from . import EXIT_ALL_FAILED, EXIT_PARTIAL
from ._common import add_db_argument, at_least, config_from_args

log = logging.getLogger("avid")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "process", help="extract face tracks and speech segments with embeddings",
        description="Process videos, audio files and images. With --out, writes DIR/<name>.json (schema in "
                    "README.md) and DIR/<name>.npz (the embeddings); with --db, adds them to a searchable library "
                    "(content-hashed, resumable, parallel). Folders are searched recursively; quote globs.")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="file, folder or glob")
    parser.add_argument("--out", metavar="DIR", help="output folder (this or --db)")
    add_db_argument(parser, help="library database to process into (resumable: a rerun skips finished files); "
                                 "search it with `avid search`")
    parser.add_argument("--workers", type=at_least(0), default=0, metavar="N",
                        help="with --db: parallel worker processes (default library.workers: one per core; "
                        "on a Ray cluster one per CPU it offers)")
    parser.add_argument("--engine", choices=["local", "ray"],
                        help="with --db: a local process pool (default) or Ray tasks")
    parser.add_argument("--address", metavar="ADDR", help="with --engine ray: the Ray cluster to join, HOST:PORT "
                        "of its head or auto (the one `ray start` began here); default RAY_ADDRESS, else a private "
                        "Ray on this machine. Its token is read as Ray reads it (RAY_AUTH_TOKEN, ~/.ray/auth_token)")
    parser.add_argument("--ship-media", action="store_true",
                        help="with --engine ray: send every input's bytes to the workers through Ray's object store "
                        "(by default only inputs up to library.ray.ship_media_max_bytes are; larger ones are read "
                        "by path, which every node must then mount)")
    parser.add_argument("--transcribe", action="store_true",
                        help="with --db: also store what was said, for `avid search --text`")
    parser.add_argument("--json", action="store_true", help="print JSON: each input's result file and counts "
                        "(with --db: the run's summary)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # --out or --db, exactly one (checked here, not by argparse: --db may come before the command)
    if bool(args.out) == bool(args.db):
        raise UsageError("process writes to --out DIR or to a library --db DB: give one of them"
                         if not args.out else "--out and --db go to different places: give one of them")
    cfg = config_from_args(args)
    if args.transcribe:
        if not args.db:
            raise AvidError("--transcribe stores transcripts in a library: use it with --db")
        cfg = load_config(getattr(args, "config", None), overrides={"library": {"transcribe": True}})
    if args.db:
        from ..library.collection import process_collection

        summary = process_collection(args.inputs, args.db, cfg, workers=args.workers,
                                     engine=args.engine or cfg.library.engine, address=args.address,
                                     quiet=args.quiet, ship_media=args.ship_media)
        if args.json:
            print(json.dumps(summary.to_dict(), indent=1, ensure_ascii=False))
        return exit_code([summary.exit_codes.get(path, 1) for path, _ in summary.failed], summary.total)
    paths = expand_inputs(args.inputs)
    models = Models(cfg)
    out_dir = Path(args.out)
    stems = _unique_stems(paths)
    failures: list[AvidError] = []
    rows = []
    if not args.json:
        print("input\tjson\tface_tracks\tspeech_regions")     # a header: the rows are for `cut -f`
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
        row = {"input": str(path), "json": str(json_path), "face_tracks": len(result.face_tracks),
               "speech_regions": len(result.speech_regions), "warnings": list(result.warnings)}
        rows.append(row)
        if not args.json:
            print(f"{path}\t{json_path}\t{row['face_tracks']}\t{row['speech_regions']}")
    if args.json:
        print(json.dumps(rows, indent=1, ensure_ascii=False))
    if failures and len(paths) > 1:
        print(f"avid: {len(failures)} of {len(paths)} inputs failed", file=sys.stderr)
    return exit_code([err.exit_code for err in failures], len(paths))


def exit_code(failed: list[int], total: int) -> int:
    """The same for --out and --db (README's table): 0 when nothing failed; one input: its error's own code
    (3 unreadable, 4 nothing in it...); several: 10 when some failed, 11 when all did."""
    if not failed:
        return 0
    if total == 1:
        return failed[0]
    return EXIT_PARTIAL if len(failed) < total else EXIT_ALL_FAILED


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
