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
  ``cafetalk_rt.guidance``) run as ONE 3B-row batch inside the graph and are combined there.
* ``sampler``: K unrolled DDIM steps of ``denoiser_step`` with the schedule coefficients and the
  update rule inside (paper Eq. 6 combine per step, Song et al. 2021 Eq. 12), noise as input.
* ``end_to_end``: ``speech_encoder`` feeding ``sampler``: waveform in, blendshapes out.

Action-unit conditions (issue 3) are an extension point, not an input yet. Stage-1 checkpoints
(the shipped one) have no fine-control adapter, so an AU input would be silently ignored; the
graphs are exported without one and the runtime refuses AU spans on exported-graph backends.
For a stage-2 checkpoint the inputs would be, matching ``TorchBackend.sample(fine=...)`` and
``cafetalk_rt.guidance.combine``: ``au`` (B, T, n_AU) float32 in [0, 1] (``cafetalk_rt.au``
order), ``au_mask`` (B, T) bool (Z of Eq. 6) and ``au_guidance_scale`` (B,) float32 (β), with
the fine branch as a fourth batch block (4B rows) in ``denoiser_step``; names reserved in
:data:`RESERVED_INPUTS`, and metadata ``au_vocabulary`` (today ``[]``) would list the AU names.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from cafetalk_rt.backends import base
from cafetalk_rt.backends.base import GRAPH_FORMAT
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

RESERVED_INPUTS = ("au", "au_mask", "au_guidance_scale")


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
}
assert tuple(GRAPHS) == base.GRAPH_KINDS
#: Graphs whose computation depends on K (the others are exported once per model).
PER_K = ("sampler", "end_to_end")
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
