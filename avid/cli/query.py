"""`avid query --image F | --audio F | --video F [--top-k K] [--json]`: who is this?"""
from __future__ import annotations

import argparse
import sys

from ._common import add_db_argument, at_least, config_from_args, open_gallery


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "query", help="identify the person in a photo, a voice clip or a video",
        description="Ranks the enrolled people by calibrated score (0 = the acceptance threshold, 1 = identical; "
                    "see docs/shared_representation.md) and answers `unknown` when nobody passes. A photo and a "
                    "voice clip together are one query with both modalities.")
    parser.add_argument("--image", metavar="F", help="photo (its largest face)")
    parser.add_argument("--audio", metavar="F", help="voice clip")
    parser.add_argument("--video", metavar="F", help="video (the face seen talking, or the one that dominates, and "
                                                     "its speech)")
    parser.add_argument("--track", type=at_least(0), metavar="ID", help="face track of the video to use instead")
    parser.add_argument("--top-k", type=at_least(1), metavar="K", help="how many people to list (default from the config)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    add_db_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..pipeline.identify import query

    cfg = config_from_args(args)
    with open_gallery(args) as gallery:
        result = query(gallery, image=args.image, audio=args.audio, video=args.video, top_k=args.top_k, cfg=cfg,
                       track=args.track)
    answer = result.answer
    if args.json:
        print(result.to_json())
        return 0
    for note in result.notes:
        print(f"avid: note: {note}", file=sys.stderr)
    space = "shared code z" if result.space == "z" else "raw embeddings"
    print(f"# {result.mode} query, matched in {space}, threshold {result.threshold:g}")
    print(f"answer\t{answer.name}\t{answer.score:.3f}")
    print("rank\tname\tscore\tverdict")
    for rank, match in enumerate(result.matches, 1):
        print(f"{rank}\t{match.name}\t{match.score:.3f}\t{'accepted' if match.accepted else 'below threshold'}")
    return 0
