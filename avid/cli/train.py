"""`avid train`: fit the shared-representation model on everyone in the gallery."""
from __future__ import annotations

import argparse
import json
import sys

from tqdm import tqdm

from ._common import add_db_argument, config_from_args, open_gallery


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train", help="train the shared face-voice model on the gallery",
        description="Train the bimodal autoencoder on every observation in the gallery (named people, and "
                    "unnamed library observations) and store it with each person's shared-code prototype. "
                    "Seeded: the same gallery gives the same model. Run again after enrolling people.")
    parser.add_argument("--json", action="store_true", help="print JSON")
    add_db_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..identity.training import train

    cfg = config_from_args(args)
    show = not args.quiet and sys.stderr.isatty()
    with open_gallery(args) as gallery, tqdm(total=int(cfg.shared.train.steps), desc="training", unit="step",
                                             disable=not show, leave=False) as bar:
        report = train(gallery, cfg, progress=lambda done, total: bar.update(1))
        people = len(gallery.people())
    if args.json:
        print(json.dumps({"people": people, "seconds": round(report.seconds, 3), "steps": report.steps,
                          "losses": report.losses}, indent=1))
        return 0
    print(f"# trained the shared model on {people} people in {report.seconds:.1f} s ({report.steps} steps)")
    print("loss\tvalue")
    for name, value in report.losses.items():
        print(f"{name}\t{value:.4f}")
    return 0
