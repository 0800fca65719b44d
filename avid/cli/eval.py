"""`avid eval`: score diarization against a reference RTTM, and identification over a manifest of files."""
from __future__ import annotations

import argparse
import json

from ._common import config_from_args, seconds


def register(subparsers) -> None:
    parser = subparsers.add_parser("eval", help="score diarization (DER) or identification (accuracy, EER)")
    commands = parser.add_subparsers(dest="eval_command", metavar="WHAT", required=True)

    diar = commands.add_parser("diar", help="diarization error rate of a hypothesis RTTM against a reference RTTM",
                               description="DER and its parts (pyannote.metrics) per file id and overall. "
                                           "--identification scores names as they are, without optimal mapping.")
    diar.add_argument("--ref", required=True, metavar="REF.rttm")
    diar.add_argument("--hyp", required=True, metavar="HYP.rttm")
    diar.add_argument("--collar", type=seconds, default=0.5,
                      help="total forgiveness width around each reference boundary, seconds (default 0.5 = "
                           "0.25 s each side)")
    diar.add_argument("--skip-overlap", action="store_true", help="do not score overlapped speech")
    diar.add_argument("--identification", action="store_true",
                      help="identification error rate: speaker names must match exactly")
    diar.add_argument("--json", action="store_true", help="print JSON")
    diar.set_defaults(func=run_diar)

    ident = commands.add_parser("ident", help="identification accuracy, EER and false accepts over a manifest",
                                description="MANIFEST.csv has columns person, modality, role (enrol|test), path.")
    ident.add_argument("manifest", metavar="MANIFEST.csv")
    ident.add_argument("--ablation", action="store_true",
                       help="also raw face NN, raw voice NN and score fusion beside the shared code")
    ident.add_argument("--json", action="store_true", help="print JSON")
    ident.set_defaults(func=run_ident)


def run_diar(args: argparse.Namespace) -> int:
    from pyannote.core import Annotation

    from ..evaluation.diarization import read_rttm, score_der, score_identification

    references, hypotheses = read_rttm(args.ref), read_rttm(args.hyp)
    score = score_identification if args.identification else score_der
    rows = {}
    for uri, reference in sorted(references.items()):
        hypothesis = hypotheses.get(uri, Annotation(uri=uri))
        rows[uri] = score(reference, hypothesis, collar=args.collar, skip_overlap=args.skip_overlap)
    total = sum(r["total"] for r in rows.values())
    overall = {part: sum(r[part] for r in rows.values()) for part in ("missed", "false_alarm", "confusion")}
    overall["error_rate"] = sum(overall.values()) / total if total else 0.0
    overall["total"] = total
    name = "IER" if args.identification else "DER"
    if args.json:
        print(json.dumps({"metric": name, "collar": args.collar, "files": rows, "overall": overall}, indent=1))
        return 0
    # tab-separated with a header (`cut -f`); the rates are percent of the reference speech
    print(f"file\t{name}%\tmissed%\tfalse_alarm%\tconfusion%\tspeech_s")
    for uri, r in list(rows.items()) + [("OVERALL", overall)]:
        t = r["total"] or 1.0
        print(f"{uri}\t{100 * r['error_rate']:.1f}\t{100 * r['missed'] / t:.1f}\t{100 * r['false_alarm'] / t:.1f}"
              f"\t{100 * r['confusion'] / t:.1f}\t{r['total']:.1f}")
    return 0


def run_ident(args: argparse.Namespace) -> int:
    from ..evaluation.identification import evaluate_manifest, format_report

    report = evaluate_manifest(args.manifest, config_from_args(args), ablation=args.ablation)
    print(json.dumps(report, indent=1) if args.json else format_report(report))
    return 0
