"""Streaming: animate audio that arrives in chunks, with the offline window plan.

:class:`StreamingAnimator` cuts the stream with the same :class:`~cafetalk_rt.longform.windows.WindowPlan`
as :meth:`Animator.animate <cafetalk_rt.pipeline.Animator.animate>` (same ``WindowOptions``),
draws the same global noise, denoises each window once its audio and right context have
arrived, and joins windows with the same :class:`~cafetalk_rt.longform.windows.Stitcher`. Its frames
equal the offline ones: bit-identical when both paths put the same windows in a backend call
(always with one window per call, the CPU default); with ``max_batch`` > 1 streaming batches
only the windows completed by one push, and batch-size float rounding differs by ≲ 1e-5
(tests/test_streaming.py pins both).

Look-ahead: frames come out a window at a time. The first frames need
``window_s + context_s`` of audio (11 s with the defaults: see :attr:`first_frame_delay_s`);
after that every ``window_s − overlap_s`` of audio completes a window, and a frame is emitted
between ``overlap_s + context_s`` and ``window_s + context_s`` of audio after its own time. A
clip that ends before the first window completes is animated in one piece by :meth:`flush`.
For lower latency pass shorter windows (e.g. ``LOW_LATENCY``: 2.5 s) to both paths.

Memory is bounded: the audio and noise of the window in progress, the O pending overlap frames
and, at 30 fps, a few model frames for the resampler.
"""
from __future__ import annotations

import logging

import numpy as np

from cafetalk_rt.audio import SILENCE_PEAK, check_chunk
from cafetalk_rt.blendshapes import NUM_BLENDSHAPES
from cafetalk_rt.blinks import BlinkTrack, apply_blinks
from cafetalk_rt.errors import AudioInputError, InputError
from cafetalk_rt.frames import SAMPLE_RATE, final_output_frames, first_source_frame, frame_start_sample, num_frames
from cafetalk_rt.diffusion.noise import initial_noise_frames
from cafetalk_rt.longform.offline import sample_group, window_groups, windows_per_call
from cafetalk_rt.options import AnimateOptions
from cafetalk_rt.longform.windows import Stitcher, WindowOptions, WindowPlan, plan_windows

log = logging.getLogger(__name__)

#: Short windows for interactive use: look-ahead 2.5 s (window 2 s + context 0.5 s).
LOW_LATENCY = WindowOptions(window_s=2.0, overlap_s=0.5, context_s=0.5)


