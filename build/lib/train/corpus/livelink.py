"""Import a real capture — a Live Link Face CSV plus its audio — into the corpus format.

Live Link Face CSV: header ``Timecode,BlendShapeCount,EyeBlinkLeft,…,TongueOut`` (the 52 ARKit
blendshapes, capitalised) followed by 9 head / eye rotation columns (``HeadYaw`` … ``RightEyeRoll``)
that are dropped. Column names match case-insensitively and in any order.

Timecodes are SMPTE ``HH:MM:SS:FF.mmm``: ``FF.mmm`` is a frame number with a sub-frame fraction
at the timecode rate R, so ``t = 3600·HH + 60·MM + SS + FF.mmm / R``. R is the smallest common
rate (24, 25, 30, 48, 50, 60) above every frame number in the file (a warning is logged when the
take is too short for the frame field to wrap, since R is then uncertain — pass ``capture_fps``).
The capture rate is ``1 / median(Δt)``; rows with irregular spacing (dropped frames) are first
interpolated onto a uniform grid at that rate. With ``capture_fps`` given, timecodes are ignored
and rows are taken as uniformly spaced at that rate.

A row stamped ``t`` is taken as the video frame that starts at ``t`` and lasts ``1 / R`` (its
pose is centred at ``t + 0.5 / R``), the frame-centre convention of ``cafetalk_rt.frames``.
Curves are then resampled to the training fps (25 or 30) with
``cafetalk_rt.frames.resample_sequence``; audio of any rate / channel count is read with
``cafetalk_rt.audio.load_audio`` (mono, soxr HQ to 16 kHz). The audio is the master clock: the
curves are trimmed, or padded by holding their last frame, to ``round(duration_s · fps)``
frames (a warning is logged when the two durations differ by more than 0.5 s). Curves slightly
outside [0, 1] (ARKit solver overshoot up to ±0.05) are clipped; larger values are an error.
"""
from __future__ import annotations

import csv
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cafetalk_rt.blendshapes import LIVELINK_NAMES, NUM_BLENDSHAPES
from cafetalk_rt.frames import SAMPLE_RATE, check_fps, num_frames, resample_sequence
from train.corpus.format import check_clip_id, update_manifest, write_clip

log = logging.getLogger(__name__)

TIMECODE_RATES = (24, 25, 30, 48, 50, 60)
_TIMECODE = re.compile(r"^(\d+):(\d{1,2}):(\d{1,2})[:;.](\d+(?:\.\d+)?)$")


@dataclass(frozen=True)
class LiveLinkTake:
    """A parsed capture: ``blendshapes`` (N, 52) float32 in [0, 1] (ARKit order) sampled
    uniformly at ``fps`` Hz."""

    blendshapes: np.ndarray
    fps: float


def parse_timecode(tc: str) -> tuple[int, float]:
    """``"HH:MM:SS:FF.mmm"`` → (whole seconds, frame number with sub-frame fraction).

    Raises:
        ValueError: not a timecode of that form.
    """
    m = _TIMECODE.match(tc.strip())
    if not m:
        raise ValueError(f"bad timecode {tc!r}: expected HH:MM:SS:FF.mmm")
    h, mi, s = int(m.group(1)), int(m.group(2)), int(m.group(3))
    return h * 3600 + mi * 60 + s, float(m.group(4))


def _times_from_timecodes(codes: list[str], path: Path) -> np.ndarray:
    parsed = []
    for i, tc in enumerate(codes):
        try:
            parsed.append(parse_timecode(tc))
        except ValueError as e:
            raise ValueError(f"{path}: data row {i + 1}: {e}") from None
    secs = np.array([p[0] for p in parsed], np.float64)
    frames = np.array([p[1] for p in parsed], np.float64)
    rate = next((r for r in TIMECODE_RATES if r > frames.max()), None)
    if rate is None:
        raise ValueError(f"{path}: timecode frame field reaches {frames.max():g}, above every rate "
                         f"{TIMECODE_RATES}; pass capture_fps")
    if np.all(secs == secs[0]):
        log.warning("%s: take shorter than a second of timecode; assuming timecode rate %d — pass "
                    "capture_fps if that is wrong", path, rate)
    t = secs + frames / rate
    return t - t[0]


