"""Live streaming at conversational latency: a frame is final ``lookahead_s`` (default 0.16 s)
after its speech, plus one hop (0.08 s) and the compute.

The offline windows (:mod:`cafetalk_rt.longform.streaming`) wait for whole 10 s (or 2 s) windows
and throw the past away. A live stream always has its past, so every hop of
``LiveOptions.hop_s`` (2 frames at 25 fps) :class:`LiveStream`:

1. encodes the audio from ``encoder_context_s`` before the denoising window up to the new
   frames' end plus ``lookahead_s`` (the speech encoder hears the past and the look-ahead);
2. denoises a short window: ``past_s`` of frames that were already emitted, then the new frames,
   from the stream's one seeded noise sequence (frame f's x_T is the same numbers the offline
   path draws for frame f). The emitted frames are held fixed by **inpainting**: at every step
   the x0 prediction on them is replaced by the emitted values (in normalised units), so the
   sampler's update carries them into the next x_t and the new frames are denoised to continue
   them without a seam (replacement in x0 space, as RePaint does in x_t space);
3. emits the new frames; they are final and never revised.

The frame count equals the offline call's ``round(duration · fps)``; 25 and 30 fps both work (30
fps output is resampled from the model's 25 fps frames as they become final). Emotion and
intensity may change mid-stream (:meth:`LiveStream.set_emotion`): for ``transition_s`` frames
after the change, each step's x0 is a per-frame smoothstep blend of the old and the new
condition's guided predictions (both rows in one batched call). AU spans and instructions are
offline-only. The sampler must be deterministic (DDIM or DPM-Solver++(2M)).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from cafetalk_rt.audio import SILENCE_PEAK, check_chunk
from cafetalk_rt.blendshapes import NUM_BLENDSHAPES
from cafetalk_rt.control.emotions import check_intensity, emotion_index
from cafetalk_rt.diffusion.noise import initial_noise_frames
from cafetalk_rt.diffusion.samplers import SAMPLERS, STOCHASTIC_SAMPLERS
from cafetalk_rt.diffusion.schedule import inference_timesteps
from cafetalk_rt.errors import AudioInputError, InputError
from cafetalk_rt.frames import (SAMPLE_RATE, feature_hop_samples, final_output_frames, first_source_frame,
                                frame_start_sample, num_frames)
from cafetalk_rt.options import AnimateOptions

log = logging.getLogger(__name__)

_EMPTY = np.zeros((0, NUM_BLENDSHAPES), np.float32)


@dataclass(frozen=True)
class LiveOptions:
    """Timing of a live stream.

    Attributes:
        lookahead_s: audio after a frame's end that its animation may hear (0–1 s; 0.16 default,
            0.08 supported).
        hop_s: how much audio each step animates; a whole number of model frames (0.08 s = 2
            frames at 25 fps).
        past_s: emitted frames the denoiser sees (and keeps fixed) before the new ones.
        encoder_context_s: audio before the denoised frames that the speech encoder hears.
        transition_s: length of the smooth change after :meth:`LiveStream.set_emotion`.
        join_s: time constant of the join: the new frames are shifted by the model's own miss on
            the last emitted frame, fading as exp(−Δt / join_s) (0 = the first new frame only).
        inpaint: hold the emitted frames fixed in every denoising step (else the window is
            re-animated from its noise and only the join ties it to the past).
    Raises:
        InputError: values out of range (the message names the field).
    """

    lookahead_s: float = 0.16
    hop_s: float = 0.08
    past_s: float = 0.6
    encoder_context_s: float = 0.5
    transition_s: float = 0.3
    join_s: float = 0.04
    inpaint: bool = True

    def __post_init__(self):
        checks = {"lookahead_s": (0.0, 1.0), "hop_s": (0.02, 1.0), "past_s": (0.0, 5.0),
                  "encoder_context_s": (0.0, 10.0), "transition_s": (0.0, 2.0), "join_s": (0.0, 1.0)}
        for name, (lo, hi) in checks.items():
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and lo <= v <= hi):
                raise InputError(f"LiveOptions.{name} must be in [{lo:g}, {hi:g}] seconds, got {v!r}")


class LiveStream:
    """Push audio chunks of a live stream, get each frame once it is final.

    Args:
        animator: a loaded :class:`~cafetalk_rt.pipeline.Animator` (its backend needs
            ``step_denoiser``: onnxruntime and torch have it).
        options: emotion, intensity, seed, K, guidance scales, fps, as offline; no AU spans.
        live: the stream's timing (:class:`LiveOptions`).
    Raises:
        InputError: AU spans or an instruction (offline-only), a stochastic sampler, or a
            backend without a step denoiser.

    ``push(chunk (L,) float32 16 kHz mono) → (n, 52)`` float32 in [0, 1] at ``options.fps``;
    ``flush() → (n, 52)`` at the end. All returned frames together are
    ``round(duration · fps)`` frames.
    """

    def __init__(self, animator, options: AnimateOptions | None = None, live: LiveOptions | None = None):
        self.options = options or AnimateOptions()
        self.live = live or LiveOptions()
        if self.options.au_spans or self.options.instruction:
            raise InputError("AU spans and instructions are offline-only (they need the whole clip); a live stream "
                             "takes emotion and intensity, changeable with set_emotion()")
        if self.options.sampler in STOCHASTIC_SAMPLERS:
            raise InputError(f"live streaming needs a deterministic sampler (ddim or dpmpp_2m), not {self.options.sampler}")
        if not hasattr(animator.backend, "step_denoiser"):
            raise InputError(f"the {animator.backend.name} backend cannot stream live; use onnxruntime or torch")
        self.animator, self.backend = animator, animator.backend
        self.model_fps = animator.model_fps
        hop = self.live.hop_s * self.model_fps
        if abs(hop - round(hop)) > 1e-6:
            raise InputError(f"hop_s={self.live.hop_s} is not a whole number of {self.model_fps} fps frames")
        self.hop_frames = int(round(hop))
        self.past_frames = int(round(self.live.past_s * self.model_fps))
        feat_hop = feature_hop_samples()
        self.lookahead_samples = int(round(self.live.lookahead_s * SAMPLE_RATE))
        self.context_samples = int(round(self.live.encoder_context_s * SAMPLE_RATE / feat_hop)) * feat_hop
        self._audio = np.zeros(0, np.float32)
        self._audio_offset = 0  # global sample index of _audio[0]
        self._received, self._peak = 0, 0.0
        self._rng = np.random.default_rng(self.options.seed)
        self._noise = np.zeros((0, NUM_BLENDSHAPES), np.float32)
        self._noise_offset = 0
        self._model = np.zeros((0, NUM_BLENDSHAPES), np.float32)  # final model-fps frames ...
        self._model_offset = self._model_end = 0  # ... _model[0] is frame _model_offset
        self._emitted = 0
        self._closed = False
        self._cond = self._prev = (emotion_index(self.options.emotion), float(self.options.intensity))
        self._change_frame = 0
        #: (n,) weight of the join correction on the k-th new frame (LiveOptions.join_s)
        self._join_decay = np.exp(-np.arange(64) / max(1e-6, self.live.join_s * self.model_fps)).astype(np.float32)

    # -- public ------------------------------------------------------------------------------
    @property
    def num_frames_emitted(self) -> int:
        """Output frames (at ``options.fps``) returned so far."""
        return self._emitted

    @property
    def stream_time_s(self) -> float:
        """Seconds of audio received so far."""
        return self._received / SAMPLE_RATE

    def set_emotion(self, emotion: str, intensity: float | None = None, *, at_s: float | None = None) -> None:
        """Change the emotion (and intensity) from stream time ``at_s`` (default: now), blending
        over ``LiveOptions.transition_s``. Frames already emitted keep theirs.

        Raises:
            InputError: unknown emotion or intensity out of range.
        """
        new = (emotion_index(emotion), float(check_intensity(self._cond[1] if intensity is None else intensity)))
        frame = num_frames(int(round((self.stream_time_s if at_s is None else at_s) * SAMPLE_RATE)), self.model_fps)
        self._prev, self._cond = self._blend_start(frame), new
        self._change_frame = max(frame, self._model_end)

    def push(self, chunk: np.ndarray) -> np.ndarray:
        """Add (L,) float samples at 16 kHz (any L ≥ 0); returns the (n, 52) frames that became final.

        Raises:
            AudioInputError: not 1-D float audio, or non-finite samples.
            InputError: the stream was already flushed.
        """
        x = self._check_chunk(chunk)
        self._append(x)
        while self._ready():
            self._step(self._model_end + self.hop_frames)
        return self._emit(final=False)

    def flush(self) -> np.ndarray:
        """End of stream: animate the remaining frames (with the look-ahead that exists) and return them.

        Raises:
            AudioInputError: the stream was empty or silent.
            InputError: called twice.
        """
        if self._closed:
            raise InputError("this stream was already flushed; start a new LiveStream")
        self._closed = True
        if self._received == 0 or self._peak < SILENCE_PEAK:
            raise AudioInputError(f"audio '<stream>' is empty or silent (peak {self._peak:.2e})")
        total = num_frames(self._received, self.model_fps)
        while self._model_end < total:
            self._step(min(self._model_end + self.hop_frames, total))
        return self._emit(final=True)

    # -- internals ---------------------------------------------------------------------------
    def _check_chunk(self, chunk) -> np.ndarray:
        if self._closed:
            raise InputError("push after flush: start a new LiveStream for a new stream")
        return check_chunk(chunk, at_s=self.stream_time_s)

    def _append(self, x: np.ndarray) -> None:
        self._audio = np.concatenate([self._audio, x])
        self._received += x.size
        if x.size:
            self._peak = max(self._peak, float(np.max(np.abs(x))))

    def _blend_start(self, frame: int) -> tuple[int, float]:
        """The condition in force at ``frame`` (the old one, or the new one once its transition ended)."""
        return self._cond if self._weights(np.array([frame]))[0] >= 0.5 else self._prev

    def _weights(self, frames: np.ndarray) -> np.ndarray:
        """(n,) weight of the new condition per model frame: smoothstep over the transition."""
        n = max(1, int(round(self.live.transition_s * self.model_fps)))
        u = np.clip((frames - self._change_frame + 1) / n, 0.0, 1.0)
        return (u * u * (3.0 - 2.0 * u)).astype(np.float32)

    def _step(self, w1: int) -> None:
        """Denoise the window ending at model frame ``w1``; frames [model_end, w1) become final."""
        job = self._prepare(w1)
        self._finish(job, *denoise_jobs(self.backend, [job])[0])

    def _ready(self) -> bool:
        """A hop's audio and look-ahead have arrived (push) or the stream is ending (flush)."""
        need = frame_start_sample(self._model_end + self.hop_frames, self.model_fps) + self.lookahead_samples
        return self._received >= need

    def _prepare(self, w1: int) -> "_Job":
        """What the hop ending at model frame ``w1`` needs: audio, noise, emitted frames, weights."""
        e = self._model_end
        w0 = max(0, e - self.past_frames)
        # The window reaches into the look-ahead: frames whose audio has fully arrived are denoised
        # too (and dropped), so the new frames have right context as they do offline.
        heard = min(self._received, frame_start_sample(w1, self.model_fps) + self.lookahead_samples)
        w2 = max(w1, min(num_frames(self._received, self.model_fps),
                         w1 + (heard - frame_start_sample(w1, self.model_fps)) // frame_start_sample(1, self.model_fps)))
        drawn = self._noise_offset + self._noise.shape[0]
        if w2 > drawn:
            self._noise = np.concatenate([self._noise, initial_noise_frames(self._rng, w2 - drawn)])
        start = frame_start_sample(w0, self.model_fps)
        a0 = max(0, start - self.context_samples)
        weights = self._weights(np.arange(w0, w2))
        rows = (self._prev, self._cond) if 0.0 < weights.max() and weights.min() < 1.0 else \
            ((self._cond if weights.min() >= 1.0 else self._prev),)
        return _Job(self, w0, w1, w2, audio=self._audio[a0 - self._audio_offset : heard - self._audio_offset],
                    feature_offset=(start - a0) // feature_hop_samples(),
                    x_t=self._noise[w0 - self._noise_offset : w2 - self._noise_offset],
                    known=self._model[w0 - self._model_offset : e - self._model_offset], weights=weights, rows=rows)

    def _finish(self, job: "_Job", x0: np.ndarray, step) -> None:
        """Keep the hop's new frames: x0 (T, 52) normalised of the window, joined to the past."""
        e = self._model_end
        new = x0[e - job.w0 : job.w1 - job.w0]  # (n, 52)
        if job.known.shape[0]:  # join: shift the new frames by the model's miss on the last emitted frame, fading
            delta = step.normalize(job.known[-1]) - job.raw_last_known
            new = new + delta * self._join_decay[: new.shape[0], None]
        new = np.clip(step.denormalize(new), 0.0, 1.0)
        if not np.all(np.isfinite(new)):
            raise RuntimeError("the model produced non-finite values; please report this with the input")
        self._model = np.concatenate([self._model, new])
        self._model_end = job.w1
        self._drop_old()

    def _drop_old(self) -> None:
        """Forget model frames, noise and audio no later step reads (memory stays bounded)."""
        keep_frame = max(0, self._model_end - self.past_frames - 2)
        if self.options.fps == self.model_fps:
            keep_frame = min(keep_frame, self._emitted)  # frames not yet returned stay
        else:
            keep_frame = min(keep_frame, first_source_frame(self._emitted, self.model_fps, self.options.fps))
        if keep_frame > self._model_offset:
            self._model = self._model[keep_frame - self._model_offset :]
            self._model_offset = keep_frame
        if keep_frame > self._noise_offset:
            self._noise = self._noise[keep_frame - self._noise_offset :]
            self._noise_offset = keep_frame
        a0 = max(0, frame_start_sample(max(0, self._model_end - self.past_frames), self.model_fps) - self.context_samples)
        if a0 > self._audio_offset:
            self._audio = self._audio[a0 - self._audio_offset :]
            self._audio_offset = a0

    def _emit(self, *, final: bool) -> np.ndarray:
        """Output frames that are final, at ``options.fps``."""
        out = final_output_frames(self._model, self._model_offset, self._model_end, self.model_fps, self.options.fps,
                                  self._emitted, self._received if final else None)
        self._emitted += len(out)
        self._drop_old()
        return out


@dataclass
class _Job:
    """One stream's hop: the window [w0, w2) of model frames, of which [model_end, w1) are new."""

    stream: LiveStream
    w0: int
    w1: int
    w2: int
    audio: np.ndarray  # (L,) what the encoder hears
    feature_offset: int  # feature frame of w0 in the encoder's output
    x_t: np.ndarray  # (T, 52) x_T of the window
    known: np.ndarray  # (n_known, 52) emitted frames in the window (blendshape units)
    weights: np.ndarray  # (T,) weight of the new condition per frame
    rows: tuple  # ((emotion, intensity),) or (old, new) during a transition
    raw_last_known: np.ndarray | None = None  # the model's own x0 of the last emitted frame

    def group_key(self) -> tuple:
        o = self.stream.options
        return (len(self.rows), self.x_t.shape[0], self.known.shape[0], self.audio.size, self.feature_offset,
                o.num_inference_steps, o.sampler, o.guidance_scale, o.audio_guidance_scale, self.stream.live.inpaint)


def _features(backend, jobs: list[_Job]) -> np.ndarray:
    """(B, 2T, D) speech features of the jobs' windows (one encoder call for equal audio lengths)."""
    encode_batch = getattr(backend, "encode_batch", None)
    clips = [j.audio for j in jobs]
    feats = encode_batch(clips) if encode_batch is not None and len(clips) > 1 else [backend.encode(c) for c in clips]
    out = []
    for j, f in zip(jobs, feats):
        n = 2 * j.x_t.shape[0]
        f = np.asarray(f, np.float32)[j.feature_offset : j.feature_offset + n]
        if f.shape[0] < n:  # the stream's end: hold the last feature frame
            f = np.concatenate([f, np.repeat(f[-1:], n - f.shape[0], axis=0)])
        out.append(f)
    return np.stack(out)


def denoise_jobs(backend, jobs: list[_Job]) -> list[tuple[np.ndarray, object]]:
    """Denoise the windows of jobs that share a :meth:`_Job.group_key` in one batched call per
    step (B streams, or one stream with its two transition rows); returns per job its window's
    x0 (T, 52) normalised and the step denoiser (for the units). Fills ``raw_last_known``."""
    first = jobs[0]
    n_rows, options = len(first.rows), first.stream.options
    feats = np.repeat(_features(backend, jobs), n_rows, axis=0)  # (B·rows, 2T, D)
    conds = [r for j in jobs for r in j.rows]
    step = backend.step_denoiser(feats, emotion=np.array([c[0] for c in conds]),
                                 intensity=np.array([c[1] for c in conds], np.float32), options=options)
    known = np.stack([step.normalize(j.known) for j in jobs])  # (B, n_known, 52)
    n_known = known.shape[1]
    mix = np.stack([j.weights for j in jobs])[:, :, None]  # (B, T, 1)
    raw = []

    def denoise(x: np.ndarray, t: int) -> np.ndarray:
        x0 = step.denoise(np.repeat(x, n_rows, axis=0), t)  # (B·rows, T, 52)
        if n_rows == 2:  # a transition: per-frame blend of the old and the new condition
            x0 = x0[0::2] * (1.0 - mix) + x0[1::2] * mix
        raw[:] = [x0[:, n_known - 1].copy()] if n_known else []
        if first.stream.live.inpaint and n_known:
            x0[:, :n_known] = known  # inpainting: the emitted frames stay as they were
        return x0

    timesteps = inference_timesteps(options.num_inference_steps, step.schedule.num_train_timesteps)
    x0 = SAMPLERS[options.sampler](denoise, np.stack([j.x_t for j in jobs]), timesteps, step.schedule)
    for i, j in enumerate(jobs):
        j.raw_last_known = raw[0][i] if raw else None
    return [(x0[i], step) for i in range(len(jobs))]


class LiveBatch:
    """Many live streams on one model, advanced together: at each hop the streams whose windows
    have the same shape share one speech-encoder call and one denoiser call per step (paper Eq. 6
    with all their CFG rows in one batch). A stream that joins, leaves or stalls changes only the
    batch size; every stream gets the frames it would get alone (within float rounding of the
    batched call, tests/test_live.py).

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
            s = self.streams[key]
            s._append(s._check_chunk(chunk))
        while True:
            ready = [s for s in self.streams.values() if s._ready()]
            if not ready:
                break
            groups: dict = {}
            for job in (s._prepare(s._model_end + s.hop_frames) for s in ready):
                groups.setdefault(job.group_key(), []).append(job)
            for jobs in groups.values():
                for job, (x0, step) in zip(jobs, denoise_jobs(self.animator.backend, jobs)):
                    job.stream._finish(job, x0, step)
        return {key: s._emit(final=False) for key, s in self.streams.items()}

    def close(self, key) -> np.ndarray:
        """End stream ``key``: its last frames (``LiveStream.flush``); the stream is removed."""
        return self.streams.pop(key).flush()
