"""Open-set face identification over seeded enrolment splits (issue 10, part 3; scripts/eval_face_openset.py).

A split enrols some identities with ONE photo each in a temporary gallery; the genuine queries are those people's
other photos and the strangers are every photo of the people not enrolled (and of ``_unknown``). Queries are scored
by ``avid.identity.scoring.score_people``, the code behind ``avid query``, so the figures are what a user gets: a genuine
query counts as accepted when its best-ranked person is right and passes ``identify.threshold``; a stranger is
accepted when anyone does.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from ..config import Config
from ..identity.scoring import score_people
from ..identity.store import Gallery
from .identification import equal_error_rate


@dataclass
class Photo:
    key: str                       # "identity/file" (+ "#variant" for a degraded copy)
    identity: str                  # folder name; names starting with "_" are never enrolled
    photo: str                     # the original photo it comes from ("identity/file"), for same-photo checks
    embedding: np.ndarray
    sharpness: Optional[float] = None   # faces.detect.sharpness of the face (raises its threshold when blurred)


@dataclass
class Split:
    seed: int
    enrolled: dict[str, str]       # identity -> key of its enrolment photo


@dataclass
class Outcome:
    """Best-ranked scores of one split's queries."""

    genuine: list[tuple[bool, float, bool]] = field(default_factory=list)   # (top-1 right, score, honest)
    strangers: list[float] = field(default_factory=list)


def make_splits(photos: Sequence[Photo], seeds: Sequence[int], n_enrolled: int) -> list[Split]:
    """Per seed: ``n_enrolled`` of the named identities (those with a photo not starting with "_"), each with one
    random photo of its own (an original, never a degraded copy)."""
    originals = sorted({p.photo for p in photos})
    identities = sorted({k.split("/")[0] for k in originals if not k.startswith("_")})
    if not 0 < n_enrolled < len(identities):
        raise ValueError(f"enrol between 1 and {len(identities) - 1} of the {len(identities)} identities")
    splits = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        chosen = sorted(rng.choice(identities, n_enrolled, replace=False).tolist())
        enrolled = {}
        for identity in chosen:
            own = [k for k in originals if k.split("/")[0] == identity]
            enrolled[identity] = own[int(rng.integers(len(own)))]
        splits.append(Split(seed, enrolled))
    return splits


def run_split(split: Split, photos: Sequence[Photo], queries: Sequence[Photo], cfg: Config, backend: str,
              same_photo: Callable[[str, str], bool], workdir: Optional[Path] = None) -> Outcome:
    """Enrol ``split`` into a temporary gallery and score every query photo with ``score_people``.

    A query that is (a copy of) its own person's enrolment photo is skipped; ``same_photo`` says which genuine
    queries are other copies of the enrolment photo (``honest`` False), e.g. one portrait at other resolutions.
    """
    by_key = {p.key: p for p in photos}
    outcome = Outcome()
    with tempfile.TemporaryDirectory(dir=workdir) as tmp, Gallery(Path(tmp) / "openset.db") as gallery:
        for identity, key in split.enrolled.items():
            person = gallery.add_person(identity)
            gallery.add_observation(person.id, "face", by_key[key].embedding, backend, source=key)
        for query in queries:
            enrolment = split.enrolled.get(query.identity)
            if enrolment is not None and query.photo == enrolment:
                continue
            ranked, _, _ = score_people(gallery, query.embedding, None, cfg, face_backend=backend, use_model=False,
                                        face_sharpness=query.sharpness)
            best, score = ranked[0]
            if enrolment is None:
                outcome.strangers.append(float(score))
            else:
                outcome.genuine.append((best.name == query.identity, float(score),
                                        not same_photo(query.photo, enrolment)))
    return outcome


@dataclass
class Figures:
    genuine: int                   # genuine queries
    genuine_accepted: float        # share right at top-1 and accepted
    strangers: int
    strangers_accepted: float      # share accepted as anyone
    eer: Optional[float]           # over (right person's best score) vs (stranger's best score)


def figures(outcomes: Sequence[Outcome], threshold: float, honest: bool = False) -> Figures:
    """Acceptance at ``threshold`` (a calibrated score) over all splits; ``honest`` drops same-photo queries."""
    genuine = [(right, s) for o in outcomes for right, s, h in o.genuine if h or not honest]
    strangers = [s for o in outcomes for s in o.strangers]
    accepted = float(np.mean([right and s >= threshold for right, s in genuine])) if genuine else float("nan")
    false = float(np.mean([s >= threshold for s in strangers])) if strangers else float("nan")
    # A wrongly ranked genuine query cannot be accepted as the right person at any threshold: it scores -inf.
    eer = equal_error_rate([s if right else -1e9 for right, s in genuine], strangers)
    return Figures(len(genuine), accepted, len(strangers), false, eer)


def threshold_for(outcomes: Sequence[Outcome], stranger_rate: float) -> float:
    """The lowest calibrated score that accepts at most ``stranger_rate`` of the strangers of ``outcomes``."""
    strangers = np.sort([s for o in outcomes for s in o.strangers])
    if not len(strangers):
        raise ValueError("no strangers to calibrate on")
    allowed = int(np.floor(stranger_rate * len(strangers)))     # this many may pass
    if allowed >= len(strangers):
        return float(strangers[0])
    return float(np.nextafter(strangers[len(strangers) - 1 - allowed], np.inf))
