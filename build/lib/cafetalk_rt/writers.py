"""Write and read ``blendshapes`` (T, 52) animation files: ``.npz``, Live Link Face ``.csv``,
three.js AnimationClip ``.json``.

Every writer goes through ``atomic_write``: the file appears complete or not at all, and an
existing file is never replaced unless ``overwrite=True``. Frame ``i`` is keyed at its start,
``i / fps`` seconds (what players and Live Link expect), not at its centre.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np

from cafetalk_rt.blendshapes import ARKIT_NAMES, INDEX, LIVELINK_NAMES, NUM_BLENDSHAPES
from cafetalk_rt.errors import InputError, OutputExistsError

logger = logging.getLogger(__name__)

SUPPORTED_EXTENSIONS = (".npz", ".csv", ".json")
#: Live Link Face's 9 trailing head/eye rotation columns (written as 0).
LIVELINK_HEAD_EYE = (
    "HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
    "RightEyeYaw", "RightEyePitch", "RightEyeRoll",
)
#: The exact Live Link Face CSV header: 2 + 52 + 9 columns; ``BlendShapeCount`` is 61.
LIVELINK_HEADER = ("Timecode", "BlendShapeCount") + LIVELINK_NAMES + LIVELINK_HEAD_EYE
LIVELINK_COUNT = len(LIVELINK_NAMES) + len(LIVELINK_HEAD_EYE)
#: Decimals written to CSV (openfacefx and Live Link Face precision): ≤ 5e-7 round-off.
CSV_DECIMALS = 6
#: Decimals written to JSON (three.js stores float32 anyway): ≤ 5e-8 round-off.
JSON_DECIMALS = 7
#: How far outside [0, 1] a value may be and still be clipped rather than rejected.
RANGE_TOL = 1e-3
_THREE_NORMAL_BLEND_MODE = 2500  # THREE.NormalAnimationBlendMode

# Read once at import (os.umask can only be read by setting it): mkstemp makes 0600 files and
# the final file should get the permissions a plain open() would have given it.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def check_blendshapes(blendshapes: np.ndarray, *, name: str = "blendshapes") -> np.ndarray:
    """Validate ``blendshapes`` (T, 52), T >= 1, and return it as float32 clipped to [0, 1].

    Raises:
        InputError: wrong shape or dtype, NaN/Inf, or a value outside [0, 1] by more than
            ``RANGE_TOL`` (a bug upstream: the model's output should already be in range).
    """
    x = np.asarray(blendshapes)
    if x.ndim != 2 or x.shape[1] != NUM_BLENDSHAPES or x.shape[0] == 0:
        hint = " (one clip at a time: pass blendshapes[0])" if x.ndim == 3 else ""
        raise InputError(f"{name} must have shape (T, 52) with T >= 1 frames in ARKit order, "
                         f"got {x.shape}{hint}.")
    if x.dtype.kind not in "fiu":
        raise InputError(f"{name} must be a float array, got dtype {x.dtype}.")
    x = x.astype(np.float32)
    bad = ~np.isfinite(x)
    if bad.any():
        t, c = np.argwhere(bad)[0]
        raise InputError(f"{name} has {int(bad.sum())} NaN/Inf values, the first at frame {t} "
                         f"({ARKIT_NAMES[c]}); fix the model output before saving.")
    out = (x < -RANGE_TOL) | (x > 1.0 + RANGE_TOL)
    if out.any():
        t, c = np.argwhere(out)[0]
        raise InputError(f"{name} has {int(out.sum())} values outside [0, 1], e.g. {x[t, c]:.4f} "
                         f"at frame {t} ({ARKIT_NAMES[c]}); this is a bug upstream. Clip "
                         "with np.clip(x, 0, 1) only if the overshoot is intended.")
    return np.clip(x, 0.0, 1.0)


def check_output_path(path: "str | Path", *, overwrite: bool = False) -> Path:
    """Return ``path`` as a Path after checking it may be written.

    Raises:
        InputError: the parent directory is missing, or ``path`` is a directory.
        OutputExistsError: ``path`` exists and ``overwrite`` is False.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(f"cannot write {str(path)!r}: directory {str(path.parent)!r} does not "
                         "exist; create it first (mkdir -p).")
    if path.is_dir():
        raise InputError(f"cannot write {str(path)!r}: it is a directory; pass a file name.")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{str(path)!r} already exists; pass --overwrite "
                                "(overwrite=True) to replace it, or choose another name.")
    return path


