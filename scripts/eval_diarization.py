#!/usr/bin/env python
"""Audio-only diarization error rate on ../shared/data/diarization (sample.wav and the 9 AMI excerpts).

For every file: segmentation-3.0 + local-speaker embeddings + clustering with the speaker count estimated (the
headline), scored by pyannote.metrics with overlap scored, at collar 0.5 (0.25 s each side of every reference
boundary) and collar 0. The AMI overlap line says how much of the time with two or more reference speakers is
labelled with two or more, and how much of the time labelled so really has them.
``--oracle`` adds a column with the reference speaker count given to the clustering. ``--ceilings`` splits the
error by cause: it scores the reference labels inside the speech avid detected (perfect labelling, overlap
included: the error the speech detection alone leaves), the same with at most as many speakers at once as avid
labels there (count-only: what its speech detection and its count of simultaneous speakers leave), and with one
speaker at a time (the best any labelling without overlap detection could do there). The AMI set is summarised two ways: pyannote's corpus DER
(all errors over all reference speech, ``abs(metric)``) and the plain mean of the per-file rates (which two
excerpts with under 4 s of speech dominate).

    python scripts/eval_diarization.py [--data ../shared/data/diarization] [--oracle] [--ceilings] [--rttm-dir DIR]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from avid.config import load_config
from avid.evaluation.diarization import diarize_file, oracle_labels, read_rttm, score_der
from avid.io.media import probe
from avid.io.writers import to_annotation, write_rttm
from avid.voice.embed import get_voice_encoder

ROOT = Path(__file__).resolve().parents[1]

COLLARS = (0.5, 0.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "diarization"))
    parser.add_argument("--config", help="YAML overriding avid/configs/default.yaml")
    parser.add_argument("--oracle", action="store_true", help="also score with the reference speaker count")
    parser.add_argument("--ceilings", action="store_true",
                        help="also score perfect labels inside the detected speech, with and without overlap")
    parser.add_argument("--rttm-dir", help="write each hypothesis as RTTM here")
    args = parser.parse_args()

    data = Path(args.data)
    if not (data / "sample.wav").exists():
        print(f"diarization data not found in {data}", file=sys.stderr)
        return 2
    references = read_rttm(data / "sample.rttm")
    references.update(read_rttm(data / "ami_train" / "train.rttm"))
    files = {"sample": data / "sample.wav"}
    files.update({path.stem: path for path in sorted((data / "ami_train").glob("*.wav"))})

    cfg = load_config(args.config)
    encoder = get_voice_encoder(cfg)
    overlap = np.zeros(3)   # reference time with 2+ speakers, of it labelled with 2+, hypothesis time with 2+
    modes = ["auto"] + (["oracle"] if args.oracle else []) + (["vad-only", "count-only", "no-overlap"]
                                                              if args.ceilings else [])
    totals = {(mode, collar): np.zeros(4) for mode in modes for collar in COLLARS}   # missed, fa, confusion, total
    per_file = {(mode, collar): [] for mode in modes for collar in COLLARS}

    header = f"{'file':8s} {'ref':>3s} {'est':>3s} {'speech':>6s}"
    for mode in modes:
        header += f" | {mode + ' DER@0.5':>13s} {'miss':>5s} {'FA':>5s} {'conf':>5s} {'DER@0':>6s}"
    header += f" | {'time':>5s}"
    print(header)
    print("-" * len(header))
    for uri, path in files.items():
        reference = references[uri]
        duration = probe(path).duration
        started = time.perf_counter()
        row = f"{uri:8s} {len(reference.labels()):3d}"
        cells = ""
        for mode in modes:
            if mode in ("vad-only", "count-only", "no-overlap"):   # the auto run's speech, labelled from the reference
                auto = to_annotation(auto_turns, uri)
                hypothesis = oracle_labels(reference, auto.get_timeline(), overlap=mode != "no-overlap",
                                           counts=auto if mode == "count-only" else None)
            else:
                count = len(reference.labels()) if mode == "oracle" else None
                turns = diarize_file(path, cfg, encoder=encoder, num_speakers=count)
                hypothesis = to_annotation(turns, uri)
            if mode == "auto":
                auto_turns = turns
                if uri != "sample":
                    overlap += overlap_seconds(reference, hypothesis)
                row += f" {len({t.speaker for t in turns}):3d} {reference.get_timeline().support().duration():6.1f}"
                if args.rttm_dir:
                    Path(args.rttm_dir).mkdir(parents=True, exist_ok=True)
                    write_rttm(turns, Path(args.rttm_dir) / f"{uri}.rttm", uri=uri)
            scores = {collar: score_der(reference, hypothesis, collar=collar, duration=duration) for collar in COLLARS}
            main_score = scores[0.5]
            cells += (f" | {100 * main_score['error_rate']:12.1f}% {main_score['missed']:5.1f} "
                      f"{main_score['false_alarm']:5.1f} {main_score['confusion']:5.1f} "
                      f"{100 * scores[0.0]['error_rate']:5.1f}%")
            if uri != "sample":
                for collar, score in scores.items():
                    totals[mode, collar] += [score["missed"], score["false_alarm"], score["confusion"], score["total"]]
                    per_file[mode, collar].append(score["error_rate"])
        print(row + cells + f" | {time.perf_counter() - started:4.1f}s", flush=True)

    print()
    for mode in modes:
        for collar in COLLARS:
            missed, false_alarm, confusion, total = totals[mode, collar]
            corpus = (missed + false_alarm + confusion) / total
            print(f"AMI ({len(per_file[mode, collar])} files), {mode} count, collar {collar}: corpus DER "
                  f"{100 * corpus:.1f}% (missed {100 * missed / total:.1f}, "
                  f"false alarm {100 * false_alarm / total:.1f}, confusion {100 * confusion / total:.1f}); "
                  f"mean of per-file DER {100 * np.mean(per_file[mode, collar]):.1f}%")
    print(f"AMI overlap: {overlap[0]:.1f} s of reference speech has 2+ speakers; {100 * overlap[1] / overlap[0]:.1f}% "
          f"of it is labelled with 2+ speakers (recall), precision {overlap[1] / max(overlap[2], 1e-9):.2f} "
          f"({overlap[2]:.1f} s labelled with 2+)")
    return 0


def overlap_seconds(reference, hypothesis) -> np.ndarray:
    """(reference overlap, reference overlap the hypothesis also labels as overlap, hypothesis overlap), seconds."""
    ref = reference.get_overlap()
    hyp = hypothesis.get_overlap()
    return np.array([ref.duration(), ref.crop(hyp, mode="intersection").support().duration(), hyp.duration()])


if __name__ == "__main__":
    sys.exit(main())
