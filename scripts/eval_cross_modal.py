#!/usr/bin/env python
"""Enrol by one modality, recognise by the other, through the library (issue 18), on ../shared/data.

Chimeric people: per seed, 6 of the 9 named face identities are people, each paired with a LibriSpeech speaker;
the other 3 identities (with speakers of their own) are strangers who appear in the library too, and must never
be absorbed. Each utterance is cut in two halves (written to a temporary folder with the videos, never into the
project).

- photo -> voice: each person is enrolled with one photo; the library holds a talking-photo video of every
  identity (another photo where there is one) saying the FIRST half; ``avid process --db`` then learns the voices;
  the queries are the SECOND halves (people: top-1 accepted; strangers: the 3 library strangers and 50 other
  speakers, accepted as anyone).
- voice -> face: each person is enrolled with the first half; the library's videos say the second half; the
  queries are the person's photos not used in the library (strangers: the 3 stranger identities' photos and
  faces/_unknown).

Beside the linking, the shared code alone (deliverable 3): the same libraries with learning switched off, the
shared model trained on the enrolment and the library's unnamed face-voice pairs, and each query matched across
modalities in z (a voice against the people's face-only z prototypes, and the reverse). These pairs were seen
together in the library, so that figure measures cross-modal matching of learned pairs, not matching a voice to
a face never heard with it.

    python scripts/eval_cross_modal.py [--seeds 0 1 2] [--json]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from avid.config import load_config  # noqa: E402
from avid.errors import NoContentError  # noqa: E402
from avid.evaluation.identification import equal_error_rate  # noqa: E402
from avid.identity.scoring import query_embeddings  # noqa: E402
from avid.identity.store import Gallery  # noqa: E402
from avid.identity.training import load_model, train
from avid.io import media
from avid.library.collection import process_collection  # noqa: E402
from avid.pipeline.identify import enroll, evidence_from
from avid.pipeline.models import Models  # noqa: E402
from tests import media as synthetic  # noqa: E402
from tests.chimeric import halves, identities, split_speakers, talking_photo  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data"
N_PEOPLE = 6
TARGET_GENUINE, TARGET_STRANGERS = 0.95, 0.05
NO_LEARNING = {"library": {"learn": {"min_face_similarity": 2.0, "min_voice_similarity": 2.0}}}


def write_video(path: Path, photo: Path, speech: str, cfg) -> Path:
    portrait, _ = talking_photo(photo, cfg)
    audio = media.load_audio(speech, synthetic.SAMPLE_RATE)
    synthetic.write_talking_video(path, [synthetic.Segment(audio)], [portrait], size=(960, 540))
    return path


def cross_modal_z(gallery: Gallery, queries: list[tuple[str, np.ndarray, bool]], query_modality: str) -> dict:
    """Queries of one modality matched in z against the people's prototypes of the OTHER modality."""
    loaded = load_model(gallery)
    if loaded is None:
        return {}
    model = loaded[0]
    target = "z_face" if query_modality == "voice" else "z_voice"
    people, protos = gallery.prototypes(target)
    if not people:
        return {}
    top1 = n = 0
    genuine, impostor = [], []
    for person, vector, known in queries:
        scores = protos @ model.encode(**{query_modality: vector})
        for p, s in zip(people, scores):
            (genuine if (known and p.name == person) else impostor).append(float(s))
        if known:
            n += 1
            top1 += people[int(np.argmax(scores))].name == person
    return {"queries": n, "top1": top1 / n if n else None, "eer": equal_error_rate(genuine, impostor)}


