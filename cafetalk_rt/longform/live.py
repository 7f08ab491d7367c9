"""Live streaming at conversational latency: a frame is final ``lookahead_s`` (default 0.16 s)
after its speech ends, plus the wait for its hop (≤ 0.08 s) and the compute.

The offline windows (:mod:`cafetalk_rt.longform.streaming`) wait for whole 10 s (or 2 s) windows
and throw the past away. A live stream always has its past, so every hop of ``hop_s`` (2 frames
at 25 fps) of audio :class:`LiveStream` makes ONE call of the backend's streaming step (the
``streaming_step`` graph, :mod:`cafetalk_rt.backends.streaming_contract`, or the same torch
module, :mod:`cafetalk_rt.nn.streaming`): the speech encoder hears the kept past audio and the
look-ahead, the denoiser keeps the already emitted frames fixed (x0 inpainting) while it denoises
the new ones, and the new frames are joined to the last emitted one. The state of a stream is
three small tensors the call returns and takes back, so a C++ or Node.js caller runs the same
graph the same way (``tests/node/run_streaming.mjs``).

* Every emitted frame is final. All returned frames together are the offline call's
  ``round(duration · fps)`` frames; 25 and 30 fps both work (30 fps is resampled from the model's
  25 fps frames as they become final).
* The stream starts from silence and a neutral face: the first ⌈L / H⌉ hops animate the silence
  before it and are dropped. At the end the audio is padded with silence for the look-ahead.
* Randomness: frame f's x_T is frame f of the seed's one x_T sequence, the numbers the offline
  path draws (:func:`~cafetalk_rt.diffusion.noise.initial_noise_frames`; zeros before the
  stream), so a stream is reproducible and backends can be compared.
* Emotion and intensity may change mid-stream (:meth:`LiveStream.set_emotion`): the model's
  emotion embedding moves from the old to the new condition along a smoothstep over
  ``transition_s``. AU spans and instructions are offline-only.
* Many streams: :class:`LiveBatch` advances every stream that has a hop of audio in one batched
  call (all streams share one layout, so the shapes always agree).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from cafetalk_rt.audio import SILENCE_PEAK, check_chunk
from cafetalk_rt.backends.streaming_contract import DEFAULT_LAYOUT, StreamingLayout
from cafetalk_rt.blendshapes import NUM_BLENDSHAPES
from cafetalk_rt.blinks import BlinkTrack, apply_blinks
from cafetalk_rt.control.emotions import check_intensity, emotion_index
from cafetalk_rt.diffusion.noise import initial_noise_frames
from cafetalk_rt.errors import AudioInputError, InputError
from cafetalk_rt.frames import SAMPLE_RATE, final_output_frames, first_source_frame, frame_start_sample, num_frames
from cafetalk_rt.options import AnimateOptions

log = logging.getLogger(__name__)

#: K of a live stream when no options are given (each hop is one call of K denoiser steps).
LIVE_NUM_INFERENCE_STEPS = 2


@dataclass(frozen=True)
class LiveOptions:
    """Timing of a live stream.

    Attributes:
        lookahead_s: audio after a frame's end that its animation waits for (0–1 s, a whole
            number of 25 fps frames; 0.16 default, 0.08 and 0.04 supported).
        hop_s: audio per step; a whole number of 25 fps frames (0.08 s = 2 frames).
        past_s: emitted frames the denoiser sees (and keeps fixed) before the new ones.
        encoder_context_s: audio before the new frames that the speech encoder hears.
        transition_s: length of the smooth change after :meth:`LiveStream.set_emotion`.
        join_s: time constant of the join: the new frames are shifted by the model's own miss on
            the last emitted frame, fading as exp(−Δt / join_s).
    Raises:
        InputError: values out of range or not whole frames (the message names the field).
    """

    # defaults: the shipped default graph's layout (streaming_contract.DEFAULT_LAYOUT), in seconds
    lookahead_s: float = DEFAULT_LAYOUT.lookahead_s
    hop_s: float = DEFAULT_LAYOUT.hop_s
    past_s: float = DEFAULT_LAYOUT.past_frames / DEFAULT_LAYOUT.fps
    encoder_context_s: float = DEFAULT_LAYOUT.encoder_context_frames / DEFAULT_LAYOUT.fps
    transition_s: float = 0.3
    join_s: float = DEFAULT_LAYOUT.join_s

    def __post_init__(self):
        checks = {"lookahead_s": (0.0, 1.0), "hop_s": (0.04, 1.0), "past_s": (0.04, 2.0),
                  "encoder_context_s": (0.0, 10.0), "transition_s": (0.0, 2.0), "join_s": (0.0, 1.0)}
        for name, (lo, hi) in checks.items():
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and lo <= v <= hi):
                raise InputError(f"LiveOptions.{name} must be in [{lo:g}, {hi:g}] seconds, got {v!r}")
        for name in ("lookahead_s", "hop_s", "past_s", "encoder_context_s"):
            frames = getattr(self, name) * 25
            if abs(frames - round(frames)) > 1e-6:
                raise InputError(f"LiveOptions.{name}={getattr(self, name)} is not a whole number of 25 fps frames "
                                 f"(multiples of 0.04 s)")

    def layout(self, num_inference_steps: int) -> StreamingLayout:
        """The :class:`StreamingLayout` (the graph) these timings and K need."""
        return StreamingLayout(hop_frames=round(self.hop_s * 25), lookahead_frames=round(self.lookahead_s * 25),
                               past_frames=round(self.past_s * 25),
                               encoder_context_frames=round(self.encoder_context_s * 25),
                               num_inference_steps=num_inference_steps, join_s=self.join_s)


def _smoothstep(u: float) -> float:
    u = min(1.0, max(0.0, u))
    return u * u * (3.0 - 2.0 * u)


class LiveStream:
    """Push audio chunks of a live stream, get each frame once it is final.

    Args:
        animator: a loaded :class:`~cafetalk_rt.pipeline.Animator` whose backend has
            ``streaming_step`` (onnxruntime, torch).
        options: emotion, intensity, seed, K (default 2), guidance_scale, fps; no AU spans,
            sampler DDIM, ``audio_guidance_scale`` 1.
        live: the stream's timing (:class:`LiveOptions`).
    Raises:
        InputError: AU spans or an instruction (offline-only), another sampler or audio guidance,
            or a backend that cannot stream.
        MissingDependencyError: no streaming graph for this timing and K (the message names the
            export command).

    ``push(chunk (L,) float32 16 kHz mono) → (n, 52)`` float32 in [0, 1] at ``options.fps``;
    ``flush() → (n, 52)`` at the end. All returned frames together are
    ``round(duration · fps)`` frames.
    """

    def __init__(self, animator, options: AnimateOptions | None = None, live: LiveOptions | None = None):
        self.options = options or AnimateOptions(num_inference_steps=LIVE_NUM_INFERENCE_STEPS)
        self.live = live or LiveOptions()
        o = self.options
        if o.au_spans or o.instruction:
            raise InputError("AU spans and instructions are offline-only (they need the whole clip); a live stream "
                             "takes emotion and intensity, changeable with set_emotion()")
        if o.sampler != "ddim":
            raise InputError(f"live streaming samples with DDIM (its graph has the steps built in), not {o.sampler}")
        if o.audio_guidance_scale != 1.0:
            raise InputError("live streaming guides the emotion only: audio_guidance_scale must be 1.0")
        if not hasattr(animator.backend, "streaming_step"):
            raise InputError(f"the {animator.backend.name} backend cannot stream live; use onnxruntime or torch")
        self.layout = self.live.layout(o.num_inference_steps)
        self.backend = animator.backend
        self.run = animator.backend.streaming_step(self.layout)  # raises when its graph is missing
        self.model_fps = animator.model_fps
        lay = self.layout
        self.state = {k: np.zeros(v, np.float32) for k, v in lay.state_shapes().items()}
        self._pending = np.zeros(0, np.float32)  # audio not yet given to a hop
        self._hops = 0  # calls made; hop n emits model frames [n·H − L, n·H − L + H)
        self._received, self._peak = 0, 0.0
        self._rng = np.random.default_rng(o.seed)
        self._noise = np.zeros((0, NUM_BLENDSHAPES), np.float32)  # x_T of frames [_noise_offset, …)
        self._noise_offset = 0
        self._model = np.zeros((0, NUM_BLENDSHAPES), np.float32)  # final model-fps frames ...
        self._model_offset = self._model_end = 0  # ... _model[0] is frame _model_offset
        self._emitted = 0
        self._blinks = BlinkTrack(o.seed)
        self._closed = False
        self._total: int | None = None  # model frames of the whole stream, known at flush
        self._cond = self._prev = (emotion_index(o.emotion), float(o.intensity))
        self._change_frame = 0

    # -- public ------------------------------------------------------------------------------
    @property
    def num_frames_emitted(self) -> int:
        """Output frames (at ``options.fps``) returned so far."""
        return self._emitted

    @property
    def stream_time_s(self) -> float:
        """Seconds of audio received so far."""
        return self._received / SAMPLE_RATE

    def set_emotion(self, emotion: str | None, intensity: float | None = None, *, at_s: float | None = None) -> None:
        """Change the emotion (and intensity) from stream time ``at_s`` (default: now), blending
        over ``LiveOptions.transition_s``. Frames already emitted keep theirs. ``None`` keeps
        the current emotion (or intensity).

        Raises:
            InputError: unknown emotion or intensity out of range.
        """
        new = (self._cond[0] if emotion is None else emotion_index(emotion),
               float(check_intensity(self._cond[1] if intensity is None else intensity)))
        frame = num_frames(int(round((self.stream_time_s if at_s is None else at_s) * SAMPLE_RATE)), self.model_fps)
        self._prev = self._cond if self._mix(frame) >= 0.5 else self._prev
        self._cond = new
        self._change_frame = max(frame, self._next_frame())

    def push(self, chunk: np.ndarray) -> np.ndarray:
        """Add (L,) float samples at 16 kHz (any L ≥ 0); returns the (n, 52) frames that became final.

        Raises:
            AudioInputError: not 1-D float audio, or non-finite samples.
            InputError: the stream was already flushed.
        """
        self.append(chunk)
        advance([self])
        return self._emit(final=False)

    # -- for a scheduler that batches many streams (LiveBatch, the server) ----------------------
    def append(self, chunk: np.ndarray) -> None:
        """Add (L,) float samples at 16 kHz without computing anything (``advance_round`` does).

        Raises:
            AudioInputError, InputError: as :meth:`push`.
        """
        self._append(self._check_chunk(chunk))

    def end(self) -> None:
        """Mark the end of the audio without computing (then ``advance_round`` until
        :attr:`done`, then :meth:`take` with ``final=True``).

        Raises:
            AudioInputError: the stream was empty or silent. InputError: called twice.
        """
        self._close()

    def take(self, *, final: bool = False) -> np.ndarray:
        """(n, 52) output frames that became final since the last call (``final=True`` once
        :attr:`done`: the last ones, so all frames total ``round(duration · fps)``)."""
        return self._emit(final=final)

    @property
    def done(self) -> bool:
        """The audio has ended and every frame has been computed."""
        return self._total is not None and not self._ready()

    @property
    def buffered_s(self) -> float:
        """Seconds of received audio not yet given to a hop (a backlog when compute lags)."""
        return self._pending.size / SAMPLE_RATE

    def flush(self) -> np.ndarray:
        """End of stream: animate the remaining frames (the look-ahead past the end is silence)
        and return them.

        Raises:
            AudioInputError: the stream was empty or silent.
            InputError: called twice.
        """
        self._close()
        advance([self])
        return self._emit(final=True)

    # -- internals (LiveBatch drives these too) ----------------------------------------------
    def _check_chunk(self, chunk) -> np.ndarray:
        if self._closed:
            raise InputError("push after flush: start a new LiveStream for a new stream")
        return check_chunk(chunk, at_s=self.stream_time_s)

    def _append(self, x: np.ndarray) -> None:
        self._pending = np.concatenate([self._pending, x])
        self._received += x.size
        if x.size:
            self._peak = max(self._peak, float(np.max(np.abs(x))))

    def _close(self) -> None:
        if self._closed:
            raise InputError("this stream was already flushed; start a new LiveStream")
        self._closed = True
        if self._received == 0 or self._peak < SILENCE_PEAK:
            raise AudioInputError(f"audio '<stream>' is empty or silent (peak {self._peak:.2e})")
        self._total = num_frames(self._received, self.model_fps)

    def _next_frame(self) -> int:
        """First model frame the next hop emits."""
        return self._hops * self.layout.hop_frames - self.layout.lookahead_frames

    def _ready(self) -> bool:
        """A hop's audio has arrived (push), or frames are still missing after the end (flush)."""
        if self._total is not None:
            return self._model_end < self._total
        return self._pending.size >= self.layout.chunk_samples

    def _mix(self, frame: int) -> float:
        """Weight of the new condition at model frame ``frame`` (smoothstep over the transition)."""
        n = max(1, int(round(self.live.transition_s * self.model_fps)))
        return _smoothstep((frame - self._change_frame + 1) / n)

    def _window_noise(self) -> np.ndarray:
        """(T, 52) x_T of the next hop's window, frames [f0 − P, f0 + H + L); zeros before frame 0."""
        lay = self.layout
        f0 = self._next_frame()
        lo, hi = f0 - lay.past_frames, f0 + lay.hop_frames + lay.lookahead_frames
        drawn = self._noise_offset + self._noise.shape[0]
        if hi > drawn:
            self._noise = np.concatenate([self._noise, initial_noise_frames(self._rng, hi - drawn)])
        out = np.zeros((hi - lo, NUM_BLENDSHAPES), np.float32)
        a = max(lo, self._noise_offset)
        out[a - lo:] = self._noise[a - self._noise_offset : hi - self._noise_offset]
        return out

    def _take_chunk(self) -> np.ndarray:
        n = self.layout.chunk_samples
        chunk = np.zeros(n, np.float32)
        take = min(n, self._pending.size)
        chunk[:take] = self._pending[:take]
        self._pending = self._pending[take:]
        return chunk

    def _feeds(self, streams: list["LiveStream"]) -> dict:
        """The batched inputs of one hop of ``streams`` (which share this stream's layout)."""
        rows = []
        for s in streams:
            w = s._mix(s._next_frame())
            if w >= 1.0:
                s._prev = s._cond  # the transition is over
            rows.append((s._take_chunk(), 1.0 if s._hops == 0 else 0.0, s._window_noise(),
                         (s._prev[0], s._cond[0]), (s._prev[1], s._cond[1]), w, s.options.guidance_scale))
        feeds = {k: np.stack([s.state[k] for s in streams]) for k in self.state}
        for name, col, dtype in (("audio_chunk", 0, np.float32), ("start", 1, np.float32), ("noise", 2, np.float32),
                                 ("emotion", 3, np.int64), ("intensity", 4, np.float32),
                                 ("condition_mix", 5, np.float32), ("guidance_scale", 6, np.float32)):
            feeds[name] = np.asarray([r[col] for r in rows], dtype)
        return feeds

    def _finish(self, out: dict) -> None:
        """Take one hop's outputs (this stream's row): keep the state, store the final frames."""
        lay = self.layout
        for k in self.state:
            self.state[k] = out["next_" + k]
        f0 = self._next_frame()
        self._hops += 1
        frames = out["frames"]
        if not np.all(np.isfinite(frames)):
            raise RuntimeError("the model produced non-finite values; please report this with the input")
        lo = max(0, f0)
        hi = f0 + lay.hop_frames if self._total is None else min(f0 + lay.hop_frames, self._total)
        if hi > lo:
            self._model = np.concatenate([self._model, frames[lo - f0 : hi - f0]])
            self._model_end = hi
        self._drop_old()

    def _drop_old(self) -> None:
        """Forget model frames and noise no later step reads (memory stays bounded)."""
        keep = min(self._model_end, self._emitted if self.options.fps == self.model_fps else
                   first_source_frame(self._emitted, self.model_fps, self.options.fps))
        if keep > self._model_offset:
            self._model = self._model[keep - self._model_offset :]
            self._model_offset = keep
        noise_keep = self._next_frame() - self.layout.past_frames
        if noise_keep > self._noise_offset:
            self._noise = self._noise[noise_keep - self._noise_offset :]
            self._noise_offset = noise_keep

    def _emit(self, *, final: bool) -> np.ndarray:
        """Output frames that are final, at ``options.fps``."""
        out = final_output_frames(self._model, self._model_offset, self._model_end, self.model_fps, self.options.fps,
                                  self._emitted, self._received if final else None)
        if self.options.blinks:
            out = apply_blinks(out, self._blinks, self.options.fps, start_frame=self._emitted)
        self._emitted += len(out)
        self._drop_old()
        return out


