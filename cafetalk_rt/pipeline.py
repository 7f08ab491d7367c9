"""The user-facing pipeline: audio in, :class:`~cafetalk_rt.options.Animation` out.

Steps: validate/resample audio (16 kHz mono) → speech features at 50 Hz → sample the denoiser at
its native fps (25) from seeded Gaussian noise with batched CFG → denormalise, clip to [0, 1] →
resample to the requested fps (25 or 30) so T = round(duration_s · fps).

Clips longer than one window (``WindowOptions.window_s``, 10 s) are cut into overlapping
windows that are denoised in batches and crossfaded (:mod:`cafetalk_rt.longform.offline`); there is no
length limit and memory stays bounded (audio + output + one batch of windows).
"""
from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np

from cafetalk_rt.blinks import apply_blinks
from cafetalk_rt.control.au import AUCondition
from cafetalk_rt.diffusion.noise import initial_noise
from cafetalk_rt.diffusion.samplers import STOCHASTIC_SAMPLERS
from cafetalk_rt.audio import load_audio, prepare_audio
from cafetalk_rt.control.emotions import emotion_index
from cafetalk_rt.frames import SAMPLE_RATE, num_frames, resample_sequence
from cafetalk_rt.backends import DEFAULT_BACKEND
from cafetalk_rt.model_files import DEFAULT_MODEL, DEMO_CLIP, check_checkpoint
from cafetalk_rt.longform.offline import animate_windows
from cafetalk_rt.options import AnimateOptions, Animation
from cafetalk_rt.longform.windows import WindowOptions, plan_windows

log = logging.getLogger(__name__)

__all__ = ["Animator", "DEFAULT_MODEL", "DEMO_CLIP"]


class Animator:
    """Loads a model once and animates many clips.

    Args:
        model_path: denoiser checkpoint (default: the shipped model).
        backend: one of ``cafetalk_rt.backends.BACKENDS``; default "onnxruntime" (the shipped
            graphs, no torch needed).
        device: "cpu" or "cuda[:N]".
        instruction_detector: text → AU detector for ``AnimateOptions.instruction``: an
            ``InstructionDetector`` or a checkpoint path; default the shipped one (loaded, with its
            text encoder, on the first instruction).
    Raises:
        FileNotFoundError: the checkpoint does not exist.
        InputError: the file is not a cafetalk_rt checkpoint.
        MissingDependencyError: the backend's extra or an exported graph is missing (the message
            names the command that fixes it).
    """

    def __init__(self, model_path: str | Path | None = None, *, backend: str = DEFAULT_BACKEND, device: str = "cpu",
                 instruction_detector=None):
        from cafetalk_rt.backends import load_backend

        self.instruction_detector = instruction_detector
        self.model_path = Path(model_path) if model_path else DEFAULT_MODEL
        check_checkpoint(self.model_path)
        self.backend = load_backend(backend, self.model_path, device=device)
        self.model_fps = int(self.backend.config.fps)

    def animate(self, audio: np.ndarray, options: AnimateOptions | None = None, *,
                sample_rate: int = SAMPLE_RATE, name: str = "<array>",
                windows: WindowOptions | None = None, prepared: bool = False) -> Animation:
        """Animate one clip of any length.

        Args:
            audio: (L,) or (L, channels) float audio at ``sample_rate`` Hz.
            prepared: ``audio`` is already what :func:`~cafetalk_rt.audio.load_audio` /
                ``prepare_audio`` return ((L,) float32 at 16 kHz, checked), so it is not checked
                and resampled again.
            windows: how audio longer than one window is cut (default ``WindowOptions()``:
                10 s windows, 1 s overlap, 1 s encoder context, windows per backend call
                chosen for the device).
                Clips up to ``window_s`` are animated in one piece.
        Returns:
            Animation with blendshapes (round(duration_s · fps), 52) float32 in [0, 1].
        Raises:
            AudioInputError: empty, silent, non-finite or too short audio.
            InputError: bad ``windows`` values; AU spans ending after the audio; an instruction
                that cannot be read (``cafetalk_rt.control.instructions.parse_instruction``).
        """
        options = options or AnimateOptions()
        windows = windows or WindowOptions()
        if not prepared:
            audio = prepare_audio(audio, sample_rate, name=name)
        duration_s = audio.shape[0] / SAMPLE_RATE
        plan = plan_windows(audio.shape[0], self.model_fps, windows)
        fine = None
        spans = options.au_spans + self.instruction_spans(options.instruction, duration_s)
        if spans:  # (T, n_AU), (T,) at the model fps
            fine = AUCondition.from_spans(spans, num_frames(audio.shape[0], self.model_fps),
                                          self.model_fps, duration_s)
        if plan.windowed:  # an instruction that yields no span is no fine control (not an error)
            window_opts = options if fine is not None else replace(options, au_spans=(), instruction=None)
            blend = animate_windows(self.backend, audio, plan, window_opts, windows, fine=fine)  # (T, 52)
        else:
            blend = self._animate_one(audio, options, fine)
        if not np.all(np.isfinite(blend)):
            raise RuntimeError("the model produced non-finite values; please report this with the input file")
        blend = np.clip(blend, 0.0, 1.0).astype(np.float32)
        t_out = num_frames(audio.shape[0], options.fps)
        if options.fps != self.model_fps:
            blend = np.clip(resample_sequence(blend, self.model_fps, t_out, options.fps), 0.0, 1.0)
        if options.blinks:
            blend = apply_blinks(blend, options.seed, options.fps)
        return Animation(blendshapes=blend, fps=float(options.fps), duration_s=duration_s, options=options)

    def instruction_spans(self, instruction: str | None, duration_s: float) -> tuple:
        """AU spans (``AUSpan`` tuple) of a free-text instruction for a clip of ``duration_s``
        seconds; () for None. Raises InputError for text that cannot be read."""
        if instruction is None:
            return ()
        from cafetalk_rt.control.instructions import InstructionDetector, default_detector, instruction_to_spans

        if not isinstance(self.instruction_detector, InstructionDetector):
            path = self.instruction_detector
            self.instruction_detector = InstructionDetector.load(path) if path else default_detector()
        return instruction_to_spans(instruction, duration_s, detector=self.instruction_detector)

    def _animate_one(self, audio: np.ndarray, options: AnimateOptions, fine: AUCondition | None = None) -> np.ndarray:
        """One window: (L,) float32 16 kHz → (T, 52) float32 blendshapes, not clipped. ``fine``:
        optional AU condition (T, n_AU) / (T,) at the model fps."""
        features = self.backend.encode(audio)[None]  # (1, T_a, D_a)
        t_model = num_frames(audio.shape[0], self.model_fps)
        x_t, step_noise = initial_noise(options.seed, t_model, options.num_inference_steps,
                                        options.sampler in STOCHASTIC_SAMPLERS)
        kw = {} if fine is None else {"fine": AUCondition.stack([fine])}  # (1, T, n_AU), (1, T)
        return self.backend.sample(features, x_t, emotion=emotion_index(options.emotion),
                                   intensity=options.intensity, options=options, step_noise=step_noise, **kw)[0]

    def animate_file(self, path: str | Path, options: AnimateOptions | None = None, *,
                     windows: WindowOptions | None = None) -> Animation:
        """Load an audio file (any rate/channels libsndfile reads) and animate it."""
        return self.animate(load_audio(path), options, name=str(path), windows=windows, prepared=True)
