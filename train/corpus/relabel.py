"""``python -m train.corpus relabel CORPUS``: redraw the face curves of generated clips from
phones with trimmed phrase ends (``train.corpus.pauses``), without synthesising the audio again.

A generated clip's face is a pure function of its phones, its audio and its face seed (the
``seed`` of ``generate.plan_clip``; :func:`train.corpus.face.face_curves` draws everything else
from ``numpy.random.default_rng([face_seed, 3])``). Clips written since this command exist carry
``face_seed`` in their entry. For older clips it is recovered by planning the clip again under
each candidate ``(piper_share, kokoro_share)`` of the generator (``--shares``) and keeping the
plan whose voice, emotion, intensity and split match the entry; the face redrawn from the old
phones must then equal the stored curves (within :data:`VERIFY_ATOL`, the 16-bit audio moves the
brows a little), or the clip is left alone and counted as unverified.

The first relabel keeps each original motion file whose curves change as ``motion_orig/<id>.npz``;
nothing is lost.
Entries get ``face_seed`` and ``labels: "trimmed-phrase-ends"``; relabelling again is a no-op.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np

LABELS = "trimmed-phrase-ends"
#: Largest difference allowed between stored curves and the face redrawn from the old phones.
VERIFY_ATOL = 0.02
#: The generator's ``(piper_share, kokoro_share)`` settings used so far: the default plan and
#: issue 16's Kokoro batch.
DEFAULT_SHARES = ((0.5, 0.0), (0.05, 0.85))
_ID = re.compile(r"tts-s(\d+)-(\d+)$")


def _phones(z) -> list:
    return [(str(p), float(s), float(e)) for p, s, e in zip(z["phones"], z["phone_start_s"], z["phone_end_s"])]


def recover_face_seed(entry: dict, shares=DEFAULT_SHARES) -> int | None:
    """The face seed of a generated clip (its entry's, or the matching plan's), or None."""
    from train.corpus.generate import GenerateOptions, plan_clip

    if "face_seed" in entry:
        return int(entry["face_seed"])
    m = _ID.match(entry["id"])
    if not m:
        return None
    for piper, kokoro in shares:
        spec = plan_clip(GenerateOptions(out="", seed=int(m[1]), fps=int(entry["fps"]), piper_share=piper,
                                         kokoro_share=kokoro), int(m[2]))
        if (spec.voice, spec.emotion, spec.intensity, spec.split) == \
                (entry["voice"], entry["emotion"], int(entry["intensity"]), entry["split"]):
            return spec.seed
    return None


def relabel_clip(root: str | Path, entry: dict, shares=DEFAULT_SHARES) -> tuple[dict, str]:
    """Redraw one clip; returns (entry, outcome) with outcome one of ``"relabelled"``,
    ``"unchanged"`` (no phrase end moved), ``"done"`` (already relabelled), ``"skipped"`` (not a
    generated clip with phones) or ``"unverified"`` (no face seed reproduces the stored curves)."""
    from train.corpus.face import face_curves
    from train.corpus.format import load_clip, write_motion
    from train.corpus.pauses import trim_phrase_ends

    if entry.get("labels") == LABELS:
        return entry, "done"
    root = Path(root)
    with np.load(root / entry["motion"]) as z:
        if entry.get("source") != "tts" or "phones" not in z:
            return entry, "skipped"
        phones = _phones(z)
    audio, stored, fps = load_clip(root, entry)
    seed = recover_face_seed(entry, shares)
    if seed is None:
        return entry, "unverified"

    def draw(ph):
        return face_curves(ph, audio, int(fps), entry["emotion"], int(entry["intensity"]),
                           np.random.default_rng([seed, 3]))

    if np.abs(draw(phones) - stored).max() > VERIFY_ATOL:
        return entry, "unverified"
    trimmed = trim_phrase_ends(phones, audio)
    new = {**entry, "face_seed": seed, "labels": LABELS}
    if trimmed == phones:  # same curves: only the entry stored in the motion file gains the new keys
        write_motion(root, new, stored, phones)
        return new, "unchanged"
    backup = root / "motion_orig" / Path(entry["motion"]).name
    if not backup.exists():
        backup.parent.mkdir(exist_ok=True)
        shutil.copy2(root / entry["motion"], backup)
    write_motion(root, new, draw(trimmed), trimmed)
    return new, "relabelled"


def relabel(root: str | Path, shares=DEFAULT_SHARES, progress=None) -> dict[str, int]:
    """Relabel every clip of a corpus (see the module docstring); the manifest is updated once
    at the end. Returns the count of each outcome.

    Raises:
        FileNotFoundError: no manifest or a missing clip file.
    """
    from train.corpus.format import read_manifest, update_manifest

    counts: dict[str, int] = {}
    done = []
    entries = read_manifest(root)
    for i, entry in enumerate(entries):
        new, outcome = relabel_clip(root, entry, shares)
        counts[outcome] = counts.get(outcome, 0) + 1
        if new is not entry:
            done.append(new)
        if progress:
            progress(i + 1, len(entries))
    if done:
        update_manifest(root, done)
    return counts


__all__ = ["DEFAULT_SHARES", "LABELS", "recover_face_seed", "relabel", "relabel_clip"]
