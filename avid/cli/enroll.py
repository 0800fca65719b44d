"""`avid enroll NAME --image F... --audio F... --video F... [--track ID] [--add]`: add a known person."""
from __future__ import annotations

import argparse
import sys

from ._common import add_db_argument, at_least, config_from_args, open_gallery


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "enroll", help="enrol a person from photos, voice clips and/or videos",
        description="A photo enrols its largest face, an audio clip its speech, a video its face track and the "
                    "speech heard while it is on screen: the face seen talking with the speech, else the one that "
                    "dominates; when two faces are comparably likely it refuses and lists them (pick one with "
                    "--track). Everything is stored in one transaction: a file that fails stores "
                    "nothing.")
    parser.add_argument("name", metavar="NAME")
    parser.add_argument("--image", nargs="+", default=[], metavar="F", help="photos of the person")
    parser.add_argument("--audio", nargs="+", default=[], metavar="F", help="audio clips of the person speaking")
    parser.add_argument("--video", nargs="+", default=[], metavar="F", help="videos of the person speaking")
    parser.add_argument("--track", type=at_least(0), metavar="ID", help="face track of the video to enrol instead")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--add", action="store_true", help="add to a person who is already enrolled")
    add_db_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..pipeline.identify import enroll

    cfg = config_from_args(args)
    with open_gallery(args, must_exist=False) as gallery:
        result = enroll(gallery, args.name, images=args.image, audios=args.audio, videos=args.video,
                        track=args.track, add=args.add, cfg=cfg)
    person = result.person
    if args.json:
        print(result.to_json())
        return 0
    for note in result.notes:
        print(f"avid: note: {note}", file=sys.stderr)
    print(f"# enrolled {person.name}: now {person.n_face} face and {person.n_voice} voice observations")
    print("modality\tstart\tend\tsource")
    for item in result.added:
        start, end = ("-", "-") if item["start"] is None else (f"{item['start']:.2f}", f"{item['end']:.2f}")
        print(f"{item['modality']}\t{start}\t{end}\t{item['source']}")
    return 0
