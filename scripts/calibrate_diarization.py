#!/usr/bin/env python
"""Calibrate the diarization clustering threshold (diarization.threshold) on LibriSpeech, not on the test sets.

Every speaker of ../shared/data/voices/librispeech_train-clean-100 has one read utterance; it is cut into pieces of
``--piece`` seconds (what a local speaker heard alone in a segmentation window gives the embedder), embedded by the
configured voice encoder. Many simulated recordings draw 2-5 speakers and a few pieces of each; the pieces are
clustered with the configured linkage and each threshold of a grid is scored by how often it finds the right number
of speakers and by the share of pieces in a cluster whose majority speaker is theirs (purity). The AMI and
sample.wav files that scripts/eval_diarization.py scores are never seen here.

    python scripts/calibrate_diarization.py [--piece 3.0] [--trials 400] [--seed 0]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from avid.config import load_config  # noqa: E402
from avid.media import load_audio  # noqa: E402
from avid.vectors import unit_rows  # noqa: E402
from avid.voice.embed import get_voice_encoder  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "voices" / "librispeech_train-clean-100"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--config")
    parser.add_argument("--piece", type=float, default=3.0, help="seconds per piece")
    parser.add_argument("--trials", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    files = sorted(args.data.glob("*.flac"))
    if not files:
        print(f"no LibriSpeech files in {args.data}", file=sys.stderr)
        return 2
    cfg = load_config(args.config)
    encoder = get_voice_encoder(cfg)
    speakers, vectors = [], []
    for path in files:
        audio = load_audio(path, 16000)
        n = int(args.piece * 16000)
        for i in range(0, len(audio) - n + 1, n):
            vectors.append(encoder.embed_utterance(audio[i:i + n], trim_silence=False))
            speakers.append(path.name.split("-")[0])
    speakers = np.array(speakers)
    vectors = unit_rows(np.stack(vectors))
    ids = np.unique(speakers)
    print(f"{len(vectors)} pieces of {args.piece} s from {len(ids)} speakers ({encoder.name})")
    rng = np.random.default_rng(args.seed)
    grid = np.round(np.arange(0.40, 1.11, 0.05), 2)
    right = np.zeros(len(grid))
    purity = np.zeros(len(grid))
    for _ in range(args.trials):
        chosen = rng.choice(ids, size=rng.integers(2, 6), replace=False)
        members = np.concatenate([rng.permutation(np.flatnonzero(speakers == s))[:rng.integers(1, 5)]
                                  for s in chosen])
        tree = linkage(vectors[members], method=str(cfg.diarization.linkage), metric="euclidean")
        truth = np.unique(speakers[members], return_inverse=True)[1]
        for g, threshold in enumerate(grid):
            labels = fcluster(tree, t=threshold, criterion="distance")
            right[g] += len(np.unique(labels)) == len(chosen)
            purity[g] += sum(np.bincount(truth[labels == c]).max() for c in np.unique(labels)) / len(members)
    print(f"{'threshold':>9s} {'count right':>11s} {'purity':>7s}")
    for g, threshold in enumerate(grid):
        print(f"{threshold:9.2f} {100 * right[g] / args.trials:10.1f}% {100 * purity[g] / args.trials:6.1f}%")
    best = grid[int(np.argmax(right))]
    print(f"best count accuracy at threshold {best} (configs/default.yaml diarization.threshold: "
          f"{cfg.diarization.threshold})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
