"""``render_preview``: check an animation against its speech and write an ``.mp4`` or ``.html``
preview (the format follows the extension).

The animation and the audio must last the same time within ``DURATION_TOL_S``; the audio is
then cut or padded with silence to exactly ``num_frames / fps`` seconds, so both video streams
(or the page's audio and data) end together. A ``compare`` animation is resampled onto the
main animation's frames when its fps differs, and held/cut to the same frame count.
"""
from __future__ import annotations

import logging
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cafetalk_rt.errors import InputError
from cafetalk_rt.frames import SAMPLE_RATE, resample_sequence
from cafetalk_rt.writers import check_blendshapes, check_output_path

logger = logging.getLogger(__name__)

PREVIEW_EXTENSIONS = (".mp4", ".html")
#: Largest accepted difference between the audio's and the animation's duration, seconds.
#: ``animate`` makes round(duration × fps) frames, so its outputs differ by < 1/(2 fps).
DURATION_TOL_S = 0.2


@dataclass(frozen=True)
class PreviewOptions:
    """How the preview looks. ``size_px``: face panel side in pixels (even, 64-2048; the
    video adds a curve strip of ~30 % below); ``supersample``: anti-aliasing factor of the
    video rasteriser (1-4); ``crf``: x264 quality (lower = better, bigger)."""

    size_px: int = 320
    supersample: int = 2
    crf: int = 20

    def __post_init__(self) -> None:
        if not (isinstance(self.size_px, int) and 64 <= self.size_px <= 2048 and self.size_px % 2 == 0):
            raise InputError(f"preview size must be an even number of pixels in 64..2048, got {self.size_px!r}.")
        if self.supersample not in (1, 2, 3, 4):
            raise InputError(f"supersample must be 1, 2, 3 or 4, got {self.supersample!r}.")
        if not (isinstance(self.crf, int) and 0 <= self.crf <= 51):
            raise InputError(f"crf must be an integer in 0..51 (x264 quality), got {self.crf!r}.")


@dataclass(frozen=True)
class PreviewResult:
    """What was written: ``path``, ``num_frames`` at ``fps``, ``duration_s``, ``size_bytes``,
    ``seconds`` taken, and for videos ``render_fps`` (face drawing only) and ``total_fps``
    (with encoding); 0 for pages."""

    path: Path
    num_frames: int
    fps: float
    duration_s: float
    size_bytes: int
    seconds: float
    render_fps: float = 0.0
    total_fps: float = 0.0


