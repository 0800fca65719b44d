#!/usr/bin/env python
"""Calibrate overlap detection (voice.segmentation.overlap_threshold) on simulated conversations, not on the test sets.

Each simulated conversation takes 2-4 LibriSpeech speakers (../shared/data/voices/librispeech_train-clean-100, one
read utterance each), cuts their utterances into turns of 1-6 s and lays them end to end with gaps drawn so that
about a fifth of the speech overlaps another speaker (turn-taking that starts early, and short interjections inside
a turn), each speaker at its own level; ``--far-field`` puts the whole conversation through one synthetic room
(reverberation and noise, as in scripts/calibrate_diarization.py). The truth is each speaker's speech as Silero VAD
finds it in their clean turn. segmentation-3.0 then runs as avid runs it, and every frame's speaker count is scored
against the truth for pyannote's hard rule and for a grid of thresholds on the windows' mean probability of
overlap: precision and recall of the frames with two or more speakers, and the F1 that picks the threshold. With
``--der`` the whole diarization (configured settings) is also scored, collar 0, overlap included. The AMI and
sample.wav files that scripts/eval_diarization.py scores are never seen here.

    python scripts/calibrate_overlap.py [--trials 40] [--seed 0] [--far-field] [--der]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from avid.config import load_config  # noqa: E402
from avid.media import load_audio  # noqa: E402
from avid.voice.speech import LocalSpeakerAnalyzer  # noqa: E402
from avid.voice.vad import detect_speech  # noqa: E402

sys.path.insert(0, str(ROOT / "scripts"))
from calibrate_diarization import DEFAULT_DATA, Room  # noqa: E402

RATE = 16000
GRID = np.round(np.arange(0.10, 0.71, 0.05), 2)


class NoEmbeddings:
    """Stands in for the voice encoder when only the segmentation is scored."""

    def embed_local(self, audios, masks, frame_times):
        return [None] * len(audios)


def simulate(rng: np.random.Generator, utterances: dict, cfg, far_field: bool):
    """(mixture, truth): the conversation's audio and, per speaker, a boolean speech mask at 10 ms."""
    names = rng.choice(sorted(utterances), size=rng.integers(2, 5), replace=False)
    cursor = {name: 0 for name in names}
    level = {name: 10 ** (rng.uniform(-6, 0) / 20) for name in names}
    plan, t, previous = [], 0.5, None
    while len(plan) < 14:
        name = rng.choice([n for n in names if n != previous])
        audio = utterances[name]
        length = int(rng.uniform(1.0, 6.0) * RATE)
        if cursor[name] + length > len(audio):
            cursor[name] = 0
        piece = audio[cursor[name]:cursor[name] + length]
        cursor[name] += length
        if previous is not None and rng.random() < 0.3:       # an interjection inside the previous turn
            last_start, last_piece = plan[-1][1], plan[-1][2]
            start = last_start + rng.uniform(0.2, 0.8) * len(last_piece) / RATE
            piece = piece[:int(rng.uniform(0.5, 1.5) * RATE)]
        else:                                                  # the next turn, early (overlap) or after a pause
            start = t + rng.normal(-0.2, 0.6)
        start = max(0.0, start)
        plan.append((name, start, piece))
        t = max(t, start + len(piece) / RATE)
        previous = name
    total = int((t + 0.5) * RATE)
    mixture = np.zeros(total, dtype=np.float32)
    truth = {name: np.zeros(total // 160 + 1, dtype=bool) for name in names}
    for name, start, piece in plan:
        first = int(start * RATE)
        mixture[first:first + len(piece)] += level[name] * piece[:total - first]
        for region in detect_speech(piece, cfg, RATE):
            truth[name][int((start + region.start) * 100):int((start + region.end) * 100)] = True
    if far_field:
        mixture = Room(rng)(mixture)
    return mixture, truth


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--config")
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--far-field", action="store_true", help="one synthetic room per conversation")
    parser.add_argument("--der", action="store_true", help="also score the configured diarization (DER, collar 0)")
    args = parser.parse_args()
    files = sorted(args.data.glob("*.flac"))
    if not files:
        print(f"no LibriSpeech files in {args.data}", file=sys.stderr)
        return 2
    # Truth masks come from Silero with no padding and short pauses kept, so that they hug the speech.
    cfg = load_config(args.config, {"voice": {"vad": {"padding_seconds": 0.0, "min_silence_seconds": 0.2}}})
    utterances = {path.name.split("-")[0]: load_audio(path, RATE) for path in files}
    if args.der:
        from avid.evaluation.diarization import score_der
        from avid.voice.diarize import diarize, to_annotation
        from avid.voice.embed import get_voice_encoder
        from pyannote.core import Annotation, Segment
        encoder = get_voice_encoder(cfg)
        der = np.zeros(4)
    else:
        encoder = NoEmbeddings()
    rng = np.random.default_rng(args.seed)
    hits = {"hard": np.zeros(3)} | {float(g): np.zeros(3) for g in GRID}   # true 2+, detected 2+, both
    speech_seconds = overlap_seconds = 0.0
    for _ in range(args.trials):
        mixture, truth = simulate(rng, utterances, cfg, args.far_field)
        analyzer = LocalSpeakerAnalyzer(cfg, encoder)
        analyzer.feed(mixture)
        analysis = analyzer.finish()
        segmentation = analysis.segmentation
        centres = segmentation.time_of(np.arange(segmentation.num_frames))
        index = np.minimum((centres * 100).astype(int), len(next(iter(truth.values()))) - 1)
        true_count = sum(mask[index].astype(int) for mask in truth.values())
        speech_seconds += float((true_count > 0).sum() * segmentation.frame_step)
        overlap_seconds += float((true_count > 1).sum() * segmentation.frame_step)
        for key in hits:
            count = segmentation.speaker_count(2, None if key == "hard" else key)
            hits[key] += [(true_count > 1).sum(), (count > 1).sum(), ((true_count > 1) & (count > 1)).sum()]
        if args.der:
            reference = Annotation()
            for name, mask in truth.items():
                for first, end in _runs(mask):
                    reference[Segment(first / 100, end / 100), name] = name
            turns = diarize(segmentation, analysis.windows, cfg).turns
            score = score_der(reference, to_annotation(turns), collar=0.0, duration=len(mixture) / RATE)
            der += [score["missed"], score["false_alarm"], score["confusion"], score["total"]]
    print(f"{args.trials} simulated conversations{' (far field)' if args.far_field else ''}: {speech_seconds:.0f} s "
          f"of speech, {100 * overlap_seconds / speech_seconds:.1f}% of it overlapped")
    print(f"{'rule':>9s} {'precision':>9s} {'recall':>7s} {'F1':>6s}")
    best, best_f1 = None, -1.0
    for key, (true, detected, both) in hits.items():
        precision, recall = both / max(detected, 1), both / max(true, 1)
        f1 = 2 * precision * recall / max(precision + recall, 1e-9)
        print(f"{key if key == 'hard' else f'{key:.2f}':>9s} {precision:9.3f} {recall:7.3f} {f1:6.3f}")
        if key != "hard" and f1 > best_f1:
            best, best_f1 = key, f1
    print(f"best F1 {best_f1:.3f} at overlap_threshold {best}; configs/default.yaml has "
          f"{cfg.voice.segmentation.overlap_threshold}")
    if args.der:
        missed, false_alarm, confusion, total = der
        print(f"DER (collar 0, configured settings) {100 * (missed + false_alarm + confusion) / total:.1f}% "
              f"(missed {100 * missed / total:.1f}, false alarm {100 * false_alarm / total:.1f}, "
              f"confusion {100 * confusion / total:.1f})")
    return 0


def _runs(mask: np.ndarray):
    from avid.voice.speech import true_runs

    return true_runs(mask)


if __name__ == "__main__":
    sys.exit(main())
