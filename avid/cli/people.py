"""`avid people list | show | rename | merge | delete | unknown | name | learn | forget | reembed`: manage the people
in the gallery."""
from __future__ import annotations

import argparse
import json
import sys

from ..errors import AvidError
from ._common import add_db_argument, at_least, config_from_args, gallery_path, open_gallery


def register(subparsers) -> None:
    parser = subparsers.add_parser("people", help="list, show, rename, merge or delete enrolled people",
                                   description="Manage the people in the gallery.")
    commands = parser.add_subparsers(dest="people_command", metavar="ACTION", required=True)

    listing = commands.add_parser("list", help="everyone enrolled, with observation counts")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(func=run_list)

    show = commands.add_parser("show", help="one person's observations")
    show.add_argument("name", metavar="NAME")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(func=run_show)

    rename = commands.add_parser("rename", help="rename a person")
    rename.add_argument("old", metavar="OLD")
    rename.add_argument("new", metavar="NEW")
    rename.set_defaults(func=run_rename)

    merge = commands.add_parser("merge", help="move all of SRC's observations to DST and remove SRC")
    merge.add_argument("src", metavar="SRC")
    merge.add_argument("dst", metavar="DST")
    merge.set_defaults(func=run_merge)

    delete = commands.add_parser("delete", help="delete a person and every observation and vector of theirs",
                                 description="Deletes the person, their observations and prototypes, and the "
                                             "shared model (its weights were fitted with their data; run "
                                             "`avid train` again). Asks first unless --yes.")
    delete.add_argument("name", metavar="NAME")
    delete.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    delete.set_defaults(func=run_delete)

    unknown = commands.add_parser("unknown", help="clusters of unnamed people found by `avid process --db`")
    unknown.add_argument("--json", action="store_true", help="print JSON")
    unknown.set_defaults(func=run_unknown)

    name = commands.add_parser("name", help="name every observation of an unknown cluster at once")
    name.add_argument("cluster", type=at_least(1), metavar="CLUSTER")
    name.add_argument("name", metavar="NAME")
    name.set_defaults(func=run_name)

    learn = commands.add_parser("learn", help="learn enrolled people's other modality from the library",
                                description="Links the library's face-voice pairs to enrolled people: the voice "
                                            "heard with a face confidently theirs becomes a learned observation "
                                            "of theirs, and the face seen with their voice (docs in "
                                            "avid/identity/learning.py). Runs by itself after `process --db`, `enroll` and "
                                            "`people name`.")
    learn.set_defaults(func=run_learn)

    forget = commands.add_parser("forget", help="reject learned observations of a person",
                                 description="The observations become unnamed again and are never learned for "
                                             "this person again. Enrolled and named observations are kept.")
    forget.add_argument("name", metavar="NAME")
    which = forget.add_mutually_exclusive_group(required=True)
    which.add_argument("--observation", type=at_least(1), nargs="+", metavar="ID", help="learned observation ids "
                                                                                 "(`avid people show NAME`)")
    which.add_argument("--all-learned", action="store_true", help="every learned observation of the person")
    forget.set_defaults(func=run_forget)

    reembed = commands.add_parser("reembed", help="embed every stored voice again with the configured encoder",
                                  description="Re-embeds every voice observation of the gallery or library from "
                                              "its source file with voice.encoder.backend, after a change of "
                                              "encoder. All or nothing; the shared model is dropped (run `avid "
                                              "train` again).")
    reembed.add_argument("--drop-missing", action="store_true",
                         help="delete the voices whose source file is gone instead of refusing")
    reembed.set_defaults(func=run_reembed)

    for command in (rename, merge, delete, name, learn, forget, reembed):     # list, show, unknown have theirs
        command.add_argument("--json", action="store_true", help="print JSON")
    for command in (listing, show, rename, merge, delete, unknown, name, learn, forget, reembed):
        add_db_argument(command)


def _report(args: argparse.Namespace, data: dict, text: str) -> None:
    """What a change did: as JSON with --json, else one line of text."""
    print(json.dumps(data, indent=1, ensure_ascii=False) if args.json else text)


def run_list(args: argparse.Namespace) -> int:
    with open_gallery(args) as gallery:
        people = gallery.people()
    if args.json:
        print(json.dumps([{"id": p.id, "name": p.name, "faces": p.n_face, "voices": p.n_voice, "created": p.created}
                          for p in people], indent=1))
        return 0
    print("name\tfaces\tvoices\tcreated")
    for p in people:
        print(f"{p.name}\t{p.n_face}\t{p.n_voice}\t{p.created}")
    return 0


