"""Frozen option and result dataclasses of the runtime (faster-whisper style)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cafetalk_rt.control.au import AUSpan, parse_au_spans
from cafetalk_rt.blendshapes import ARKIT_NAMES
from cafetalk_rt.control.emotions import check_intensity, emotion_index
from cafetalk_rt.errors import InputError
from cafetalk_rt.frames import check_fps
from cafetalk_rt.diffusion.samplers import SAMPLERS

#: Default number of denoising steps (DDIM). Chosen from the quality-vs-steps table in docs/quality.md
#: ("Default K", benchmarks/results/quality-vs-steps-cpu-2026-11-27.json): on held-out speech
#: K = 4 is at least as good as K = 10 on every lip column (mouth MAE 0.0163 vs 0.0172 against
#: ground truth, 0.0168 vs 0.0169 against the DDPM-1000 reference) at 40 % of the work, and every
#: AU passes its behaviour tests at K = 4; K = 2 scores as well on the lips but AU23's rest-of-face
#: bound fails there. The paper-style reference is DDPM with 1000 steps.
DEFAULT_NUM_INFERENCE_STEPS = 4
#: Default fine (AU) guidance scale β of Eq. 6 (see docs/control.md): at 2.0 the
#: weakest AU (AU1) reached margins of only 0.15–0.20 on held-out clips; 2.5 gives ≥ 0.23 for every AU.
DEFAULT_AU_GUIDANCE_SCALE = 2.5


@dataclass(frozen=True)
class AnimateOptions:
    """How to animate one clip.

    Attributes:
        emotion: coarse emotion label (see ``cafetalk_rt.control.emotions.EMOTIONS``; synonyms accepted).
        intensity: emotion intensity level 1, 2 or 3.
        seed: seeds the initial (and, for DDPM, per-step) Gaussian noise; same seed → same output.
        num_inference_steps: K denoising steps.
        guidance_scale: CFG scale s_c of the coarse (emotion) condition; 1.0 = no guidance.
        audio_guidance_scale: CFG scale s_a of the audio condition; 1.0 = no guidance.
        sampler: "ddim" or "dpmpp_2m" (few steps) or "ddpm" (ancestral; the paper-style
            reference at K=1000).
        fps: output frame rate, 25 or 30.
        au_spans: fine-grained control, ``AUSpan``s or a span string such as
            ``"AU12=0.8@1.0-2.5,AU1=1.0@3-4"`` (``cafetalk_rt.control.au``; stored as a tuple of
            ``AUSpan``); spans must end within the audio. Empty = no fine control.
        au_guidance_scale: β of the mask-based CFG (paper Eq. 6), applied only on frames inside
            the spans; 0 = no control, 1 = the conditional model, larger = stronger.
        instruction: free-text fine control, e.g. ``"smile broadly from 2 to 3 seconds"``; turned
            into AU spans for the clip's duration (``cafetalk_rt.control.instructions.parse_instruction``)
            and added to ``au_spans`` before sampling. None = no instruction.
        blinks: lay the seed's procedural blinks over the eyes (``cafetalk_rt.blinks``: full
            closures of about 180 ms, about 17 a minute, the same for every backend, offline and
            live). False = only what the denoiser draws (the eyes of emotion and AU control).
    """

    emotion: str = "neutral"
    intensity: int = 2
    seed: int = 0
    num_inference_steps: int = DEFAULT_NUM_INFERENCE_STEPS
    guidance_scale: float = 1.5
    audio_guidance_scale: float = 1.0
    sampler: str = "ddim"
    fps: int = 25
    au_spans: tuple[AUSpan, ...] = ()
    au_guidance_scale: float = DEFAULT_AU_GUIDANCE_SCALE
    instruction: str | None = None
    blinks: bool = True

    def __post_init__(self):
        spans = parse_au_spans(self.au_spans) if isinstance(self.au_spans, str) else tuple(self.au_spans)
        if not all(isinstance(s, AUSpan) for s in spans):
            raise InputError(f"au_spans must be AUSpan objects or a span string, got {self.au_spans!r}")
        object.__setattr__(self, "au_spans", spans)
        if self.instruction is not None and (not isinstance(self.instruction, str) or not self.instruction.strip()):
            raise InputError(f"instruction must be a non-empty string such as \"smile from 2 to 3 seconds\", "
                             f"got {self.instruction!r}")
        try:
            emotion_index(self.emotion)
            check_intensity(self.intensity)
            check_fps(self.fps)
        except ValueError as e:
            raise InputError(str(e)) from None
        if self.sampler not in SAMPLERS:
            raise InputError(f"unknown sampler {self.sampler!r}; use one of {', '.join(SAMPLERS)}")
        if not isinstance(self.num_inference_steps, int) or self.num_inference_steps < 1:
            raise InputError(f"num_inference_steps must be a positive integer, got {self.num_inference_steps!r}")
        for name in ("guidance_scale", "audio_guidance_scale", "au_guidance_scale"):
            v = getattr(self, name)
            if not np.isfinite(v) or not 0.0 <= v <= 20.0:
                raise InputError(f"{name} must be a number in [0, 20], got {v!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise InputError(f"seed must be a non-negative integer, got {self.seed!r}")
        if not isinstance(self.blinks, (bool, np.bool_)):
            raise InputError(f"blinks must be true or false, got {self.blinks!r}")


@dataclass(frozen=True)
class Animation:
    """An animation result.

    Attributes:
        blendshapes: (T, 52) float32 in [0, 1], ARKit order (``names``).
        fps: frames per second; T = round(duration_s * fps).
        duration_s: length of the input audio in seconds.
        options: the options that produced it.
    """

    blendshapes: np.ndarray
    fps: float
    duration_s: float
    options: AnimateOptions
    names: tuple[str, ...] = field(default=ARKIT_NAMES)

    @property
    def num_frames(self) -> int:
        return int(self.blendshapes.shape[0])

    def channel(self, name: str) -> np.ndarray:
        """(T,) curve of one ARKit channel."""
        return self.blendshapes[:, self.names.index(name)]


def animation_metadata(options: "AnimateOptions", model_path, input_path, *, au: str = "") -> dict:
    """What an output file records about how it was made (the CLI and ``POST /v1/animate``)."""
    meta = {"input": str(input_path), "emotion": options.emotion, "intensity": options.intensity,
            "seed": options.seed, "num_inference_steps": options.num_inference_steps,
            "guidance_scale": options.guidance_scale, "audio_guidance_scale": options.audio_guidance_scale,
            "sampler": options.sampler, "blinks": bool(options.blinks), "model": str(model_path)}
    if options.au_spans:
        meta.update(au=au, au_guidance_scale=options.au_guidance_scale)
    if options.instruction:
        meta.update(instruction=options.instruction, au_guidance_scale=options.au_guidance_scale)
    return meta
