#!/usr/bin/env python
"""Voice-only identification on LibriSpeech (shared data) and the speed of the voice front end.

Identification: every utterance of ../shared/data/voices/librispeech_train-clean-100 (251 speakers, one each)
is cut in two; the first half is enrolled, the second half is the query; top-1 is the share of queries whose
nearest enrolled embedding (cosine) is their own speaker. ``--reference`` also runs Resemblyzer's own pipeline
(preprocess_wav + embed_utterance) for comparison.

Speed: ``analyse_audio`` (VAD + window and region embeddings) on a 60 s clip built from the shared diarization
audio, streamed in 30 s chunks, after one warm-up call; wall and CPU seconds and the real-time factor.

    python scripts/eval_voice.py [--data ../shared/data] [--reference] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from avid.config import load_config
from avid.media import load_audio
from avid.voice.embed import VoiceEncoder, analyse_audio

ROOT = Path(__file__).resolve().parents[1]


def identification(files: list[Path], embed) -> tuple[float, list[str]]:
    enrolled, queries = [], []
    for path in files:
        audio = load_audio(path)
        half = len(audio) // 2
        enrolled.append(embed(audio[:half]))
        queries.append(embed(audio[half:]))
    similarity = np.stack(queries) @ np.stack(enrolled).T
    best = similarity.argmax(axis=1)
    wrong = [f"{files[i].name} -> {files[j].name}" for i, j in enumerate(best) if i != j]
    return float(np.mean(best == np.arange(len(files)))), wrong


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--config", help="YAML overriding configs/default.yaml")
    parser.add_argument("--reference", action="store_true", help="also run Resemblyzer's own pipeline")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of the 60 s clip")
    args = parser.parse_args()

    data = Path(args.data)
    files = sorted((data / "voices" / "librispeech_train-clean-100").glob("*.flac"))
    if not files:
        print(f"LibriSpeech voices not found under {data}", file=sys.stderr)
        return 2
    cfg = load_config(args.config)
    encoder = VoiceEncoder(cfg)

    started = time.perf_counter()
    top1, wrong = identification(files, encoder.embed_utterance)
    print(f"voice identification, {len(files)} speakers, first half enrolled / second half queried: "
          f"top-1 {100 * top1:.2f}% ({len(wrong)} wrong) in {time.perf_counter() - started:.1f}s")
    for line in wrong:
        print(f"  wrong: {line}")
    if args.reference:
        from resemblyzer import VoiceEncoder as ResemblyzerEncoder, preprocess_wav

        reference = ResemblyzerEncoder("cpu", verbose=False)
        started = time.perf_counter()
        top1, wrong = identification(files, lambda audio: reference.embed_utterance(preprocess_wav(audio)))
        print(f"Resemblyzer's own pipeline: top-1 {100 * top1:.2f}% ({len(wrong)} wrong) "
              f"in {time.perf_counter() - started:.1f}s")

    diarization = data / "diarization"
    clip = np.concatenate([load_audio(diarization / "sample.wav"), load_audio(diarization / "ami_train" / "trn03.wav")])
    chunk = int(cfg.media.audio_sample_rate * cfg.media.audio_chunk_seconds)
    duration = len(clip) / cfg.media.audio_sample_rate
    analyse_audio([clip[:chunk]], cfg, encoder)   # warm-up: first calls allocate and load
    for _ in range(args.repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        regions, windows = analyse_audio((clip[i:i + chunk] for i in range(0, len(clip), chunk)), cfg, encoder)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(f"analyse_audio on a {duration:.0f} s clip: {wall:.2f} s wall, {cpu:.2f} s CPU, real-time factor "
              f"{wall / duration:.3f} ({len(regions)} regions, {len(windows)} windows; load average "
              f"{os.getloadavg()[0]:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