def check_preview_path(path: "str | Path", *, overwrite: bool = False) -> "tuple[Path, str]":
    """Return ``(path, extension)`` for a writable ``.mp4`` / ``.html`` preview path.

    Raises:
        InputError: no or unknown extension; missing parent directory.
        OutputExistsError: the file exists and ``overwrite`` is False.
        MissingDependencyError: ``.mp4`` and PyAV is not installed.
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in PREVIEW_EXTENSIONS:
        what = "has no extension" if not ext else f"has extension {path.suffix!r}"
        raise InputError(f"preview output {str(path)!r} {what}; name it OUT.mp4 (video with "
                         "sound) or OUT.html (self-contained browser page).")
    path = check_output_path(path, overwrite=overwrite)
    if ext == ".mp4":
        from cafetalk_rt.preview.video import import_av

        import_av()  # a missing extra fails here, before any slow work
    return path, ext


def match_audio(audio: np.ndarray, num_frames: int, fps: float, *, audio_name: str = "audio",
                animation_name: str = "animation") -> np.ndarray:
    """Cut or zero-pad ``audio`` (L,) float32 16 kHz to round(num_frames / fps * 16000) samples.

    Raises:
        InputError: the durations differ by more than ``DURATION_TOL_S`` (wrong audio file).
    """
    audio = np.asarray(audio, np.float32).reshape(-1)
    anim_s, audio_s = num_frames / fps, len(audio) / SAMPLE_RATE
    if abs(anim_s - audio_s) > DURATION_TOL_S:
        raise InputError(
            f"{audio_name} lasts {audio_s:.2f} s but {animation_name} lasts {anim_s:.2f} s "
            f"({num_frames} frames at {fps:g} fps): they differ by {abs(anim_s - audio_s):.2f} s, "
            f"more than the {DURATION_TOL_S:g} s allowed. Pass the speech the animation was made "
            f"from, or make the animation from this audio: cafetalk-rt animate {shlex.quote(audio_name)} -o ANIM.npz")
    n = int(round(anim_s * SAMPLE_RATE))
    return np.pad(audio[:n], (0, max(0, n - len(audio))))


def match_frames(blendshapes: np.ndarray, fps: float, num_frames: int, target_fps: float, *,
                 name: str = "compare animation") -> np.ndarray:
    """Put ``blendshapes`` (T, 52) at ``fps`` onto ``num_frames`` frames at ``target_fps``.

    Raises:
        InputError: bad values, or durations that differ by more than ``DURATION_TOL_S``.
    """
    x = check_blendshapes(blendshapes, name=name)
    src_s, dst_s = len(x) / fps, num_frames / target_fps
    if abs(src_s - dst_s) > DURATION_TOL_S:
        raise InputError(f"{name} lasts {src_s:.2f} s but the main animation lasts {dst_s:.2f} s; "
                         "compare two animations of the same speech.")
    if abs(fps - target_fps) > 1e-6:
        return np.clip(resample_sequence(x, fps, num_frames, target_fps), 0.0, 1.0)
    idx = np.minimum(np.arange(num_frames), len(x) - 1)  # hold the last frame if short
    return x[idx]


def render_preview(
    path: "str | Path",
    audio: np.ndarray,
    blendshapes: np.ndarray,
    fps: float,
    *,
    label: str = "",
    compare: "tuple[np.ndarray, float, str] | None" = None,
    options: PreviewOptions = PreviewOptions(),
    overwrite: bool = False,
    audio_name: str = "audio",
) -> PreviewResult:
    """Write a preview of ``blendshapes`` (T, 52) in [0, 1] at ``fps`` with ``audio`` (L,)
    float32 mono 16 kHz: ``.mp4`` (H.264 + AAC) or ``.html`` (self-contained page).

    Args:
        label: name shown with the animation (e.g. its file name).
        compare: optional ``(blendshapes, fps, label)`` shown beside it.
        audio_name: how error messages call the audio (its file name).

    Raises:
        InputError: unknown extension, bad blendshapes/fps, duration mismatch, bad options.
        OutputExistsError: ``path`` exists and ``overwrite`` is False.
        MissingDependencyError: ``.mp4`` without PyAV/Pillow installed.
    """
    path, ext = check_preview_path(path, overwrite=overwrite)
    x = check_blendshapes(blendshapes, name=label or "animation")
    if not np.isfinite(fps) or fps <= 0:
        raise InputError(f"fps must be a finite number > 0, got {fps!r}.")
    wave = match_audio(audio, len(x), fps, audio_name=audio_name, animation_name=label or "the animation")
    clips = [(x, label)]
    if compare is not None:
        other, other_fps, other_label = compare
        clips.append((match_frames(other, other_fps, len(x), fps, name=other_label or "compare animation"),
                      other_label))
    t0 = time.perf_counter()
    stats = {}
    if ext == ".mp4":
        from cafetalk_rt.preview.video import write_mp4

        stats = write_mp4(path, wave, clips, fps, size_px=options.size_px, supersample=options.supersample,
                          crf=options.crf, overwrite=overwrite)
    else:
        from cafetalk_rt.preview.html import write_html

        write_html(path, wave, clips, fps, size_px=options.size_px, overwrite=overwrite)
    seconds = time.perf_counter() - t0
    result = PreviewResult(path, len(x), float(fps), len(x) / fps, path.stat().st_size, seconds,
                           stats.get("render_fps", 0.0), stats.get("total_fps", 0.0))
    logger.info("wrote preview %s: %d frames, %.1f kB in %.2f s", path, len(x), result.size_bytes / 1e3, seconds)
    return result


def preview_files(path: "str | Path", animation: "str | Path", audio: "str | Path", *,
                  compare: "str | Path | None" = None, options: PreviewOptions = PreviewOptions(),
                  overwrite: bool = False) -> PreviewResult:
    """``render_preview`` from files: an animation (.npz/.csv/.json), its speech audio and an
    optional second animation to compare. Checks the output path before reading anything.

    Raises:
        InputError, AudioInputError, OutputExistsError, MissingDependencyError: see
        ``render_preview``, ``writers.load_animation`` and ``audio.load_audio``.
    """
    from cafetalk_rt.audio import load_audio
    from cafetalk_rt.writers import load_animation

    check_preview_path(path, overwrite=overwrite)
    x, fps = load_animation(animation)
    other = None
    if compare is not None:
        y, y_fps = load_animation(compare)
        other = (y, y_fps, Path(compare).name)
    wave = load_audio(audio)
    return render_preview(path, wave, x, fps, label=Path(animation).name, compare=other,
                          options=options, overwrite=overwrite, audio_name=str(audio))