def advance_round(streams: list[LiveStream]) -> bool:
    """One round of hops: the ready streams in ``streams`` that share a streaming step (same
    layout and backend runner) go into ONE batched call, each advancing by one hop. Returns
    False when no stream was ready (nothing ran). A server calls this between network reads."""
    groups: dict = {}
    for s in streams:
        if s._ready():
            groups.setdefault(id(s.run), []).append(s)
    for group in groups.values():
        out = group[0].run(group[0]._feeds(group))
        for i, s in enumerate(group):
            s._finish({k: v[i] for k, v in out.items()})
    return bool(groups)


def advance(streams: list[LiveStream]) -> None:
    """Run rounds (:func:`advance_round`) until no stream in ``streams`` is ready."""
    while advance_round(streams):
        pass


class LiveBatch:
    """Many live streams on one model, advanced together: at each hop every stream with a hop of
    audio joins ONE batched streaming-step call (paper Eq. 6 with all rows in one batch). A stream
    that joins, leaves or stalls changes only the batch size; every stream gets the frames it
    would get alone (within float rounding of the batched call, tests/test_live.py).

    Args:
        animator: the loaded model all streams share.
    """

    def __init__(self, animator):
        self.animator = animator
        self.streams: dict = {}

    def open(self, key, options: AnimateOptions | None = None, live: LiveOptions | None = None) -> LiveStream:
        """Start stream ``key`` (any hashable). Raises InputError: ``key`` is already open, or as LiveStream."""
        if key in self.streams:
            raise InputError(f"stream {key!r} is already open")
        self.streams[key] = LiveStream(self.animator, options, live)
        return self.streams[key]

    def push(self, chunks: dict) -> dict:
        """Add audio to some streams ({key: (L,) float32}); advance every stream that is ready,
        batched; returns {key: (n, 52) newly final frames} for every open stream.

        Raises:
            InputError: an unknown stream key. AudioInputError: as LiveStream.push.
        """
        unknown = [k for k in chunks if k not in self.streams]
        if unknown:
            raise InputError(f"unknown stream(s) {unknown!r}; open them first")
        for key, chunk in chunks.items():
            self.streams[key].append(chunk)
        advance(list(self.streams.values()))
        return {key: s._emit(final=False) for key, s in self.streams.items()}

    def close(self, key) -> np.ndarray:
        """End stream ``key``: its last frames (``LiveStream.flush``); the stream is removed."""
        return self.streams.pop(key).flush()


def frame_latencies_ms(pushes: list[tuple[int, float]], returns: list[tuple[int, float]], fps: float,
                       sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The latency of each output frame of a stream, in ms (``cafetalk-rt stream --report`` and
    the WebSocket client use this one definition).

    Args:
        pushes: (samples given so far, wall time in s) after each chunk, in order.
        returns: (frames returned, wall time in s) for each batch of frames, in order.
        fps: output frame rate; sample_rate: the rate ``pushes`` counts in.
    Returns:
        (T,) float: frame t's return time − the time of the first push that covered t / fps.
    """
    received = np.array([r for r, _ in pushes])
    walls = np.array([w for _, w in pushes])
    out, frame = [], 0
    for count, wall in returns:
        for t in range(frame, frame + count):
            i = min(int(np.searchsorted(received, frame_start_sample(t, fps, sample_rate), side="left")), len(pushes) - 1)
            out.append(1e3 * (wall - walls[i]))
        frame += count
    return np.asarray(out)
