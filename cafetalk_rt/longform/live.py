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

from cafetalk_rt.audio import SILENCE_PEAK
from cafetalk_rt.blendshapes import NUM_BLENDSHAPES
from cafetalk_rt.control.emotions import check_intensity, emotion_index
from cafetalk_rt.diffusion.noise import initial_noise_frames
from cafetalk_rt.diffusion.samplers import SAMPLERS, STOCHASTIC_SAMPLERS
from cafetalk_rt.diffusion.schedule import inference_timesteps
from cafetalk_rt.errors import AudioInputError, InputError
from cafetalk_rt.frames import (SAMPLE_RATE, feature_hop_samples, first_source_frame, frame_start_sample, num_frames,
                                num_resampled_ready, resample_frames)
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
        while self._received >= frame_start_sample(self._model_end + self.hop_frames, self.model_fps) + \
                self.lookahead_samples:
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
        x = np.asarray(chunk)
        if x.ndim == 2 and x.shape[1] == 1:
            x = x[:, 0]
        if x.ndim != 1 or x.dtype.kind != "f":
            raise AudioInputError(f"push() takes (L,) float 16 kHz mono samples, got shape {x.shape} dtype {x.dtype}")
        x = x.astype(np.float32, copy=False)
        if x.size and not np.isfinite(x).all():
            raise AudioInputError(f"audio chunk at {self.stream_time_s:.3f} s has non-finite samples")
        return x

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

    def _features(self, w0: int, w1: int, heard: int) -> np.ndarray:
        """(1, 2·(w1 − w0), D) speech features of model frames [w0, w1), encoded from
        ``encoder_context_s`` before w0 up to sample ``heard`` (the new frames' end + look-ahead,
        or the stream's end)."""
        start = frame_start_sample(w0, self.model_fps)
        a0 = max(0, start - self.context_samples)
        a1 = heard
        feats = self.backend.encode(self._audio[a0 - self._audio_offset : a1 - self._audio_offset])  # (T_a, D)
        off, n = (start - a0) // feature_hop_samples(), 2 * (w1 - w0)
        feats = feats[off : off + n]
        if feats.shape[0] < n:  # the stream's end: hold the last feature frame
            feats = np.concatenate([feats, np.repeat(feats[-1:], n - feats.shape[0], axis=0)])
        return feats[None]

    def _step(self, w1: int) -> None:
        """Denoise the window ending at model frame ``w1``; frames [model_end, w1) become final."""
        e = self._model_end
        w0 = max(0, e - self.past_frames)
        # The window reaches into the look-ahead: frames whose audio has fully arrived are denoised
        # too (and dropped), so the new frames have right context as they do offline.
        heard = min(self._received, frame_start_sample(w1, self.model_fps) + self.lookahead_samples)
        w2 = max(w1, min(num_frames(self._received, self.model_fps),
                         w1 + (heard - frame_start_sample(w1, self.model_fps)) // frame_start_sample(1, self.model_fps)))
        feats = self._features(w0, w2, heard)
        drawn = self._noise_offset + self._noise.shape[0]
        if w2 > drawn:
            self._noise = np.concatenate([self._noise, initial_noise_frames(self._rng, w2 - drawn)])
        x_t = self._noise[w0 - self._noise_offset : w2 - self._noise_offset][None]  # (1, T, 52)
        weights = self._weights(np.arange(w0, w2))
        rows = [self._prev, self._cond] if 0.0 < weights.max() and weights.min() < 1.0 else \
            [self._cond if weights.min() >= 1.0 else self._prev]
        emo, inten = (np.array([r[0] for r in rows]), np.array([r[1] for r in rows], np.float32))
        step = self.backend.step_denoiser(np.repeat(feats, len(rows), axis=0), emotion=emo, intensity=inten,
                                          options=self.options)
        known = step.normalize(self._model[w0 - self._model_offset : e - self._model_offset])[None]  # (1, e-w0, 52)
        mix = weights[None, :, None]

        raw = []  # the model's own x0 of the window at the last step, before inpainting

        def denoise(x: np.ndarray, t: int) -> np.ndarray:
            x0 = step.denoise(np.repeat(x, len(rows), axis=0), t)  # (rows, T, 52)
            x0 = x0[:1] * (1.0 - mix) + x0[1:] * mix if len(rows) == 2 else x0
            raw[:] = [x0.copy()]
            if self.live.inpaint:
                x0[:, : known.shape[1]] = known  # inpainting: the emitted frames stay as they were
            return x0

        k = self.options.num_inference_steps
        timesteps = inference_timesteps(k, step.schedule.num_train_timesteps)
        x0 = SAMPLERS[self.options.sampler](denoise, x_t, timesteps, step.schedule)[0, e - w0 : w1 - w0]  # (n, 52)
        if known.shape[1]:  # join: shift the new frames by the model's miss on the last emitted frame, fading
            delta = known[0, -1] - raw[0][0, known.shape[1] - 1]  # (52,)
            x0 = x0 + delta * self._join_decay[: x0.shape[0], None]
        new = np.clip(step.denormalize(x0), 0.0, 1.0)
        if not np.all(np.isfinite(new)):
            raise RuntimeError("the model produced non-finite values; please report this with the input")
        self._model = np.concatenate([self._model, new])
        self._model_end = w1
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
        fps = self.options.fps
        if fps == self.model_fps:
            stop = self._model_end
        elif final:
            stop = num_frames(self._received, fps)
        else:
            stop = num_resampled_ready(self._model_end, self.model_fps, fps)
        if stop <= self._emitted:
            return _EMPTY
        if fps == self.model_fps:
            out = self._model[self._emitted - self._model_offset : stop - self._model_offset]
        else:
            out = np.clip(resample_frames(self._model, self.model_fps, fps, self._emitted, stop,
                                          src_start=self._model_offset), 0.0, 1.0)
        self._emitted = stop
        self._drop_old()
        return out.astype(np.float32, copy=True)
