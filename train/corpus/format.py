"""On-disk corpus format (also documented in ``docs/corpus.md``).

A corpus directory holds::

    manifest.jsonl      one JSON object per clip (keys: MANIFEST_KEYS)
    audio/<id>.wav      16 kHz mono PCM_16
    motion/<id>.npz     blendshapes (T, 52) float32 in [0, 1], ARKit order
                        fps () float, names (52,) str, meta () str (the manifest entry as JSON)
                        optional: phones (P,) str, phone_start_s (P,), phone_end_s (P,) float64

``num_frames = round(duration_s * fps)`` (``cafetalk_rt.frames.num_frames``) and
``duration_s = L / 16000`` for the L audio samples. ``split`` is ``train``/``val``/``test`` and
``source`` is ``tts`` (generated) or ``capture`` (a real recording). Files are written to a
temporary name and renamed, so a crash never leaves a half-written clip; the manifest entry
is also stored inside the npz so the manifest can be rebuilt from the clip files.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import soundfile as sf

from cafetalk_rt.blendshapes import ARKIT_NAMES, NUM_BLENDSHAPES
from cafetalk_rt.control.emotions import EMOTIONS, check_intensity
from cafetalk_rt.frames import SAMPLE_RATE, check_fps, num_frames

MANIFEST = "manifest.jsonl"
MANIFEST_KEYS = ("id", "audio", "motion", "fps", "num_frames", "duration_s", "emotion", "intensity",
                 "voice", "sentence_id", "text", "split", "source")
SPLITS = ("train", "val", "test")
SOURCES = ("tts", "capture")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def check_clip_id(clip_id: str) -> str:
    """Return ``clip_id`` if it is a safe file stem (letters, digits, ``_ . -``), else ValueError."""
    if not isinstance(clip_id, str) or not _ID.match(clip_id):
        raise ValueError(f"clip id {clip_id!r} must match {_ID.pattern} (it names files)")
    return clip_id


def clip_paths(root: str | Path, clip_id: str) -> tuple[Path, Path]:
    """(audio path, motion path) of a clip."""
    root = Path(root)
    return root / "audio" / f"{check_clip_id(clip_id)}.wav", root / "motion" / f"{clip_id}.npz"


def clip_exists(root: str | Path, clip_id: str) -> bool:
    """True when both files of the clip are on disk."""
    a, m = clip_paths(root, clip_id)
    return a.is_file() and m.is_file()


def _atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _validate(audio, blendshapes, fps, emotion, intensity, split, source) -> tuple[np.ndarray, np.ndarray]:
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1 or audio.size == 0 or not np.isfinite(audio).all():
        raise ValueError(f"audio must be a non-empty finite (L,) array at {SAMPLE_RATE} Hz, got {audio.shape}")
    check_fps(fps)
    bs = np.asarray(blendshapes, dtype=np.float32)
    n = num_frames(audio.size, fps)
    if bs.shape != (n, NUM_BLENDSHAPES):
        raise ValueError(f"blendshapes must be ({n}, 52) for {audio.size} samples at {fps} fps, got {bs.shape}")
    if not np.isfinite(bs).all() or bs.min() < 0.0 or bs.max() > 1.0:
        raise ValueError("blendshapes must be finite and in [0, 1]")
    if emotion not in EMOTIONS:
        raise ValueError(f"emotion must be one of {EMOTIONS}, got {emotion!r}")
    check_intensity(intensity)
    if split not in SPLITS or source not in SOURCES:
        raise ValueError(f"split must be one of {SPLITS} and source one of {SOURCES}, got {split!r}, {source!r}")
    return audio, bs


def write_clip(root: str | Path, clip_id: str, audio: np.ndarray, blendshapes: np.ndarray, fps: int, *,
               emotion: str, intensity: int, voice: str, sentence_id: int | None, text: str, split: str,
               source: str, phones: list | None = None, extra: dict | None = None,
               overwrite: bool = False) -> dict:
    """Write one clip's audio and motion files; returns its manifest entry (not yet in the
    manifest: see :func:`update_manifest`).

    Args:
        audio: (L,) float32 at 16 kHz, [-1, 1] (clipped when saved as PCM_16).
        blendshapes: (round(L / 16000 * fps), 52) in [0, 1], ARKit order.
        phones: optional ``[(label, start_s, end_s)]`` stored alongside the curves.
        extra: additional JSON-serialisable manifest keys (e.g. ``sentence_ids``); they may not
            replace the standard keys.
        overwrite: replace an existing clip (default: raise FileExistsError).

    Raises:
        ValueError: bad shapes, ranges or labels (the message says which). FileExistsError.
    """
    audio, bs = _validate(audio, blendshapes, fps, emotion, intensity, split, source)
    audio_path, motion_path = clip_paths(root, clip_id)
    if not overwrite and (audio_path.exists() or motion_path.exists()):
        raise FileExistsError(f"clip {clip_id!r} already exists in {root}")
    entry = {"id": clip_id, "audio": f"audio/{clip_id}.wav", "motion": f"motion/{clip_id}.npz",
             "fps": int(fps), "num_frames": int(bs.shape[0]), "duration_s": audio.size / SAMPLE_RATE,
             "emotion": emotion, "intensity": int(intensity), "voice": voice,
             "sentence_id": None if sentence_id is None else int(sentence_id), "text": text,
             "split": split, "source": source}
    if extra:
        clash = set(extra) & set(MANIFEST_KEYS)
        if clash:
            raise ValueError(f"extra manifest keys may not replace standard keys {sorted(clash)}")
        entry.update(extra)
    _atomic(audio_path, lambda p: sf.write(p, np.clip(audio, -1, 1), SAMPLE_RATE, subtype="PCM_16", format="WAV"))
    write_motion(root, entry, bs, phones)
    return entry


def write_motion(root: str | Path, entry: dict, blendshapes: np.ndarray, phones: list | None = None) -> None:
    """(Re)write the motion file of ``entry`` atomically: curves (T, 52) float32 at
    ``entry["fps"]``, the entry as ``meta`` and the optional phones ``[(label, start_s, end_s)]``."""
    arrays = {"blendshapes": np.asarray(blendshapes, np.float32), "fps": np.float32(entry["fps"]),
              "names": np.array(ARKIT_NAMES), "meta": np.array(json.dumps(entry))}
    if phones:
        arrays["phones"] = np.array([p for p, _, _ in phones])
        arrays["phone_start_s"] = np.array([s for _, s, _ in phones], np.float64)
        arrays["phone_end_s"] = np.array([e for _, _, e in phones], np.float64)
    _atomic(Path(root) / entry["motion"], lambda p: np.savez_compressed(p, **arrays))


def read_manifest(root: str | Path) -> list[dict]:
    """All manifest entries of a corpus, in file order.

    Raises:
        FileNotFoundError: no ``manifest.jsonl`` (names the commands that make one).
        ValueError: a line that is not a JSON object with every key in ``MANIFEST_KEYS``.
    """
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: create a corpus with `python -m train.corpus generate --out "
                                f"{root}` or `python -m train.corpus import-livelink ... --out {root}`")
    entries = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({e})") from None
            missing = [k for k in MANIFEST_KEYS if not isinstance(entry, dict) or k not in entry]
            if missing:
                raise ValueError(f"{path}:{lineno}: missing keys {missing}")
            entries.append(entry)
    return entries


def update_manifest(root: str | Path, entries: list[dict]) -> list[dict]:
    """Add or replace ``entries`` (by id) in the manifest, keeping every other entry and the
    order; the file is rewritten atomically. Returns the full manifest."""
    path = Path(root) / MANIFEST
    merged = {e["id"]: e for e in (read_manifest(root) if path.is_file() else [])}
    merged.update({e["id"]: e for e in entries})
    text = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in merged.values())
    _atomic(path, lambda p: p.write_text(text, encoding="utf-8"))
    return list(merged.values())


def read_entry(root: str | Path, clip_id: str) -> dict:
    """The manifest entry stored inside a clip's npz (used to resume / rebuild a manifest)."""
    with np.load(clip_paths(root, clip_id)[1]) as z:
        return json.loads(str(z["meta"]))