@contextlib.contextmanager
def atomic_write(path: "str | Path", *, overwrite: bool = False) -> Iterator[BinaryIO]:
    """Context manager yielding a binary file that becomes ``path`` only if the block succeeds.

    Writes to a temporary file in the same directory, fsyncs it, then renames it into place
    (``os.link`` when not overwriting, so a file created meanwhile is not clobbered). On any
    error the temporary file is removed and ``path`` is left as it was.

    Raises:
        InputError, OutputExistsError: see ``check_output_path``.
    """
    path = check_output_path(path, overwrite=overwrite)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        _publish(tmp, path, overwrite)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _publish(tmp: str, path: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # fails if path appeared since the check; tmp is unlinked after
    except FileExistsError:
        raise OutputExistsError(f"{str(path)!r} was created while writing; pass --overwrite "
                                "(overwrite=True) to replace it.") from None
    except OSError:  # filesystem without hard links: re-check, then rename
        if path.exists():
            raise OutputExistsError(f"{str(path)!r} already exists; pass --overwrite.") from None
        os.replace(tmp, path)


def _check_fps(fps: float) -> float:
    try:
        ok = not isinstance(fps, bool) and bool(np.isfinite(float(fps))) and float(fps) > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise InputError(f"fps must be a finite number > 0, got {fps!r}.")
    return float(fps)


def _extension(path: Path) -> str:
    ext = path.suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        raise InputError(f"unsupported animation file extension {path.suffix!r} in {str(path)!r}; "
                         f"use one of {', '.join(SUPPORTED_EXTENSIONS)}.")
    return ext


def save_animation(
    path: "str | Path",
    blendshapes: np.ndarray,
    fps: float,
    *,
    overwrite: bool = False,
    audio_path: "str | Path | None" = None,
    metadata: "dict | None" = None,
) -> Path:
    """Save ``blendshapes`` (T, 52) float32 in [0, 1] at ``fps`` frames/s; the format follows
    the extension (case-insensitive):

    - ``.npz``: ``blendshapes`` (T, 52) float32, ``names`` (52,) ARKit names, ``fps`` float64
      scalar, and ``metadata`` (0-d str array holding JSON) when ``metadata``/``audio_path``
      is given.
    - ``.csv``: Live Link Face layout (``LIVELINK_HEADER``), timecode ``HH:MM:SS:FF.mmm`` from
      00:00:00:00.000, 6 decimals, head/eye rotations 0. ``fps`` must be a whole number.
      Metadata is not stored (the layout has no place for it).
    - ``.json``: three.js AnimationClip JSON (``THREE.AnimationClip.parse``), one
      ``.morphTargetInfluences[<arkitName>]`` number track per channel, ``times`` in seconds
      at frame starts. The rate is stored as ``frameRate``, not ``fps``: ``parse`` would read
      a top-level ``fps`` as "times are in frames" and divide every time by it.

    Args:
        audio_path: the source audio, recorded as ``metadata["audio_path"]``.
        metadata: JSON-serialisable dict stored with the animation (npz, json).

    Returns:
        The written path.

    Raises:
        InputError: unknown extension, bad shape/values (``check_blendshapes``), bad fps,
            missing parent directory, metadata not JSON-serialisable.
        OutputExistsError: ``path`` exists and ``overwrite`` is False.
    """
    path = Path(path)
    ext = _extension(path)
    x = check_blendshapes(blendshapes)
    fps = _check_fps(fps)
    meta = dict(metadata or {})
    if audio_path is not None:
        meta["audio_path"] = str(audio_path)
    try:
        meta_json = json.dumps(meta, allow_nan=False) if meta else None
    except (TypeError, ValueError) as exc:
        raise InputError(f"metadata must be JSON-serialisable ({exc}); pass str/number/list/dict "
                         "values.") from exc
    if ext == ".csv":
        payload = _livelink_csv(x, fps)
        if meta:
            logger.info("%s: Live Link CSV has no metadata field; metadata not saved", path)
    elif ext == ".json":
        payload = _threejs_json(x, fps, path.stem, meta)
    else:
        payload = _npz_bytes(x, fps, meta_json)
    with atomic_write(path, overwrite=overwrite) as fh:
        fh.write(payload)
    logger.info("wrote %s (%d frames at %g fps)", path, x.shape[0], fps)
    return path


def _npz_bytes(x: np.ndarray, fps: float, meta_json: "str | None") -> bytes:
    arrays = {"blendshapes": x, "names": np.array(ARKIT_NAMES), "fps": np.float64(fps)}
    if meta_json is not None:
        arrays["metadata"] = np.array(meta_json)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def livelink_timecode(frame: int, fps: int) -> str:
    """Timecode ``HH:MM:SS:FF.mmm`` of ``frame`` at whole-number ``fps``; ``.mmm`` is the
    sub-frame fraction Live Link Face appends (always ``.000`` here)."""
    secs, ff = divmod(int(frame), int(fps))
    h, rem = divmod(secs, 3600)
    m, s = divmod(rem, 60)
    return f"{h:02d}:{m:02d}:{s:02d}:{ff:02d}.000"


def _livelink_csv(x: np.ndarray, fps: float) -> bytes:
    if abs(fps - round(fps)) > 1e-9:
        raise InputError(f"Live Link CSV timecodes count whole frames per second; fps={fps:g} is "
                         "not a whole number. Save .npz or .json, or resample to 25/30 fps.")
    nf = int(round(fps))
    zeros = ",".join(["0.000000"] * len(LIVELINK_HEAD_EYE))
    fmt = ",".join([f"%.{CSV_DECIMALS}f"] * NUM_BLENDSHAPES)
    lines = [",".join(LIVELINK_HEADER)]
    for i, row in enumerate(x.astype(np.float64)):
        lines.append(f"{livelink_timecode(i, nf)},{LIVELINK_COUNT},{fmt % tuple(row)},{zeros}")
    return ("\n".join(lines) + "\n").encode("utf-8")


def _threejs_json(x: np.ndarray, fps: float, name: str, meta: dict) -> bytes:
    num_frames = x.shape[0]
    times = [i / fps for i in range(num_frames)]
    values = np.round(x.astype(np.float64), JSON_DECIMALS)  # (T, 52)
    tracks = [{"name": f".morphTargetInfluences[{n}]", "type": "number", "times": times,
               "values": values[:, c].tolist()} for c, n in enumerate(ARKIT_NAMES)]
    clip = {"name": name, "duration": num_frames / fps, "tracks": tracks,
            "blendMode": _THREE_NORMAL_BLEND_MODE, "frameRate": fps,
            "blendshapeNames": list(ARKIT_NAMES)}
    if meta:
        clip["metadata"] = meta
    return json.dumps(clip, separators=(",", ":"), allow_nan=False).encode("utf-8")


# ----------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------

def load_animation(path: "str | Path", *, fps: "float | None" = None) -> "tuple[np.ndarray, float]":
    """Read an animation written by ``save_animation`` (or a Live Link Face CSV / three.js
    clip JSON from elsewhere).

    Args:
        fps: only needed for a CSV whose timecodes never cross a second boundary (clips under
            1 s), where the frame rate cannot be read from them; if given for any file it
            must agree with the stored/inferred rate.

    Returns:
        ``(blendshapes, fps)``: (T, 52) float32 in [0, 1], ARKit order, and frames/s.

    Raises:
        InputError: missing/unknown file, missing channels, malformed rows or timecodes,
            undeterminable or disagreeing fps, values out of range.
    """
    path = Path(path)
    ext = _extension(path)
    if not path.is_file():
        raise InputError(f"animation file {str(path)!r} does not exist; check the path.")
    if ext == ".npz":
        x, stored = _read_npz(path)
    elif ext == ".json":
        x, stored = _read_json(path)
    else:
        x, stored = _read_csv(path, fps)
    if fps is not None and abs(_check_fps(fps) - stored) > 1e-6 * stored:
        raise InputError(f"{str(path)!r} is stored at {stored:g} fps, not fps={fps:g}; drop the "
                         "fps argument or resample with frames.resample_sequence.")
    return check_blendshapes(x, name=str(path)), stored


def _reorder(x: np.ndarray, names: "list[str]", path: Path) -> np.ndarray:
    """(T, C) columns named ``names`` (any case/order) → (T, 52) in ARKIT order."""
    lower = {n.lower(): i for i, n in enumerate(names)}
    missing = [n for n in ARKIT_NAMES if n.lower() not in lower]
    if missing:
        raise InputError(f"{str(path)!r} lacks {len(missing)} ARKit channels: "
                         f"{', '.join(missing[:8])}{' …' if len(missing) > 8 else ''}.")
    return x[:, [lower[n.lower()] for n in ARKIT_NAMES]]


def _read_npz(path: Path) -> "tuple[np.ndarray, float]":
    with np.load(path, allow_pickle=False) as z:
        for key in ("blendshapes", "fps"):
            if key not in z.files:
                raise InputError(f"{str(path)!r} is not a cafetalk animation: no {key!r} array.")
        names = [str(n) for n in z["names"]] if "names" in z.files else list(ARKIT_NAMES)
        x = np.asarray(z["blendshapes"])
        if x.ndim != 2 or x.shape[1] != len(names):
            raise InputError(f"{str(path)!r}: blendshapes {x.shape} do not match names "
                             f"({len(names)}).")
        return _reorder(x, names, path), float(z["fps"])


def _read_json(path: Path) -> "tuple[np.ndarray, float]":
    try:
        clip = json.loads(path.read_text(encoding="utf-8"))
        tracks = clip["tracks"]
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{str(path)!r} is not a three.js AnimationClip JSON ({exc}).") from exc
    cols, names, times = [], [], None
    for track in tracks:
        tname = str(track.get("name", ""))
        if ".morphTargetInfluences[" not in tname:
            continue
        names.append(tname.split(".morphTargetInfluences[", 1)[1].rstrip("]"))
        cols.append(np.asarray(track["values"], dtype=np.float64))
        times = np.asarray(track["times"], dtype=np.float64) if times is None else times
    if not cols or len({c.size for c in cols}) != 1 or cols[0].size != times.size:
        raise InputError(f"{str(path)!r}: morph tracks missing or of unequal length; expected "
                         "one value per frame on every track.")
    if "frameRate" in clip:
        fps = float(clip["frameRate"])
    elif "fps" in clip:  # three.js convention: times are frame numbers
        fps = float(clip["fps"])
    elif times.size > 1:
        fps = float(1.0 / np.median(np.diff(times)))
    else:
        raise InputError(f"{str(path)!r}: one keyframe and no frameRate; cannot tell the fps.")
    return _reorder(np.stack(cols, axis=1), names, path), _tidy_fps(fps)


def _tidy_fps(fps: float) -> float:
    """Snap to a whole number when within float round-off of one (30.0000000001 → 30.0)."""
    return float(round(fps)) if abs(fps - round(fps)) < 1e-6 else float(fps)


def _read_csv(path: Path, fps_hint: "float | None") -> "tuple[np.ndarray, float]":
    rows = [r for r in csv.reader(path.read_text(encoding="utf-8-sig").splitlines()) if r]
    if not rows or rows[0][0].strip().lower() != "timecode":
        raise InputError(f"{str(path)!r} is not a Live Link Face CSV: the header must start "
                         "with 'Timecode'.")
    header = [h.strip() for h in rows[0]]
    body = rows[1:]
    if not body:
        raise InputError(f"{str(path)!r} has a header but no frames.")
    arkit = {a.lower() for a in ARKIT_NAMES}
    cols = [j for j, n in enumerate(header) if n.lower() in arkit]
    try:
        values = np.array([[float(r[j]) for j in cols] for r in body], dtype=np.float64)
        stamps = [_parse_timecode(r[0]) for r in body]
    except (ValueError, IndexError) as exc:
        raise InputError(f"{str(path)!r}: malformed row ({exc}); every row needs a "
                         "'HH:MM:SS:FF[.mmm]' timecode and a number per column.") from exc
    x = _reorder(values, [header[j] for j in cols], path)
    return x, _csv_fps(np.array(stamps), fps_hint, path)


def _parse_timecode(tc: str) -> "tuple[int, float]":
    """``HH:MM:SS:FF[.mmm]`` → (whole seconds, frame field incl. sub-frame fraction)."""
    h, m, s, ff = tc.strip().replace(";", ":").split(":")
    return int(h) * 3600 + int(m) * 60 + int(s), float(ff)


def _csv_fps(stamps: np.ndarray, fps_hint: "float | None", path: Path) -> float:
    """Frame rate of the rows from their timecodes; ``stamps`` (T, 2) = (seconds, frame field).

    The timecode's frame-field rate is max(FF) + 1 once the clip crosses a second boundary
    (FF wraps to 0); the row rate is then 1 / median row spacing (Live Link Face records at
    60 rows/s against a 30 fps timecode, with a .5 sub-frame).
    """
    secs, ffs = stamps[:, 0], stamps[:, 1]
    if not np.any(np.diff(secs) > 0):
        if fps_hint is None:
            raise InputError(f"cannot infer the frame rate of {str(path)!r}: its {len(secs)} "
                             "timecodes stay within one second; pass fps= (e.g. fps=30).")
        return _check_fps(fps_hint)
    nf = int(np.floor(ffs.max())) + 1
    times = secs + ffs / nf
    steps = np.diff(times)
    if np.any(steps <= 0):
        raise InputError(f"{str(path)!r}: timecodes are not strictly increasing.")
    return _tidy_fps(float(1.0 / np.median(steps)))
