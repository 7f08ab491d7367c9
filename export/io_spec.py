"""The I/O contract of every exported graph: the ONE place that writes tensor names, dtypes,
dynamic axes and TensorRT (min, opt, max) shape profiles (style.md, "Who does what").

The exporter (``export/onnx_export.py``), the TensorRT builder (``export/tensorrt.py``) and the
Triton writer (``export/triton.py``) read this module; the runtime (``cafetalk_rt/backends``)
never imports it and instead reads the same description back from each model's metadata
(key ``cafetalk.io``, see :func:`io_metadata`).

Graphs (all inputs carry the batch axis first, so Triton can batch requests):

* ``speech_encoder``: audio (B, L) → audio_features (B, T_a, 384). The Whisper log-mel front end
  is INSIDE the graph (a DFT as a strided Conv, see ``export/graphs.py``).
* ``denoiser_step``: one guided denoising step. The three CFG branches (full, audio-only, null;
  ``cafetalk_rt.diffusion.guidance``) run as ONE 3B-row batch inside the graph and are combined there.
* ``sampler``: K unrolled DDIM steps of ``denoiser_step`` with the schedule coefficients and the
  update rule inside (paper Eq. 6 combine per step, Song et al. 2021 Eq. 12), noise as input.
* ``end_to_end``: ``speech_encoder`` feeding ``sampler``: waveform in, blendshapes out.

Fine (action-unit) control, for checkpoints with the stage-2 adapter only (``*_au`` graphs,
separate files so the plain graphs stay lean): the plain graph's inputs plus ``au``
(B, T, n_AU) float32 in [0, 1] (``cafetalk_rt.control.au.AU_NAMES`` order, metadata ``au_vocabulary``),
``au_mask`` (B, T) bool and ``au_guidance_scale`` (B,) float32, computing what
``TorchBackend.sample(fine=...)`` computes:

* ``denoiser_step_au``: one step of ``cafetalk_rt.diffusion.guidance.anchored_fine_denoiser``. Inputs
  ``x_t`` (controlled trajectory) and ``x_t_uncontrolled``; ONE 7B-row batch: the three CFG
  branches and the fine branch (adapter on) at ``x_t``, the three branches at
  ``x_t_uncontrolled``. Outputs ``x0_pred`` = anchor ⊙ x0_c + (1 − anchor) ⊙ x0_u, with x0_c the
  Eq. 6 combine plus β · Z ⊙ (G_ACF − G_AC), and ``x0_pred_uncontrolled`` = x0_u. With
  active = (au > 0) ∧ au_mask (B, T, n_AU): Z (B, T, 52) = min(1, active @ R) and anchor
  (B, 1, 52) = max over T of min(1, active @ A), R and A constant (n_AU, 52) matrices
  (``cafetalk_rt.control.au.region_matrix``, ``anchor_matrix``), both computed inside the graph.
* ``sampler_au`` / ``end_to_end_au``: the K-step fused sampler on that step; both trajectories
  start from the same ``noise`` and the output is the controlled one.

A row whose ``au_mask`` is all false gets exactly the uncontrolled trajectory (anchor 0).

CFG off (``*_cond`` graphs, for requests with both guidance scales at 1): the plain graph's
inputs less ``guidance_scale`` and ``audio_guidance_scale``; each step evaluates only the fully
conditioned branch (B rows instead of 3B), x0 = G_AC, which is what the plain graphs return at
s_a = s_c = 1 at a third of the denoiser work (``denoiser_step_cond``, ``sampler_cond``,
``end_to_end_cond``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from cafetalk_rt.control.au import NUM_AUS
from cafetalk_rt.backends import base
from cafetalk_rt.backends.base import AU_VARIANTS, COND_VARIANTS, GRAPH_FORMAT
from cafetalk_rt.blendshapes import NUM_BLENDSHAPES

OPSET = 18  # TensorRT 8.6-10.x parse opset 18; LayerNormalization needs >= 17.
AUDIO_FEATURE_DIM = 384  # Whisper tiny.en d_model

#: Dynamic axes: name → (min, opt, max). The TensorRT profiles and torch.export ``Dim`` bounds are
#: both derived from these. 30 s of audio is the speech encoder's limit (1500 feature frames).
DIMS: dict[str, tuple[int, int, int]] = {
    "batch": (1, 1, 16),
    "num_samples": (1, 80_000, 480_000),  # L, 16 kHz samples (5 s optimum, 30 s maximum)
    "num_frames": (1, 125, 750),  # T, frames at the model fps (25)
    "num_feature_frames": (1, 250, 1500),  # T_a, 50 Hz speech-encoder frames
}


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: ``shape`` holds ints and names from :data:`DIMS`."""

    name: str
    dtype: str  # numpy dtype name
    shape: tuple[int | str, ...]
    doc: str

    def to_dict(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape), "doc": self.doc}


def _t(name: str, dtype: str, shape: tuple, doc: str) -> TensorSpec:
    return TensorSpec(name, dtype, shape, doc)


