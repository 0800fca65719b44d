#!/usr/bin/env python
"""Voice identification on LibriSpeech (shared data): closed set, open set, and the speed of the speech analysis.

Closed set: every utterance of ../shared/data/voices/librispeech_train-clean-100 (251 speakers, one each) is cut
in two; the first half is enrolled, the second half is the query, each embedded as `avid enroll/query --audio`
embed a clip; top-1 is the share of queries whose nearest enrolled embedding (cosine) is their own speaker.

Open set, over ``--splits`` seeded splits: half of the speakers are enrolled, the other half are strangers. A query
is accepted when its best score reaches the configured ``identify.raw_thresholds`` entry of the encoder
(calibrated by ``scripts/eval_chimeric.py --calibrate`` on dev speakers), the score being the one `avid query`
gives (``identify.voice_similarities``: cosine relative to the enrolled voices' mean once there are
``identify.voice_centering.min_people``), and, for comparison, raw cosine. Reported: genuine queries accepted (and
correct), strangers accepted.

``--as-norm`` adds AS-norm scoring (the enrolled people as the cohort) beside raw cosine, each with a threshold
calibrated on the dev speakers of scripts/eval_chimeric.py (2% of strangers accepted there).

Speed: ``analyse_speech`` (segmentation-3.0 + local-speaker embeddings) on a 60 s clip built from the shared
diarization audio, streamed in 30 s chunks, after one warm-up call; wall and CPU seconds, real-time factor.

    python scripts/eval_voice.py [--data ../shared/data] [--config FILE] [--splits 5] [--repeats 3] [--as-norm [TOP]]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from avid.config import load_config  # noqa: E402
from avid.identity.scoring import raw_threshold, voice_similarities  # noqa: E402
from avid.io.media import load_audio  # noqa: E402
from avid.vectors import unit_rows  # noqa: E402
from avid.voice.embed import get_voice_encoder  # noqa: E402
from avid.voice.speech import analyse_speech  # noqa: E402
from tests.chimeric import identities, split_speakers  # noqa: E402


def halves(files: list[Path], embed) -> tuple[np.ndarray, np.ndarray]:
    enrolled, queries = [], []
    for path in files:
        audio = load_audio(path)
        half = len(audio) // 2
        enrolled.append(embed(audio[:half]))
        queries.append(embed(audio[half:]))
    return np.stack(enrolled), np.stack(queries)


def as_norm(enrolled: np.ndarray, queries: np.ndarray, top: int) -> np.ndarray:
    """Adaptive symmetric score normalisation (AS-norm) of query x enrolled cosines, the cohort being the enrolled
    people themselves: each side's score standardised by the mean and spread of its ``top`` closest cohort scores
    (an enrolled voice's own excluded; a query's closest one skipped, since it may be the query's own speaker)."""
    top = max(1, min(top, len(enrolled) - 2))
    scores = queries @ enrolled.T
    cohort = enrolled @ enrolled.T
    np.fill_diagonal(cohort, -np.inf)
    near = -np.sort(-cohort, axis=1)[:, :top]
    mean_e, std_e = near.mean(1), near.std(1)
    near = -np.sort(-scores, axis=1)[:, 1:top + 1]
    mean_q, std_q = near.mean(1), near.std(1)
    return 0.5 * ((scores - mean_e) / std_e + (scores - mean_q[:, None]) / std_q[:, None])


def best_scores(enrolled: np.ndarray, queries: np.ndarray, norm_top: int | None, cfg=None):
    """Best enrolled index and score of each query: as `avid query` scores a voice (``identify.voice_similarities``,
    which centres on the enrolled voices' mean in a large enough gallery) when ``cfg`` is given, else raw cosine
    (``norm_top``: AS-norm of it)."""
    if cfg is not None:
        scores = voice_similarities(enrolled, queries, cfg)
    else:
        scores = queries @ enrolled.T if norm_top is None else as_norm(enrolled, queries, norm_top)
    return scores.argmax(1), scores.max(1)


def dev_threshold(enrolled: np.ndarray, queries: np.ndarray, dev: np.ndarray, norm_top: int | None,
                  rate: float = 0.02, splits: int = 50) -> float:
    """The score that ``rate`` of strangers beat on dev speakers: half of them enrolled, the other half strangers,
    over seeded splits (the test splits use other seeds)."""
    beaten = []
    for seed in range(1000, 1000 + splits):
        order = np.random.default_rng(seed).permutation(dev)
        known, strangers = order[:len(order) // 2], order[len(order) // 2:]
        beaten.append(best_scores(enrolled[known], queries[strangers], norm_top)[1])
    return float(np.quantile(np.concatenate(beaten), 1 - rate))


def open_set(enrolled: np.ndarray, queries: np.ndarray, threshold: float, splits: int,
             norm_top: int | None = None, cfg=None) -> list[dict]:
    results = []
    for seed in range(splits):
        order = np.random.default_rng(seed).permutation(len(enrolled))
        known, strangers = order[: len(order) // 2], order[len(order) // 2:]
        best, best_score = best_scores(enrolled[known], queries, norm_top, cfg)
        genuine_ok = (best_score[known] >= threshold) & (known[best[known]] == known)
        results.append({"seed": seed, "genuine_accepted": float(np.mean(best_score[known] >= threshold)),
                        "genuine_correct": float(np.mean(genuine_ok)),
                        "strangers_accepted": float(np.mean(best_score[strangers] >= threshold))})
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--config", help="YAML overriding avid/configs/default.yaml")
    parser.add_argument("--splits", type=int, default=5, help="seeded open-set splits")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of the 60 s clip")
    parser.add_argument("--as-norm", type=int, metavar="TOP", nargs="?", const=50,
                        help="also compare AS-norm scoring (cohort: the enrolled others, TOP closest) with raw "
                             "cosine, both calibrated on the dev speakers")
    args = parser.parse_args()

    data = Path(args.data)
    files = sorted((data / "voices" / "librispeech_train-clean-100").glob("*.flac"))
    if not files:
        print(f"LibriSpeech voices not found under {data}", file=sys.stderr)
        return 2
    cfg = load_config(args.config)
    encoder = get_voice_encoder(cfg)

    started = time.perf_counter()
    # A clip's voice as `avid enroll --audio` and `avid query --audio` take it (avid.pipeline.identify.evidence_from).
    enrolled, queries = halves(files, encoder.embed_utterance)
    best = (queries @ enrolled.T).argmax(axis=1)
    wrong = [f"{files[i].name} -> {files[j].name}" for i, j in enumerate(best) if i != j]
    top1 = float(np.mean(best == np.arange(len(files))))
    print(f"{encoder.name}: closed-set top-1 {100 * top1:.1f}% over {len(files)} speakers "
          f"({time.perf_counter() - started:.1f} s)")
    for line in wrong:
        print(f"  wrong: {line}")
    enrolled, queries = unit_rows(enrolled), unit_rows(queries)
    threshold = raw_threshold(cfg, encoder.name)
    least = cfg.identify.voice_centering.min_people
    report_open_set(f"as `avid query` scores (threshold {threshold}, centred on the gallery's mean voice from "
                    f"{least} people)", open_set(enrolled, queries, threshold, args.splits, cfg=cfg),
                    len(files), verbose=True)
    report_open_set(f"raw cosine {threshold} (no centring)", open_set(enrolled, queries, threshold, args.splits),
                    len(files))
    if args.as_norm:
        # Both scorings calibrated alike on the dev speakers of scripts/eval_chimeric.py (its split, seed 0):
        # the score 2% of dev strangers beat.
        names = [path.name for path in files]
        dev = np.array([names.index(path.name) for path in split_speakers(data, 0, len(identities(data)))[2]])
        for label, top in (("raw cosine", None), (f"AS-norm (top {args.as_norm})", args.as_norm)):
            threshold = dev_threshold(enrolled, queries, dev, top)
            report_open_set(f"{label} at {threshold:.3f} (dev: 2% of {len(dev)} dev speakers' strangers)",
                            open_set(enrolled, queries, threshold, args.splits, top), len(files))

    clip = np.concatenate([load_audio(p) for p in sorted((data / "diarization").glob("**/*.wav"))])[:60 * 16000]
    duration = len(clip) / 16000
    chunk = 30 * 16000
    analyse_speech([clip[:chunk]], cfg, encoder)   # warm-up: first calls allocate and load
    for _ in range(args.repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        analyse_speech((clip[i:i + chunk] for i in range(0, len(clip), chunk)), cfg, encoder)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(f"analyse_speech on a {duration:.0f} s clip: {wall:.2f} s wall, {cpu:.2f} s CPU, "
              f"{duration / wall:.0f}x real time")
    return 0


def report_open_set(label: str, results: list[dict], n_files: int, verbose: bool = False) -> None:
    print(f"open set, {label} ({len(results)} splits, {n_files // 2} enrolled / {n_files - n_files // 2} "
          f"strangers each):")
    for r in results if verbose else []:
        print(f"  seed {r['seed']}: genuine accepted {100 * r['genuine_accepted']:.1f}% "
              f"(correct {100 * r['genuine_correct']:.1f}%), strangers accepted {100 * r['strangers_accepted']:.1f}%")
    print(f"  mean: genuine accepted {100 * np.mean([r['genuine_accepted'] for r in results]):.1f}% "
          f"(correct {100 * np.mean([r['genuine_correct'] for r in results]):.1f}%, worst "
          f"{100 * min(r['genuine_correct'] for r in results):.1f}%), strangers accepted "
          f"{100 * np.mean([r['strangers_accepted'] for r in results]):.1f}% "
          f"(worst {100 * max(r['strangers_accepted'] for r in results):.1f}%)")


if __name__ == "__main__":
    sys.exit(main())
