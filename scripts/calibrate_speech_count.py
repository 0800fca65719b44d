#!/usr/bin/env python
"""Calibrate how segmentation-3.0's windows decide speech and overlap (voice.segmentation.speech_threshold and
overlap_threshold) on simulated conversations, not on the test sets.

Each simulated conversation takes 2-4 LibriSpeech speakers (../shared/data/voices/librispeech_train-clean-100, one
read utterance each), cuts their utterances into turns of 1-6 s and lays them end to end with gaps drawn so that
about a tenth of the speech overlaps another speaker (turn-taking that starts early, and short interjections inside
a turn), each speaker at its own level; ``--far-field`` puts the whole conversation through one synthetic room
(reverberation and noise, as in scripts/calibrate_diarization.py). The truth is each speaker's speech as Silero VAD
finds it in their clean turn (no padding), so collar 0.5 is the fairer score: Silero's own boundaries are not
exact. segmentation-3.0 and CAM++ then run as avid runs them, and the whole diarization is scored (DER, overlap
included) for pyannote's hard rule and for a grid of the two thresholds on the windows' mean probabilities, with
the precision and recall of the frames with two or more speakers. The AMI and sample.wav files that
scripts/eval_diarization.py scores are never seen here.

    python scripts/calibrate_speech_count.py [--trials 40] [--seed 0] [--far-field]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from pyannote.core import Annotation, Segment

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from avid.config import load_config  # noqa: E402
from avid.evaluation.diarization import score_der  # noqa: E402
from avid.io.media import load_audio  # noqa: E402
from avid.io.writers import to_annotation  # noqa: E402
from avid.voice.diarize import diarize
from avid.voice.embed import get_voice_encoder  # noqa: E402
from avid.voice.speech import LocalSpeakerAnalyzer, true_runs  # noqa: E402
from avid.voice.vad import detect_speech  # noqa: E402

sys.path.insert(0, str(ROOT / "scripts"))
from calibrate_diarization import DEFAULT_DATA, Room  # noqa: E402

RATE = 16000
GRID = (0.3, 0.4, 0.5, 0.6)


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
    args = parser.parse_args()
    files = sorted(args.data.glob("*.flac"))
    if not files:
        print(f"no LibriSpeech files in {args.data}", file=sys.stderr)
        return 2
    cfg = load_config(args.config)
    # Truth masks come from Silero with no padding and short pauses kept, so that they hug the speech.
    truth_cfg = load_config(args.config, {"voice": {"vad": {"padding_seconds": 0.0, "min_silence_seconds": 0.2}}})
    utterances = {path.name.split("-")[0]: load_audio(path, RATE) for path in files}
    encoder = get_voice_encoder(cfg)
    rng = np.random.default_rng(args.seed)
    conversations = []
    for _ in range(args.trials):
        mixture, truth = simulate(rng, utterances, truth_cfg, args.far_field)
        analyzer = LocalSpeakerAnalyzer(cfg, encoder)
        analyzer.feed(mixture)
        reference = Annotation()
        for name, mask in truth.items():
            for first, end in true_runs(mask):
                reference[Segment(first / 100, end / 100), name] = name
        conversations.append((analyzer.finish(), reference, len(mixture) / RATE))
    speech = sum(r.get_timeline().support().duration() for _, r, _ in conversations)
    overlapped = sum(r.get_overlap().duration() for _, r, _ in conversations)
    print(f"{args.trials} simulated conversations{' (far field)' if args.far_field else ''}: {speech:.0f} s of "
          f"speech, {100 * overlapped / speech:.1f}% of it overlapped")
    rules = [(None, None)] + [(s, o) for s in GRID for o in GRID]
    print(f"{'speech':>6s} {'overlap':>7s} {'DER@0.5':>7s} {'DER@0':>6s} {'miss':>5s} {'FA':>5s} {'conf':>5s} "
          f"{'ovl P':>6s} {'ovl R':>6s}")
    best = None
    for speech_threshold, overlap_threshold in rules:
        rule_cfg = load_config(args.config, {"voice": {"segmentation": {"speech_threshold": speech_threshold,
                                                                        "overlap_threshold": overlap_threshold}}})
        totals = {collar: np.zeros(4) for collar in (0.5, 0.0)}
        overlap = np.zeros(3)
        for analysis, reference, duration in conversations:
            hypothesis = to_annotation(diarize(analysis.segmentation, analysis.windows, rule_cfg).turns)
            for collar in totals:
                score = score_der(reference, hypothesis, collar=collar, duration=duration)
                totals[collar] += [score["missed"], score["false_alarm"], score["confusion"], score["total"]]
            ref, hyp = reference.get_overlap(), hypothesis.get_overlap()
            overlap += [ref.duration(), ref.crop(hyp, mode="intersection").support().duration(), hyp.duration()]
        der = {collar: 100 * t[:3].sum() / t[3] for collar, t in totals.items()}
        missed, false_alarm, confusion, total = totals[0.5]
        name = ("hard", "rule") if speech_threshold is None else (f"{speech_threshold:.2f}", f"{overlap_threshold:.2f}")
        print(f"{name[0]:>6s} {name[1]:>7s} {der[0.5]:6.1f}% {der[0.0]:5.1f}% {100 * missed / total:5.1f} "
              f"{100 * false_alarm / total:5.1f} {100 * confusion / total:5.1f} "
              f"{overlap[1] / max(overlap[2], 1e-9):6.2f} {overlap[1] / max(overlap[0], 1e-9):6.2f}")
        if speech_threshold is not None and (best is None or der[0.5] < best[0]):
            best = (der[0.5], speech_threshold, overlap_threshold)
    settings = cfg.voice.segmentation
    print(f"lowest DER at collar 0.5: speech_threshold {best[1]}, overlap_threshold {best[2]} ({best[0]:.1f}%); "
          f"avid/configs/default.yaml has {settings.speech_threshold}, {settings.overlap_threshold}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