AUDIO = _t("audio", "float32", ("batch", "num_samples"),
           "mono waveform at 16 kHz, nominally in [-1, 1]; rows of a batch share one length L")
AUDIO_FEATURES = _t("audio_features", "float32", ("batch", "num_feature_frames", AUDIO_FEATURE_DIM),
                    "Whisper tiny.en encoder features at 50 Hz, T_a = ceil(L / 320)")
X_T = _t("x_t", "float32", ("batch", "num_frames", NUM_BLENDSHAPES),
         "noisy blendshapes in normalised model units at timestep t")
TIMESTEP = _t("timestep", "int64", ("batch",), "training timestep t in [0, num_train_timesteps)")
NOISE = _t("noise", "float32", ("batch", "num_frames", NUM_BLENDSHAPES),
           "x_T, standard normal noise; T = max(1, round(L / 640)) frames at 25 fps")
EMOTION = _t("emotion", "int64", ("batch",), "index into metadata 'emotions' (0 = neutral)")
INTENSITY = _t("intensity", "float32", ("batch",), "emotion intensity level, 1.0, 2.0 or 3.0")
GUIDANCE_SCALE = _t("guidance_scale", "float32", ("batch",), "CFG scale s_c of the emotion condition; 1 = off")
AUDIO_GUIDANCE_SCALE = _t("audio_guidance_scale", "float32", ("batch",), "CFG scale s_a of the audio; 1 = off")
X0_PRED = _t("x0_pred", "float32", ("batch", "num_frames", NUM_BLENDSHAPES),
             "guided x0 prediction in normalised units (blendshapes = x0 * bs_std + bs_mean)")
BLENDSHAPES = _t("blendshapes", "float32", ("batch", "num_frames", NUM_BLENDSHAPES),
                 "ARKit blendshapes in [0, 1], order of metadata 'blendshape_names', at metadata 'fps'")

CONDITIONS = (EMOTION, INTENSITY, GUIDANCE_SCALE, AUDIO_GUIDANCE_SCALE)
#: The CFG-off graphs' conditions: no guidance scales (both are 1: the conditional branch alone).
COND_CONDITIONS = (EMOTION, INTENSITY)
X0_PRED_COND = _t("x0_pred", "float32", ("batch", "num_frames", NUM_BLENDSHAPES),
                  "x0 prediction of the fully conditioned branch (CFG off) in normalised units")

AU = _t("au", "float32", ("batch", "num_frames", NUM_AUS),
        "AU intensities in [0, 1] per frame (metadata 'au_vocabulary' order); 0 = no control on that AU")
AU_MASK = _t("au_mask", "bool", ("batch", "num_frames"),
             "true on frames that carry an AU condition (Z of Eq. 6); all false = no fine control")
AU_GUIDANCE_SCALE = _t("au_guidance_scale", "float32", ("batch",),
                       "strength beta of the AU condition inside the mask; 0 = off, 1 = conditional model")
AU_CONDITIONS = (AU, AU_MASK, AU_GUIDANCE_SCALE)
X_T_UNCONTROLLED = _t("x_t_uncontrolled", "float32", ("batch", "num_frames", NUM_BLENDSHAPES),
                      "noisy blendshapes of the uncontrolled trajectory (same x_T as x_t, region anchoring)")
X0_PRED_AU = _t("x0_pred", "float32", ("batch", "num_frames", NUM_BLENDSHAPES),
                "guided x0 of the controlled trajectory, anchored: uncontrolled x0 outside the active AUs' regions")
X0_PRED_UNCONTROLLED = _t("x0_pred_uncontrolled", "float32", ("batch", "num_frames", NUM_BLENDSHAPES),
                          "guided x0 of the uncontrolled trajectory (no AU condition)")


@dataclass(frozen=True)
class GraphSpec:
    """Inputs and outputs of one exported graph, in order."""

    kind: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]


