#!/usr/bin/env python
"""Named transcripts (issue 11): WER and speaker-attributed cpWER of `avid label --transcribe` on
../shared/data/diarization/sample.wav against sample.stm, with the speaker count found automatically.

WER (jiwer) compares all the words in time order; cpWER (meeteval) compares each reference speaker's words with
the words of the hypothesis speaker it is best matched to, so words under the wrong speaker count as errors. Both
on lower-case text with punctuation removed. Also the transcription's own cost: seconds and real-time factor.

    python scripts/eval_transcript.py [--config my.yaml]
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from avid.config import load_config  # noqa: E402
from avid.pipeline.label import label_recording  # noqa: E402
from avid.pipeline.models import Models  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data"
TARGETS = {"WER": 0.20, "cpWER": 0.30}


def normalise(text: str) -> str:
    """Lower case, punctuation removed (apostrophes kept inside words), one space between words."""
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split())


def read_stm(path: Path) -> list[tuple[str, float, str]]:
    """(speaker, start, text) per STM line: ``uri channel speaker start end text``."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and not line.startswith(";;"):
            rows.append((parts[2], float(parts[3]), parts[5]))
    return rows


def scores(reference: list[tuple[str, float, str]], words) -> dict:
    import jiwer
    from meeteval.wer import cp_word_error_rate

    ref_text = normalise(" ".join(text for _, _, text in sorted(reference, key=lambda r: r[1])))
    hyp_text = normalise(" ".join(w.text for w in sorted(words, key=lambda w: w.start)))
    by_ref, by_hyp = defaultdict(list), defaultdict(list)
    for speaker, _, text in sorted(reference, key=lambda r: r[1]):
        by_ref[speaker].append(text)
    for word in sorted(words, key=lambda w: w.start):
        by_hyp[word.name or word.speaker or "unattributed"].append(word.text)
    cp = cp_word_error_rate({s: normalise(" ".join(t)) for s, t in by_ref.items()},
                            {s: normalise(" ".join(t)) for s, t in by_hyp.items()})
    return {"WER": jiwer.wer(ref_text, hyp_text), "cpWER": float(cp.error_rate),
            "hypothesis speakers": len(by_hyp), "reference speakers": len(by_ref)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--config", help="YAML overriding avid/configs/default.yaml")
    args = parser.parse_args()
    audio, stm = args.data / "diarization" / "sample.wav", args.data / "diarization" / "sample.stm"
    if not stm.exists():
        print(f"shared dev data not found at {args.data}", file=sys.stderr)
        return 2
    cfg = load_config(args.config)
    models = Models(cfg)
    models.transcriber
    started = time.perf_counter()
    plain = label_recording(audio, cfg, models=models)
    middle = time.perf_counter()
    result = label_recording(audio, cfg, models=models, transcribe=True)
    done = time.perf_counter()
    figures = scores(read_stm(stm), result.words)
    duration = result.media.duration
    ok = all(figures[k] <= t for k, t in TARGETS.items())
    for key, target in TARGETS.items():
        print(f"{key}: {100 * figures[key]:.1f}% (target <= {100 * target:.0f}%)")
    print(f"speakers: {figures['hypothesis speakers']} found, {figures['reference speakers']} in the reference; "
          f"{len(plain.turns)} turns")
    print(f"label {middle - started:.1f} s, label --transcribe {done - middle:.1f} s on {duration:.1f} s of audio: "
          f"transcription adds {done - middle - (middle - started):.1f} s ({duration / max(done - middle, 1e-9):.1f}x "
          f"real time in all)")
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