def run_seed(data: Path, seed: int, tmp: Path, cfg, models: Models) -> dict:
    people_photos = identities(data)
    names = list(people_photos)
    order = np.random.default_rng(seed).permutation(len(names))
    people, outsiders = [names[i] for i in order[:N_PEOPLE]], [names[i] for i in order[N_PEOPLE:]]
    paired, strangers, _ = split_speakers(data, seed, len(names))
    voice_of = dict(zip(people + outsiders, paired))
    cut = {who: halves(voice_of[who], tmp) for who in people + outsiders}
    library_photo = {who: people_photos[who][1 if len(people_photos[who]) > 1 else 0] for who in names}
    unknown = [p for p in sorted((data / "faces" / "_unknown").iterdir()) if p.suffix.lower() in media.IMAGE_EXTENSIONS]
    result = {"seed": seed, "people": people, "strangers": outsiders}

    def voice(path: str) -> np.ndarray:
        return evidence_from(path, cfg, models).voice

    def face(path: Path) -> np.ndarray | None:
        try:
            return evidence_from(path, cfg, models).face
        except NoContentError:
            return None

    for direction, enrol_kind, library_half, query_kind in (("photo->voice", "image", 0, "voice"),
                                                           ("voice->face", "audio", 1, "face")):
        folder = tmp / f"{seed}-{direction.replace('>', '')}"
        videos = folder / "library"
        videos.mkdir(parents=True)
        for who in people + outsiders:
            write_video(videos / f"{who}.mp4", library_photo[who], cut[who][library_half], cfg)
        if query_kind == "voice":
            queries = [(who, voice(cut[who][1]), True) for who in people]
            queries += [(f"stranger:{who}", voice(cut[who][1]), False) for who in outsiders]
            queries += [(f"stranger:{s.stem}", voice(halves(s, tmp)[1]), False) for s in strangers]
        else:
            queries = [(who, face(p), True) for who in people for p in people_photos[who]
                       if p != library_photo[who]]
            queries += [(f"stranger:{who}", face(p), False) for who in outsiders for p in people_photos[who]]
            queries += [("stranger:unknown", face(p), False) for p in unknown]
            queries = [q for q in queries if q[1] is not None]
        figures = {}
        for system, config in (("linking", cfg), ("z only", load_config(overrides=NO_LEARNING))):
            db = folder / f"{system.replace(' ', '_')}.db"
            with Gallery(db) as gallery:
                for who in people:
                    enrol_file = people_photos[who][0] if enrol_kind == "image" else cut[who][0]
                    enroll(gallery, who, images=[enrol_file] if enrol_kind == "image" else [],
                           audios=[enrol_file] if enrol_kind == "audio" else [], cfg=config, models=models)
            process_collection([videos], db, config, workers=1, quiet=True)
            with Gallery(db) as gallery:
                train(gallery, config)
                if system == "linking":
                    learned = {p.name: (p.n_face, p.n_voice) for p in gallery.people()}
                    outcome = _score(gallery, queries, query_kind, config)
                    outcome["people_after_library"] = learned
                else:
                    outcome = cross_modal_z(gallery, queries, query_kind)
            figures[system] = outcome
        result[direction] = figures
    return result


def _score(gallery: Gallery, queries, modality: str, cfg) -> dict:
    from avid.identity.scoring import Evidence

    backend = gallery.encoders()[modality][0]
    right = n = accepted_strangers = n_strangers = 0
    for person, vector, known in queries:
        evidence = Evidence(**{modality: vector, f"{modality}_backend": backend})
        answer = query_embeddings(gallery, evidence, top_k=1, cfg=cfg).answer
        if known:
            n += 1
            right += answer.accepted and answer.name == person
        else:
            n_strangers += 1
            accepted_strangers += answer.accepted
    return {"queries": n, "top1_accepted": right / n if n else None, "strangers": n_strangers,
            "strangers_accepted": accepted_strangers / n_strangers if n_strangers else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--config", help="YAML overriding avid/configs/default.yaml")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="write the videos and stores here and keep them")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not (args.data / "faces").is_dir():
        print(f"shared dev data not found at {args.data}", file=sys.stderr)
        return 2
    cfg = load_config(args.config)
    models = Models(cfg)
    with tempfile.TemporaryDirectory(prefix="avid-crossmodal-") as tmp:
        out = args.keep or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        results = [run_seed(args.data, seed, out, cfg, models) for seed in args.seeds]
    if args.json:
        print(json.dumps(results, indent=1))
        return 0
    for direction in ("photo->voice", "voice->face"):
        link = [r[direction]["linking"] for r in results]
        genuine = sum(x["top1_accepted"] * x["queries"] for x in link) / sum(x["queries"] for x in link)
        strangers = sum(x["strangers_accepted"] * x["strangers"] for x in link) / sum(x["strangers"] for x in link)
        z = [r[direction]["z only"] for r in results if r[direction]["z only"]]
        print(f"{direction}: linking through the library: top-1 accepted {100 * genuine:.1f}% of "
              f"{sum(x['queries'] for x in link)} queries (target {100 * TARGET_GENUINE:.0f}%), strangers accepted "
              f"{100 * strangers:.1f}% of {sum(x['strangers'] for x in link)} (target <= {100 * TARGET_STRANGERS:.0f}%)"
              f"  {'PASS' if genuine >= TARGET_GENUINE and strangers <= TARGET_STRANGERS else 'FAIL'}")
        if z:
            top1 = sum(x["top1"] * x["queries"] for x in z) / sum(x["queries"] for x in z)
            eers = [x["eer"] for x in z if x["eer"] is not None]
            print(f"  shared code z alone, cross-modal (pairs seen together in the library, no linking): top-1 "
                  f"{100 * top1:.1f}%, EER {100 * float(np.mean(eers)):.1f}% (mean over seeds)")
        for r in results:
            print(f"  seed {r['seed']}: people after the library (faces, voices): {r[direction]['linking']['people_after_library']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