class StreamingAnimator:
    """Push 16 kHz mono audio chunks, get the newly final blendshape frames back.

    Args:
        animator: a loaded :class:`~cafetalk_rt.pipeline.Animator` (its backend is used).
        options: as for ``Animator.animate``.
        windows: the window plan options; pass the same ones offline to get the same frames.

    ``push(chunk (L,) float32) → (n, 52)`` and, at the end of the stream, ``flush() → (n, 52)``,
    float32 in [0, 1] at ``options.fps``; all returned arrays concatenated equal
    ``animator.animate(whole_audio, options, windows=windows).blendshapes``.
    """

    def __init__(self, animator, options: AnimateOptions | None = None, *, windows: WindowOptions | None = None):
        self.animator = animator
        self.options = options or AnimateOptions()
        self.windows = windows or WindowOptions()
        self.model_fps = animator.model_fps
        self._audio = np.zeros(SAMPLE_RATE, np.float32)  # buffer; valid: [:_audio_len]
        self._audio_len, self._audio_offset = 0, 0  # global sample index of _audio[0]
        self._received, self._peak = 0, 0.0
        self._rng = np.random.default_rng(self.options.seed)
        self._noise = np.zeros((0, NUM_BLENDSHAPES), np.float32)
        self._noise_offset = 0  # global frame index of _noise[0]
        self._next_window = 0
        self._stitcher: Stitcher | None = None
        self._model = np.zeros((0, NUM_BLENDSHAPES), np.float32)  # final model frames (clipped) ...
        self._model_offset = self._model_end = 0  # ... _model[0] is frame _model_offset
        self._emitted = 0  # output frames returned so far
        self._blinks = BlinkTrack(self.options.seed)
        self._closed = False
        self._need = self._samples_to_complete(0)

    # -- public ------------------------------------------------------------------------------
    @property
    def first_frame_delay_s(self) -> float:
        """Seconds of audio that must arrive before the first frames are returned (the
        look-ahead of the first frame: window_s + context_s, 11 s by default); compute time
        comes on top."""
        return self._samples_to_complete(0) / SAMPLE_RATE

    @property
    def num_samples_received(self) -> int:
        return self._received

    @property
    def num_frames_emitted(self) -> int:
        return self._emitted

    def push(self, chunk: np.ndarray) -> np.ndarray:
        """Add (L,) float 16 kHz mono samples (any L ≥ 0); returns the (n, 52) float32 frames
        that became final, n ≥ 0.

        Raises:
            AudioInputError: not 1-D float audio, or non-finite samples.
            InputError: the stream was already flushed.
        """
        chunk = self._check_chunk(chunk)
        self._append(chunk)
        if self._received < self._need:
            return np.zeros((0, NUM_BLENDSHAPES), np.float32)
        plan = plan_windows(self._received, self.model_fps, self.windows)
        ready = []
        while plan.is_complete(self._next_window + len(ready)):
            ready.append(self._next_window + len(ready))
        self._need = self._samples_to_complete(self._next_window + len(ready))
        if not ready:
            return np.zeros((0, NUM_BLENDSHAPES), np.float32)
        self._run(plan, ready, last_window=None)
        return self._emit(final=False)

    def flush(self) -> np.ndarray:
        """End of stream: animate what is left and return the last (n, 52) frames.

        Raises:
            AudioInputError: the whole stream was too short or silent (as ``Animator.animate``).
            InputError: called twice.
        """
        if self._closed:
            raise InputError("this stream was already flushed; start a new StreamingAnimator")
        self._closed = True
        plan = plan_windows(self._received, self.model_fps, self.windows)
        if not plan.windowed:  # nothing emitted yet and the whole clip is still buffered
            audio = self._audio[: self._audio_len]
            return self.animator.animate(audio, self.options, windows=self.windows, name="<stream>").blendshapes
        if self._peak < SILENCE_PEAK:
            raise AudioInputError(f"audio '<stream>' is silent (peak {self._peak:.2e} < {SILENCE_PEAK:g} full scale)")
        self._run(plan, list(range(self._next_window, plan.num_windows)), last_window=plan.num_windows - 1)
        return self._emit(final=True, total_samples=self._received)

    # -- internals ---------------------------------------------------------------------------
    def _samples_to_complete(self, i: int) -> int:
        """Fewest received samples with which window ``i`` is complete (see WindowPlan.is_complete)."""
        probe = plan_windows(0, self.model_fps, self.windows)
        stop = (i * probe.hop_frames) + probe.window_frames
        need = frame_start_sample(stop, self.model_fps) + probe.context_samples
        while num_frames(need, self.model_fps) <= stop:  # a next window must exist
            need += 1
        return need

    def _check_chunk(self, chunk) -> np.ndarray:
        if self._closed:
            raise InputError("push after flush: start a new StreamingAnimator for a new stream")
        return check_chunk(chunk, at_s=self._received / SAMPLE_RATE)

    def _append(self, x: np.ndarray) -> None:
        need = self._audio_len + x.size
        if need > self._audio.size:  # grow geometrically: O(1) amortised per sample
            grown = np.zeros(max(need, 2 * self._audio.size), np.float32)
            grown[: self._audio_len] = self._audio[: self._audio_len]
            self._audio = grown
        self._audio[self._audio_len : need] = x
        self._audio_len, self._received = need, self._received + x.size
        if x.size:
            self._peak = max(self._peak, float(np.max(np.abs(x))))

    def _noise_until(self, stop: int) -> None:
        drawn = self._noise_offset + self._noise.shape[0]
        if stop > drawn:
            self._noise = np.concatenate([self._noise, initial_noise_frames(self._rng, stop - drawn)])

    def _run(self, plan: WindowPlan, indices: list[int], last_window: int | None) -> None:
        """Denoise windows ``indices`` (grouped as offline), stitch them, keep final model frames."""
        if self._stitcher is None:
            self._stitcher = Stitcher(plan.overlap_frames)
        self._noise_until(plan.frame_span(indices[-1])[1])
        log.debug("stream at %.2f s: windows %d-%d", self._received / SAMPLE_RATE, indices[0], indices[-1])
        max_batch = windows_per_call(self.animator.backend, self.windows)
        for group in window_groups(plan, indices, self.options, max_batch):
            blend = sample_group(self.animator.backend, self._audio[: self._audio_len], self._noise, plan, group,
                              self.options, audio_offset=self._audio_offset, noise_offset=self._noise_offset)
            if not np.all(np.isfinite(blend)):
                raise RuntimeError("the model produced non-finite values; please report this with the input")
            for i, y in zip(group, blend):
                frames = np.clip(self._stitcher.add(y, last=i == last_window), 0.0, 1.0)
                self._model = np.concatenate([self._model, frames.astype(np.float32)])
                self._model_end += len(frames)
        self._next_window = indices[-1] + 1
        self._drop_consumed(plan)

    def _drop_consumed(self, plan: WindowPlan) -> None:
        """Forget audio and noise that no later window reads."""
        a0 = min(plan.audio_span(self._next_window)[0], self._received) if self._next_window < plan.num_windows \
            else self._received
        a0 = max(a0, self._audio_offset)
        keep = self._audio[a0 - self._audio_offset : self._audio_len].copy()
        self._audio[: keep.size] = keep
        self._audio_len, self._audio_offset = keep.size, a0
        f0 = self._next_window * plan.hop_frames
        if f0 > self._noise_offset:
            self._noise = self._noise[f0 - self._noise_offset :]
            self._noise_offset = f0

    def _emit(self, *, final: bool, total_samples: int = 0) -> np.ndarray:
        """Output frames that are final, at options.fps."""
        fps = self.options.fps
        out = final_output_frames(self._model, self._model_offset, self._model_end, self.model_fps, fps,
                                  self._emitted, total_samples if final else None)
        if self.options.blinks:
            out = apply_blinks(out, self._blinks, fps, start_frame=self._emitted)
        self._emitted += len(out)
        keep = self._model_end if fps == self.model_fps else \
            min(first_source_frame(self._emitted, self.model_fps, fps), self._model_end)
        self._model = self._model[keep - self._model_offset :]
        self._model_offset = keep
        return out