GRAPHS: dict[str, GraphSpec] = {
    "speech_encoder": GraphSpec("speech_encoder", (AUDIO,), (AUDIO_FEATURES,)),
    "denoiser_step": GraphSpec("denoiser_step", (X_T, TIMESTEP, AUDIO_FEATURES, *CONDITIONS), (X0_PRED,)),
    "sampler": GraphSpec("sampler", (NOISE, AUDIO_FEATURES, *CONDITIONS), (BLENDSHAPES,)),
    "end_to_end": GraphSpec("end_to_end", (AUDIO, NOISE, *CONDITIONS), (BLENDSHAPES,)),
    "denoiser_step_au": GraphSpec("denoiser_step_au", (X_T, X_T_UNCONTROLLED, TIMESTEP, AUDIO_FEATURES, *CONDITIONS,
                                                       *AU_CONDITIONS), (X0_PRED_AU, X0_PRED_UNCONTROLLED)),
    "sampler_au": GraphSpec("sampler_au", (NOISE, AUDIO_FEATURES, *CONDITIONS, *AU_CONDITIONS), (BLENDSHAPES,)),
    "end_to_end_au": GraphSpec("end_to_end_au", (AUDIO, NOISE, *CONDITIONS, *AU_CONDITIONS), (BLENDSHAPES,)),
    "denoiser_step_cond": GraphSpec("denoiser_step_cond", (X_T, TIMESTEP, AUDIO_FEATURES, *COND_CONDITIONS),
                                    (X0_PRED_COND,)),
    "sampler_cond": GraphSpec("sampler_cond", (NOISE, AUDIO_FEATURES, *COND_CONDITIONS), (BLENDSHAPES,)),
    "end_to_end_cond": GraphSpec("end_to_end_cond", (AUDIO, NOISE, *COND_CONDITIONS), (BLENDSHAPES,)),
}
assert tuple(GRAPHS) == base.GRAPH_KINDS
#: Graphs whose computation depends on K (the others are exported once per model).
PER_K = ("sampler", "end_to_end", "sampler_au", "end_to_end_au", "sampler_cond", "end_to_end_cond")
#: Fine-control graphs: exported only for checkpoints with the stage-2 adapter.
AU_KINDS = tuple(AU_VARIANTS.values())
#: CFG-off graphs (one branch).
COND_KINDS = tuple(COND_VARIANTS.values())
#: What each fused graph is composed from.
STEP_OF = {"sampler": "denoiser_step", "sampler_au": "denoiser_step_au", "sampler_cond": "denoiser_step_cond"}
SAMPLER_OF = {"end_to_end": "sampler", "end_to_end_au": "sampler_au", "end_to_end_cond": "sampler_cond"}
PRECISIONS = ("fp32", "fp16")


def graph_filename(kind: str, precision: str, num_inference_steps: int | None = None) -> str:
    """File name of an exported graph, e.g. ``sampler_k4.fp16.onnx``.

    Raises:
        ValueError: unknown kind or precision, or a per-K graph without K.
    """
    if kind not in GRAPHS or precision not in PRECISIONS:
        raise ValueError(f"unknown graph {kind!r}/{precision!r}; kinds {list(GRAPHS)}, precisions {PRECISIONS}")
    if kind in PER_K:
        if not num_inference_steps:
            raise ValueError(f"graph {kind!r} needs num_inference_steps (K)")
        return base.graph_filename(kind, precision, num_inference_steps)
    return base.graph_filename(kind, precision)


def dynamic_axes(spec: TensorSpec) -> dict[int, str]:
    """{axis: dim name} of a tensor's dynamic axes."""
    return {i: d for i, d in enumerate(spec.shape) if isinstance(d, str)}


def torch_dynamic_shapes(kind: str) -> dict[str, dict]:
    """``dynamic_shapes`` for ``torch.onnx.export(..., dynamo=True)``: one ``torch.export.Dim``
    per dim name with the :data:`DIMS` bounds (imports torch)."""
    import torch

    dims = {name: torch.export.Dim(name, min=lo, max=hi) for name, (lo, _, hi) in DIMS.items()}
    return {t.name: {axis: dims[d] for axis, d in dynamic_axes(t).items()} for t in GRAPHS[kind].inputs}


def shape_profile(kind: str, which: str) -> dict[str, tuple[int, ...]]:
    """Concrete input shapes at the ``which`` ∈ {"min", "opt", "max"} point of :data:`DIMS`.

    The audio length and frame counts move together (L = 640 T, T_a = 2 T) at "opt" and "max".
    """
    k = ("min", "opt", "max").index(which)
    return {t.name: tuple(DIMS[d][k] if isinstance(d, str) else d for d in t.shape) for t in GRAPHS[kind].inputs}


def tensorrt_profiles(kind: str) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """{input name: (min, opt, max) shape} for ``IOptimizationProfile.set_shape`` (shape inputs
    only; every input here is an execution tensor)."""
    lo, opt, hi = (shape_profile(kind, w) for w in ("min", "opt", "max"))
    return {name: (lo[name], opt[name], hi[name]) for name in lo}


def io_metadata(kind: str) -> str:
    """JSON written to metadata key ``cafetalk.io``: {"inputs": {name: spec}, "outputs": {…}}."""
    g = GRAPHS[kind]
    return json.dumps({"format": GRAPH_FORMAT, "dims": {k: list(v) for k, v in DIMS.items()},
                       "inputs": {t.name: t.to_dict() for t in g.inputs},
                       "outputs": {t.name: t.to_dict() for t in g.outputs}})


def contract_markdown() -> str:
    """The I/O contract as Markdown tables (the README section is generated from this)."""
    rows = []
    for kind, g in GRAPHS.items():
        rows.append(f"\n**{kind}**\n\n| | name | dtype | shape | meaning |\n|---|---|---|---|---|")
        for io, ts in (("in", g.inputs), ("out", g.outputs)):
            for t in ts:
                shape = "(" + ", ".join(str(d) for d in t.shape) + ("," if len(t.shape) == 1 else "") + ")"
                rows.append(f"| {io} | `{t.name}` | {t.dtype} | {shape} | {t.doc} |")
    return "\n".join(rows) + "\n"
