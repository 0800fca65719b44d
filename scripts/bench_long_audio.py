#!/usr/bin/env python
"""`avid label` on long audio: does memory stay flat from minutes to hours of speech?

Builds conversations of the given lengths (offline: two eSpeak NG voices taking turns, sentences in a shuffled
order with pauses between turns), streamed into FLAC so that making a 2-hour file holds no more than one turn in
memory, then labels each with `avid label FILE --format json,rttm` in a child process and reports wall time, the
real-time factor, the child's peak RSS, the number of turns and speakers found, and the DER against the known turns
(collar 0.5). Files are cached in bench_out/ (git-ignored).

    python scripts/bench_long_audio.py                        # 10 and 120 minutes
    python scripts/bench_long_audio.py --minutes 5 30 --check # exit 1 if peak RSS grows more than 10%
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "scripts"), str(ROOT)]
from bench_label import LabelFailed, run_label  # noqa: E402  (the same child-process runner)

from avid.evaluation.diarization import read_rttm, score_der  # noqa: E402
from avid.io.writers import write_rttm  # noqa: E402
from avid.types import SpeechTurn  # noqa: E402
from tests import media as synthetic  # noqa: E402

MAX_RSS_GROWTH = 0.10
SENTENCES = [
    "The committee will meet again on Thursday to review the budget for next year.",
    "I think we should start with the results from the field study before anything else.",
    "Could you send me the figures from last quarter so that I can check them tonight?",
    "The new prototype weighs about half as much as the old one and costs less to build.",
    "We still have not heard back from the supplier about the delivery dates.",
    "Let us take a short break and come back to this question in ten minutes.",
    "Most of the users asked for a simpler menu and a larger font on the main screen.",
    "If the weather holds, the survey team can finish the northern section by Friday.",
]


def make_conversation(path: Path, minutes: float, seed: int = 0) -> tuple[Path, Path]:
    """A two-voice conversation of ``minutes`` as FLAC, with its true turns as RTTM beside it (reused if present)."""
    rttm = path.with_suffix(".rttm")
    if path.exists() and rttm.exists():
        return path, rttm
    rate = synthetic.SAMPLE_RATE
    voices = [synthetic.MALE_VOICE, synthetic.FEMALE_VOICE]
    lines = [[synthetic.speak(text, voice) for text in SENTENCES] for voice in voices]
    rng = np.random.default_rng(seed)
    turns, position, total = [], 0, int(minutes * 60 * rate)
    tmp = path.with_name(f".{path.name}.tmp")
    with av.open(str(tmp), mode="w", format="flac") as container:
        stream = container.add_stream("flac", rate=rate, layout="mono")
        speaker = 0
        while position < total:
            pause = synthetic.silence(rng.uniform(0.3, 1.2))
            speech = np.concatenate([lines[speaker][i] for i in rng.choice(len(SENTENCES), rng.integers(1, 4),
                                                                            replace=False)])
            start = position + len(pause)
            turns.append(SpeechTurn(start=start / rate, end=(start + len(speech)) / rate, speaker=f"voice{speaker}"))
            chunk = np.concatenate([pause, speech])
            frame = av.AudioFrame.from_ndarray((np.clip(chunk, -1, 1) * 32767).astype(np.int16)[None], format="s16",
                                               layout="mono")
            frame.sample_rate, frame.pts = rate, position
            for packet in stream.encode(frame):
                container.mux(packet)
            position += len(chunk)
            speaker = 1 - speaker
        for packet in stream.encode(None):
            container.mux(packet)
    tmp.replace(path)
    write_rttm(turns, rttm, uri=path.stem)
    return path, rttm


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=ROOT / "bench_out", help="folder for audio and outputs")
    parser.add_argument("--minutes", type=float, nargs="+", default=[10.0, 120.0], help="conversation lengths")
    parser.add_argument("--transcribe", action="store_true", help="label with --transcribe (the named transcript)")
    parser.add_argument("--check", action="store_true",       # argparse formats help with %: hence %%
                        help=f"exit 1 if peak RSS grows more than {100 * MAX_RSS_GROWTH:.0f}%% from the shortest to "
                             f"the longest")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    rows = []
    for minutes in sorted(args.minutes):
        print(f"making a {minutes:g} min conversation ...", flush=True)
        audio, rttm = make_conversation(args.work / f"conversation_{minutes:g}min.flac", minutes)
        print("labelling it ...", flush=True)
        try:
            elapsed, cpu, rss, result = run_label(audio, args.work / f"label_conversation_{minutes:g}min",
                                                  "json,rttm", None, ("--transcribe",) if args.transcribe else ())
        except LabelFailed as err:
            print(f"bench_long_audio: {err}", file=sys.stderr)
            return 2
        reference = read_rttm(rttm)[audio.stem]
        hypothesis = read_rttm(next((args.work / f"label_conversation_{minutes:g}min").glob("*.rttm")))
        der = score_der(reference, next(iter(hypothesis.values())), collar=0.5, duration=minutes * 60)
        rows.append({"minutes": minutes, "label_s": round(elapsed, 1), "cpu_s": round(cpu, 1),
                     "rtf": round(minutes * 60 / elapsed, 2), "peak_rss_mb": round(rss),
                     "turns": len(result["turns"]), "speakers": len(result["people"]),
                     "words": len(result.get("words", [])),
                     "der": round(der["error_rate"], 4)})
    print(f"{'minutes':>8}{'label s':>9}{'CPU s':>8}{'RTF':>7}{'RSS MB':>8}{'turns':>7}{'speakers':>9}{'DER':>7}")
    for r in rows:
        print(f"{r['minutes']:>8g}{r['label_s']:>9.1f}{r['cpu_s']:>8.1f}{r['rtf']:>7.2f}{r['peak_rss_mb']:>8}"
              f"{r['turns']:>7}{r['speakers']:>9}{100 * r['der']:>6.1f}%")
    growth = rows[-1]["peak_rss_mb"] / rows[0]["peak_rss_mb"] - 1
    ok = growth <= MAX_RSS_GROWTH
    print(f"{'PASS' if ok else 'FAIL'}  peak RSS {rows[-1]['minutes']:g} min vs {rows[0]['minutes']:g} min: "
          f"{growth:+.1%} (within {MAX_RSS_GROWTH:.0%})")
    print(json.dumps({"rows": rows, "rss_growth": round(growth, 4)}))
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
