#!/usr/bin/env python
"""Calibrate the diarization clustering threshold (diarization.threshold) on LibriSpeech, not on the test sets.

Every speaker of ../shared/data/voices/librispeech_train-clean-100 has one read utterance; it is cut into pieces of
``--piece`` seconds (what a local speaker heard alone in a segmentation window gives the embedder), embedded by the
configured voice encoder. Many simulated recordings draw 2-5 speakers and a few pieces of each; the pieces are
clustered with the configured linkage and each threshold of a grid is scored by how often it finds the right number
of speakers and by the share of pieces in a cluster whose majority speaker is theirs (purity). The AMI and
sample.wav files that scripts/eval_diarization.py scores are never seen here. ``--far-field`` makes each simulated
recording sound like one distant microphone in one meeting room: all its pieces are convolved with the same
synthetic room impulse response (a direct path and exponentially decaying noise, RT60 0.3-0.9 s) and get the same
kind of noise at 5-20 dB SNR, as meeting recordings are far from LibriSpeech's close-talk read speech.

    python scripts/calibrate_diarization.py [--piece 3.0] [--trials 400] [--seed 0] [--far-field]
                                            [--linkage centroid average ward]
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
from avid.io.media import load_audio  # noqa: E402
from avid.vectors import unit_rows  # noqa: E402
from avid.voice.embed import get_voice_encoder  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "voices" / "librispeech_train-clean-100"


class Room:
    """One distant microphone in one room: a synthetic impulse response (direct path, then noise decaying by 60 dB
    over RT60) and background noise at one SNR, applied alike to every piece of a simulated recording."""

    def __init__(self, rng: np.random.Generator, rate: int = 16000):
        self.rng = rng
        rt60 = rng.uniform(0.3, 0.9)
        t = np.arange(int(rt60 * rate)) / rate
        self.response = rng.standard_normal(len(t)) * 10 ** (-3 * t / rt60) * rng.uniform(0.3, 1.0)
        self.response[0] = 1.0
        self.snr_db = rng.uniform(5.0, 20.0)
        self.hum = rng.uniform(0.0, 0.05)

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        from scipy.signal import fftconvolve

        wet = fftconvolve(audio, self.response)[:len(audio)]
        noise = np.cumsum(self.rng.standard_normal(len(audio))) * self.hum + self.rng.standard_normal(len(audio))
        noise *= np.sqrt(np.mean(wet ** 2) / np.mean(noise ** 2) / 10 ** (self.snr_db / 10))
        mixed = wet + noise
        return (mixed / max(1e-9, np.abs(mixed).max()) * 0.5).astype(np.float32)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--config")
    parser.add_argument("--piece", type=float, default=3.0, help="seconds per piece")
    parser.add_argument("--trials", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--far-field", action="store_true", help="reverberate and add noise to the pieces first")
    parser.add_argument("--linkage", nargs="+", help="linkage methods to compare (default: the configured one)")
    args = parser.parse_args()
    files = sorted(args.data.glob("*.flac"))
    if not files:
        print(f"no LibriSpeech files in {args.data}", file=sys.stderr)
        return 2
    cfg = load_config(args.config)
    encoder = get_voice_encoder(cfg)
    speakers, pieces = [], []
    for path in files:
        audio = load_audio(path, 16000)
        n = int(args.piece * 16000)
        for i in range(0, len(audio) - n + 1, n):
            pieces.append(audio[i:i + n])
            speakers.append(path.name.split("-")[0])
    speakers = np.array(speakers)
    vectors = None if args.far_field else unit_rows(np.stack([encoder.embed_utterance(p, trim_silence=False)
                                                              for p in pieces]))
    ids = np.unique(speakers)
    print(f"{len(pieces)} pieces of {args.piece} s from {len(ids)} speakers ({encoder.name}"
          f"{', far field' if args.far_field else ''})")
    linkages = args.linkage or [str(cfg.diarization.linkage)]
    grid = np.round(np.arange(0.40, 2.01, 0.05), 2)
    right = {m: np.zeros(len(grid)) for m in linkages}
    purity = {m: np.zeros(len(grid)) for m in linkages}
    rng = np.random.default_rng(args.seed)
    for _ in range(args.trials):
        chosen = rng.choice(ids, size=rng.integers(2, 6), replace=False)
        members = np.concatenate([rng.permutation(np.flatnonzero(speakers == s))[:rng.integers(1, 5)]
                                  for s in chosen])
        if vectors is None:
            room = Room(rng)
            embedded = unit_rows(np.stack([encoder.embed_utterance(room(pieces[m]), trim_silence=False)
                                           for m in members]))
        else:
            embedded = vectors[members]
        truth = np.unique(speakers[members], return_inverse=True)[1]
        for method in linkages:
            tree = linkage(embedded, method=method, metric="euclidean")
            for g, threshold in enumerate(grid):
                labels = fcluster(tree, t=threshold, criterion="distance")
                right[method][g] += len(np.unique(labels)) == len(chosen)
                purity[method][g] += sum(np.bincount(truth[labels == c]).max()
                                         for c in np.unique(labels)) / len(members)
    for method in linkages:
        print(f"{method} linkage\n{'threshold':>9s} {'count right':>11s} {'purity':>7s}")
        for g, threshold in enumerate(grid):
            if right[method][g] > 0.02 * args.trials:
                print(f"{threshold:9.2f} {100 * right[method][g] / args.trials:10.1f}% "
                      f"{100 * purity[method][g] / args.trials:6.1f}%")
        best = grid[int(np.argmax(right[method]))]
        print(f"best count accuracy at threshold {best}; best count accuracy "
              f"{100 * right[method].max() / args.trials:.1f}%")
    print(f"avid/configs/default.yaml: diarization.linkage {cfg.diarization.linkage}, threshold {cfg.diarization.threshold}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
