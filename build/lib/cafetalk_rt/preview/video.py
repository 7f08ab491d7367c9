"""Write the preview video: H.264 faces (+ curve strips) at the animation's fps with the speech
as an AAC track, in one ``.mp4`` (PyAV).

Layout, for N clips (1, or 2 with ``--compare``): N face panels of ``size_px`` side by side,
each over its ``CurveStrip``; the frame is ``N * size_px`` wide and
``size_px + strip_height(size_px)`` high. Frame ``i`` is shown from ``i / fps`` seconds (its
pts is ``i`` in a 1/fps time base), as in the saved animation files. Audio is 16 kHz mono,
cut or padded to exactly ``num_frames / fps`` seconds by the caller.
"""
from __future__ import annotations

import logging
import time
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np

from cafetalk_rt.frames import SAMPLE_RATE
from cafetalk_rt.preview.face import PREVIEW_EXTRA_HINT, FaceRenderer
from cafetalk_rt.preview.strip import CurveStrip, strip_height
from cafetalk_rt.writers import atomic_write

logger = logging.getLogger(__name__)

AAC_FRAME_SAMPLES = 1024  # AAC-LC encodes 1024 samples a packet
AUDIO_BIT_RATE = 64_000
#: x264 settings: flat-coloured cartoons compress well; veryfast keeps encoding near render speed.
X264_OPTIONS = {"preset": "veryfast", "tune": "animation"}


def import_av():
    """Return the ``av`` module; raise ``MissingDependencyError`` naming the ``preview``
    extra when PyAV is not installed."""
    try:
        import av
    except ImportError as exc:
        from cafetalk_rt.preview import MissingDependencyError

        raise MissingDependencyError(f"writing an .mp4 preview needs PyAV (the 'av' package); "
                                     f"install it with {PREVIEW_EXTRA_HINT}, or write an .html "
                                     "preview instead, which needs neither.") from exc
    return av


def write_mp4(
    path: "str | Path",
    audio: np.ndarray,
    clips: "Sequence[tuple[np.ndarray, str]]",
    fps: float,
    *,
    size_px: int = 320,
    supersample: int = 2,
    crf: int = 20,
    overwrite: bool = False,
) -> "dict[str, float]":
    """Render ``clips`` side by side and mux them with ``audio`` into ``path`` atomically.

    Args:
        audio: (L,) float32 mono at 16 kHz, L = round(num_frames / fps * 16000).
        clips: ((T, 52) blendshapes in [0, 1], label) per panel, all with the same T.
        fps: frames per second of every clip (and of the video).
        size_px: face panel side in pixels (even).
        crf: x264 constant rate factor (lower = better and bigger; 18-23 is typical).

    Returns:
        ``{"num_frames", "render_s", "encode_s", "render_fps", "total_fps"}``: seconds spent
        drawing frames vs. encoding/muxing, and frames/s of each.

    Raises:
        MissingDependencyError: PyAV or Pillow is missing.
        InputError, OutputExistsError: see ``writers.check_output_path``.
    """
    av = import_av()
    renderer = FaceRenderer(size_px, supersample=supersample)
    size = renderer.size_px
    strips = [CurveStrip(x, fps, size, size, label) for x, label in clips]
    num_frames = len(clips[0][0])
    frame = np.empty((size + strip_height(size), size * len(clips), 3), np.uint8)  # (H, W, 3)
    faces = [renderer.render_frames(x) for x, _ in clips]
    render_s = 0.0
    t_start = time.perf_counter()
    with atomic_write(path, overwrite=overwrite) as fh:
        with av.open(fh, mode="w", format="mp4") as container:
            vstream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001),
                                           options={**X264_OPTIONS, "crf": str(int(crf))})
            vstream.width, vstream.height, vstream.pix_fmt = frame.shape[1], frame.shape[0], "yuv420p"
            astream = container.add_stream("aac", rate=SAMPLE_RATE)
            astream.layout, astream.bit_rate = "mono", AUDIO_BIT_RATE
            audio_pos = 0
            for i in range(num_frames):
                t0 = time.perf_counter()
                for k, (face, strip) in enumerate(zip(faces, strips)):
                    frame[:size, k * size:(k + 1) * size] = next(face)
                    strip.frame(i, frame[size:, k * size:(k + 1) * size])
                render_s += time.perf_counter() - t0
                video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
                video_frame.pts = i
                container.mux(vstream.encode(video_frame))
                audio_end = len(audio) if i == num_frames - 1 else int(round((i + 1) / fps * SAMPLE_RATE))
                audio_pos = _mux_audio(av, container, astream, audio, audio_pos, audio_end)
            container.mux(vstream.encode(None))
            container.mux(astream.encode(None))
    total_s = time.perf_counter() - t_start
    stats = {"num_frames": float(num_frames), "render_s": render_s, "encode_s": total_s - render_s,
             "render_fps": num_frames / max(render_s, 1e-9), "total_fps": num_frames / max(total_s, 1e-9)}
    logger.info("%s: %d frames rendered at %.0f frames/s (%.0f frames/s with encoding)",
                path, num_frames, stats["render_fps"], stats["total_fps"])
    return stats


def _mux_audio(av, container, stream, audio: np.ndarray, start: int, end: int) -> int:
    """Encode ``audio[start:end]`` in AAC-sized chunks, keeping a partial chunk for later
    unless ``end`` is the end of the audio. Returns the new start."""
    final = end >= len(audio)
    while start < end and (end - start >= AAC_FRAME_SAMPLES or final):
        chunk = audio[start:min(start + AAC_FRAME_SAMPLES, end)]
        af = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk, np.float32)[None], format="fltp", layout="mono")
        af.sample_rate, af.pts, af.time_base = SAMPLE_RATE, start, Fraction(1, SAMPLE_RATE)
        container.mux(stream.encode(af))
        start += len(chunk)
    return start