def load_clip(root: str | Path, entry: dict) -> tuple[np.ndarray, np.ndarray, float]:
    """Load a clip: (audio (L,) float32 at 16 kHz, blendshapes (T, 52) float32, fps).

    Raises:
        FileNotFoundError: a clip file is missing. ValueError: wrong sample rate, channel count,
        array shape or a length that disagrees with the manifest entry.
    """
    root = Path(root)
    audio_path, motion_path = root / entry["audio"], root / entry["motion"]
    for p in (audio_path, motion_path):
        if not p.is_file():
            raise FileNotFoundError(f"clip {entry['id']!r}: {p} is missing")
    audio, sr = sf.read(audio_path, dtype="float32", always_2d=True)
    if sr != SAMPLE_RATE or audio.shape[1] != 1:
        raise ValueError(f"{audio_path}: expected {SAMPLE_RATE} Hz mono, got {sr} Hz × {audio.shape[1]} channels")
    with np.load(motion_path) as z:
        if "blendshapes" not in z or "fps" not in z:
            raise ValueError(f"{motion_path}: needs arrays 'blendshapes' and 'fps', has {list(z.keys())}")
        bs, fps = z["blendshapes"].astype(np.float32), float(z["fps"])
    audio = audio[:, 0]
    n = num_frames(audio.size, fps)
    if bs.ndim != 2 or bs.shape != (n, NUM_BLENDSHAPES) or n != int(entry["num_frames"]):
        raise ValueError(f"{motion_path}: blendshapes {bs.shape} do not match {audio.size} samples at {fps} fps "
                         f"(expected ({n}, 52); manifest says {entry['num_frames']} frames)")
    return audio, bs, fps