def _uniform(values: np.ndarray, times: np.ndarray, path: Path) -> tuple[np.ndarray, float]:
    dt = np.diff(times)
    if values.shape[0] < 2 or np.any(dt <= 0):
        raise ValueError(f"{path}: timecodes must strictly increase over at least two rows")
    fps = 1.0 / float(np.median(dt))
    near = [r for r in TIMECODE_RATES if abs(fps - r) / r < 0.02]
    fps = float(near[0]) if near else fps
    if dt.max() > 1.5 / fps:
        grid = np.arange(int(round(times[-1] * fps)) + 1) / fps
        values = np.stack([np.interp(grid, times, values[:, c]) for c in range(values.shape[1])], 1)
        log.info("%s: irregular timecodes (max gap %.3f s); interpolated to %g fps", path, dt.max(), fps)
    return values.astype(np.float32), fps


def read_livelink_csv(path: str | Path, capture_fps: float | None = None) -> LiveLinkTake:
    """Parse a Live Link Face CSV (see the module docstring).

    Raises:
        FileNotFoundError: missing file. ValueError: missing columns, non-numeric or
        out-of-range values, bad or non-increasing timecodes (the message names file and row).
    """
    path = Path(path)
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    if len(rows) < 3:
        raise ValueError(f"{path}: need a header and at least two data rows, found {len(rows)} rows")
    header = [h.strip().lower() for h in rows[0]]
    missing = [n for n in LIVELINK_NAMES if n.lower() not in header]
    if missing:
        raise ValueError(f"{path}: not a Live Link Face CSV, missing columns {missing[:5]}"
                         f"{' …' if len(missing) > 5 else ''} ({len(missing)} of 52)")
    cols = [header.index(n.lower()) for n in LIVELINK_NAMES]
    values = np.empty((len(rows) - 1, NUM_BLENDSHAPES), np.float64)
    for i, row in enumerate(rows[1:]):
        try:
            values[i] = [float(row[j]) for j in cols]
        except (ValueError, IndexError):
            raise ValueError(f"{path}: data row {i + 1} (line {i + 2}) has a missing or non-numeric "
                             f"blendshape value") from None
    if not np.isfinite(values).all() or values.min() < -0.05 or values.max() > 1.05:
        raise ValueError(f"{path}: blendshape values must be finite and in [0, 1], found "
                         f"[{np.nanmin(values):.3f}, {np.nanmax(values):.3f}]")
    values = np.clip(values, 0.0, 1.0)
    if capture_fps is not None:
        if not capture_fps > 0:
            raise ValueError(f"capture_fps must be positive, got {capture_fps!r}")
        return LiveLinkTake(values.astype(np.float32), float(capture_fps))
    if "timecode" not in header:
        raise ValueError(f"{path}: no Timecode column; pass capture_fps")
    times = _times_from_timecodes([r[header.index("timecode")] for r in rows[1:]], path)
    bs, fps = _uniform(values, times, path)
    return LiveLinkTake(bs, fps)


def import_livelink(csv_path: str | Path, wav_path: str | Path, out: str | Path, *, fps: int = 25,
                    capture_fps: float | None = None, emotion: str = "neutral", intensity: int = 1,
                    clip_id: str | None = None, split: str = "train", text: str = "",
                    voice: str = "capture") -> dict:
    """Convert one capture into a clip of corpus ``out`` and add it to the manifest.

    Returns:
        The manifest entry (``source = "capture"``, ``sentence_id = None``).

    Raises:
        ValueError: bad CSV (see :func:`read_livelink_csv`), labels or fps.
        FileExistsError: a clip with that id already exists (existing data is never replaced).
        cafetalk_rt.errors.AudioInputError: unreadable, empty or silent audio.
    """
    from cafetalk_rt.audio import load_audio

    fps = int(check_fps(fps))
    clip_id = check_clip_id(clip_id or "cap_" + re.sub(r"[^A-Za-z0-9_.-]", "_", Path(csv_path).stem))
    take = read_livelink_csv(csv_path, capture_fps)
    audio = load_audio(wav_path)
    n = num_frames(audio.size, fps)
    curve_s, audio_s = take.blendshapes.shape[0] / take.fps, audio.size / SAMPLE_RATE
    if abs(curve_s - audio_s) > 0.5:
        log.warning("%s: curves last %.2f s but the audio %.2f s; using the audio duration",
                    csv_path, curve_s, audio_s)
    src_n = min(take.blendshapes.shape[0], max(1, int(round(audio_s * take.fps))))
    bs = resample_sequence(take.blendshapes[:src_n], take.fps, n, fps)
    entry = write_clip(out, clip_id, audio, np.clip(bs, 0.0, 1.0), fps, emotion=emotion,
                       intensity=intensity, voice=voice, sentence_id=None, text=text, split=split,
                       source="capture")
    update_manifest(out, [entry])
    return entry
