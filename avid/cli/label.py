"""`avid label INPUT`: who speaks when, by name, linked to the face that is talking; written as JSON, RTTM, SRT,
WebVTT, a timeline PNG and an annotated MP4."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

from ..errors import AvidError, StoreError, UsageError
from ..io.results import output_stem
from ..io.writers import FORMATS, write_outputs
from ..pipeline.label import label_recording
from ..stages import stage
from ..types import LabelResult
from ._common import add_db_argument, config_from_args, gallery_path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "label", help="label the speakers of a recording: who speaks when, by name, and which face is talking",
        description="Diarize a video or audio file into speaker turns, link each speaker to the face that is "
                    "talking, and name them from the gallery (unmatched speakers are unknown-1, unknown-2... in "
                    "order of first speech).")
    parser.add_argument("input", metavar="INPUT", help="video or audio file")
    parser.add_argument("--out", metavar="DIR", default=".", help="output folder (default: the current folder)")
    parser.add_argument("--format", metavar="LIST", default=None,
                        help=f"comma-separated outputs among {','.join(FORMATS)} (default from the config: "
                             "label.formats; mp4 re-encodes the video, so ask for it)")
    parser.add_argument("--speakers", type=_positive, metavar="N", help="exact number of speakers")
    parser.add_argument("--min-speakers", type=_positive, metavar="N", help="at least N speakers")
    parser.add_argument("--max-speakers", type=_positive, metavar="N", help="at most N speakers")
    parser.add_argument("--enroll-unknown", action="store_true",
                        help="add unmatched speakers to the gallery under their unknown-N labels")
    parser.add_argument("--transcribe", action="store_true",
                        help="also write what was said, each word under its speaker's name (JSON words, SRT/WebVTT "
                             "cues 'Name: text', and the txt format)")
    parser.add_argument("--json", action="store_true", help="print the summary and the files written as JSON")
    parser.add_argument("--language", metavar="CODE", help="with --transcribe: the language (e.g. en, fr); default: "
                                                          "the model's own, or detected")
    add_db_argument(parser, help="gallery database (default: the user's avid gallery)")
    parser.set_defaults(func=run)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    formats = args.format.split(",") if args.format else list(cfg.label.formats) + (["txt"] if args.transcribe else [])
    if "txt" in formats and not args.transcribe:
        raise AvidError("the txt format is the transcript: add --transcribe")
    if args.language and not args.transcribe:
        raise AvidError("--language is for --transcribe")
    if args.min_speakers and args.max_speakers and args.min_speakers > args.max_speakers:
        raise UsageError(f"--min-speakers {args.min_speakers} is more than --max-speakers {args.max_speakers}")
    gallery = _open_gallery(args.db, create=args.enroll_unknown)
    path = Path(args.input)
    show = not args.quiet and sys.stderr.isatty()
    with tqdm(unit="s", desc=path.name[:30], disable=not show, leave=False,
              bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}]") as bar:
        def progress(done: float, total: float) -> None:
            bar.total = round(total, 1)
            bar.update(max(0.0, round(done, 1) - bar.n))

        result = label_recording(path, cfg, gallery=gallery, num_speakers=args.speakers,
                                 min_speakers=args.min_speakers, max_speakers=args.max_speakers,
                                 enroll_unknown=args.enroll_unknown, progress=progress,
                                 transcribe=args.transcribe, language=args.language)
    with stage("export"):
        written = write_outputs(result, args.out, formats, cfg, stem=output_stem(path))
    for warning in result.warnings:
        print(f"avid: warning: {path}: {warning}", file=sys.stderr)
    if args.json:
        print(json.dumps({"input": str(path), "turns": len(result.turns), "speakers": speaker_rows(result),
                          "written": {fmt: str(p) for fmt, p in written.items()}, "warnings": list(result.warnings)},
                         indent=1, ensure_ascii=False))
        return 0
    print(summary(result))
    for fmt, out_path in written.items():
        print(f"# wrote {fmt}: {out_path}")
    return 0


def _open_gallery(db: str | None, create: bool):
    """The gallery to name speakers from: --db, else the user's default one if it exists (None: no names)."""
    from ..identity.store import Gallery

    path = gallery_path(db)
    if not path.exists() and not create:
        if db:
            raise StoreError("no gallery database here (enrol someone first: avid enroll NAME ...)", path)
        return None
    return Gallery(path)


def speaker_rows(result: LabelResult) -> list[dict]:
    """One dict per speaker, most speech first: name, turns, seconds of speech, match score, face tracks."""
    return [{"name": s.name, "turns": s.n_turns, "speech_seconds": round(s.speech_seconds, 3), "score": s.score,
             "face_tracks": list(s.track_ids)} for s in sorted(result.speakers, key=lambda s: -s.speech_seconds)]


def summary(result: LabelResult) -> str:
    """A '#' comment line, then a header and one tab-separated row per speaker (for `cut -f`): turns, seconds of
    speech, match score ('-': unmatched) and face tracks ('-': voice only)."""
    lines = [f"# {result.media.path}: {len(result.turns)} turns, {len(result.speakers)} speakers",
             "speaker\tturns\tspeech_s\tscore\tface_tracks"]
    for row in speaker_rows(result):
        score = "-" if row["score"] is None else f"{row['score']:.2f}"
        faces = ",".join(map(str, row["face_tracks"])) or "-"
        lines.append(f"{row['name']}\t{row['turns']}\t{row['speech_seconds']:.1f}\t{score}\t{faces}")
    return "\n".join(lines)