def _time(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def run_show(args: argparse.Namespace) -> int:
    with open_gallery(args) as gallery:
        person = gallery.person(args.name)
        observations = gallery.observations(person=person.id)
    if args.json:
        print(json.dumps({"id": person.id, "name": person.name, "created": person.created, "observations": [
            {"id": o.id, "modality": o.modality, "source": o.source, "start": o.start, "end": o.end,
             "track_id": o.track_id, "paired_with": o.paired_with, "backend": o.backend, "dim": o.dim,
             "learned": o.learned} for o in observations]}, indent=1, ensure_ascii=False))
        return 0
    own = [o for o in observations if o.learned is None]
    learned = [o for o in observations if o.learned is not None]
    print(f"# {person.name}: {person.n_face} face and {person.n_voice} voice observations, enrolled {person.created}")
    print("id\tmodality\tstart\tend\ttrack\tbackend\tsource")
    for o in own:
        track = "-" if o.track_id is None else o.track_id
        print(f"{o.id}\t{o.modality}\t{_time(o.start)}\t{_time(o.end)}\t{track}\t{o.backend}\t{o.source}")
    if learned:
        print(f"# learned from the library ({len(learned)}; reject with `avid people forget NAME --observation ID`)")
        print("id\tmodality\tstart\tend\tvouched by\tscores\tsource")
        for o in learned:
            scores = ", ".join(f"{m} {v:.3f}" for m, v in o.learned.get("scores", {}).items())
            print(f"{o.id}\t{o.modality}\t{_time(o.start)}\t{_time(o.end)}\t{o.learned.get('vouched_by')}"
                  f"\t{scores}\t{o.source}")
    return 0


def run_rename(args: argparse.Namespace) -> int:
    with open_gallery(args) as gallery:
        person = gallery.rename(args.old, args.new)
    _report(args, {"renamed": args.old, "name": person.name}, f"renamed {args.old} -> {person.name}")
    return 0


def run_merge(args: argparse.Namespace) -> int:
    from ..identity.training import refresh_z_prototypes

    with open_gallery(args) as gallery:
        person = gallery.merge(args.src, args.dst)
        refresh_z_prototypes(gallery, [person.id])
    _report(args, {"merged": args.src, "into": person.name, "faces": person.n_face, "voices": person.n_voice},
            f"merged {args.src} into {person.name}: {person.n_face} faces, {person.n_voice} voices")
    return 0


def run_delete(args: argparse.Namespace) -> int:
    with open_gallery(args) as gallery:
        person = gallery.person(args.name)   # an unknown name fails here, before any question
        if not args.yes:
            if not sys.stdin.isatty():
                raise AvidError(f"deleting {person.name!r} needs confirmation: add --yes")
            answer = input(f"delete {person.name} and all {person.n_face + person.n_voice} observations? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                print("nothing deleted")
                return 1
        removed = gallery.delete(person.name)
    text = f"deleted {person.name}: {removed['observations']} observations" + (
        "\nthe shared model was trained with their data and has been removed: run `avid train` to retrain"
        if removed["model"] else "")
    _report(args, {"deleted": person.name, "observations": removed["observations"],
                   "model_removed": bool(removed["model"])}, text)
    return 0


def run_unknown(args: argparse.Namespace) -> int:
    from ..library.unknown import unknown_clusters

    clusters = unknown_clusters(gallery_path(args.db), config_from_args(args))
    if args.json:
        print(json.dumps([c.to_dict() for c in clusters], indent=1))
        return 0
    print("cluster\tfaces\tvoices\tfiles\tthumbnail")
    for c in clusters:
        print(f"{c.id}\t{c.n_face}\t{c.n_voice}\t{len(c.files)}\t{c.thumbnail or '-'}")
    return 0


def run_name(args: argparse.Namespace) -> int:
    from ..library.unknown import name_cluster

    person, count = name_cluster(gallery_path(args.db), args.cluster, args.name, config_from_args(args))
    _report(args, {"cluster": args.cluster, "name": person.name, "observations": count},
            f"named {count} observations of cluster {args.cluster} as {person.name}")
    return 0


def run_learn(args: argparse.Namespace) -> int:
    from ..identity.learning import learn_from_library

    cfg = config_from_args(args)
    with open_gallery(args) as gallery:
        report = learn_from_library(gallery, cfg)
    if args.json:
        print(json.dumps({"learned": report.learned, "skipped": report.skipped}, indent=1, ensure_ascii=False))
        return 0
    for name, count in sorted(report.learned.items()):
        print(f"learned {count} observations of {name}")
    for reason, count in sorted(report.skipped.items()):
        print(f"not learned ({count} pairs): {reason}")
    if not report.learned:
        print("nothing new to learn")
    return 0


def run_forget(args: argparse.Namespace) -> int:
    from ..identity.training import refresh_z_prototypes

    with open_gallery(args) as gallery:
        count = gallery.forget(args.name, None if args.all_learned else args.observation)
        refresh_z_prototypes(gallery, [gallery.person(args.name).id])
    _report(args, {"name": args.name, "forgotten": count},
            f"forgot {count} learned observations of {args.name}; they will not be learned for them again")
    return 0


def run_reembed(args: argparse.Namespace) -> int:
    from ..pipeline.identify import reembed_voices
    from ..pipeline.models import Models

    cfg = config_from_args(args)
    with open_gallery(args) as gallery:
        counts = reembed_voices(gallery, cfg, Models(cfg), drop_missing=args.drop_missing)
    _report(args, counts, f"re-embedded {counts['reembedded']} voices with {counts['backend']}"
            + (f", deleted {counts['dropped']} without a source file" if counts["dropped"] else "")
            + "; run `avid train` to fit the shared model again")
    return 0
