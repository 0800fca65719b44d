"""`avid search --image F | --audio F | --video F | --person NAME | --text PHRASE [--person NAME]`: where a person
appears or speaks in the library, or where something was said."""
from __future__ import annotations

import argparse
import json

from ._common import add_db_argument, at_least, config_from_args, gallery_path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "search", help="find where a person appears or speaks in the library",
        description="Search the library built by `avid process --db` with a photo, a voice clip, a video or the "
                    "name of an enrolled or named person. Prints one line per file and modality, best first: "
                    "score, modality, file, time ranges (seconds). With --text, where the words were said "
                    "(files processed with --transcribe): file, time range, speaker, snippet.")
    query = parser.add_mutually_exclusive_group()
    query.add_argument("--image", metavar="F", help="a photo of the person (its largest face is used)")
    query.add_argument("--audio", metavar="F", help="a recording of the person's voice")
    query.add_argument("--video", metavar="F", help="a video of the person (its face track and the speech heard "
                                                    "with it; --track picks one of several)")
    query.add_argument("--person", metavar="NAME", help="a person in the gallery")
    parser.add_argument("--text", metavar="PHRASE", help="words said (with --person: said by that person)")
    parser.add_argument("--track", type=at_least(0), metavar="ID", help="with --video: the face track to search with")
    parser.add_argument("--top-k", type=at_least(1), metavar="K", help="most files (with --text: speaker turns) to list "
                                                               "(default library.search.top_k)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_db_argument(parser, help="library database (default: the gallery file, $AVID_DB)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..library.search import search  # imported on use, as the other commands do: the parser stays quick to build

    cfg = config_from_args(args)
    if args.text is not None:
        return _run_text(args, cfg)
    hits = search(gallery_path(args.db), image=args.image, audio=args.audio, video=args.video,
                  person=args.person, top_k=args.top_k, cfg=cfg, track=args.track)
    if args.json:
        print(json.dumps([hit.to_dict() for hit in hits], indent=1, ensure_ascii=False))
        return 0
    print("score\tmodality\tfile\tranges\tperson")          # ranges: start-end seconds, space-separated
    if not hits:
        print("# no match in the library")
    for hit in hits:
        ranges = " ".join(f"{a:.1f}-{b:.1f}" for a, b in hit.ranges)
        print(f"{hit.score:.3f}\t{hit.modality}\t{hit.file}\t{ranges}\t{hit.person or '-'}")
    return 0


def _run_text(args: argparse.Namespace, cfg) -> int:
    from ..errors import AvidError
    from ..library.search import search_text

    if args.image or args.audio or args.video:
        raise AvidError("--text searches what was said; it combines with --person only")
    hits = search_text(gallery_path(args.db), args.text, person=args.person, top_k=args.top_k, cfg=cfg)
    if args.json:
        print(json.dumps([hit.to_dict() for hit in hits], indent=1, ensure_ascii=False))
        return 0
    if not hits:
        print("# not found in the library's transcripts (files are transcribed with "
              "`avid process --db --transcribe`)")
    else:
        print(f"# said {len(hits)} time{'s' if len(hits) != 1 else ''}")
    print("file\tstart\tend\tspeaker\tsnippet")
    for hit in hits:
        print(f"{hit.file}\t{hit.start:.2f}\t{hit.end:.2f}\t{hit.speaker}\t{hit.snippet}")
    return 0
