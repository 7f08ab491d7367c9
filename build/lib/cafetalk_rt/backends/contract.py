"""The I/O contract of every exported graph: the ONE place that writes tensor names, dtypes,
dynamic axes and TensorRT (min, opt, max) shape profiles (style.md, "Who does what").

Pure data, importable without torch: graph kinds, tensor specs, axis profiles, the format
version, file names, metadata keys and the one metadata record :class:`GraphMetadata`
(whisper's ``ModelDimensions`` habit: one declaration, written into every artefact by
``export/onnx_export.py`` with :meth:`GraphMetadata.to_metadata` and read back by the runtime with
:meth:`GraphMetadata.from_metadata`). The exporter, the TensorRT builder, the Triton writer and
the runtime all read this module; the docs' contract table is :func:`contract_markdown`
(``python -m cafetalk_rt.backends.contract`` prints it; a test keeps docs/export.md in step).

Graphs (all inputs carry the batch axis first, so Triton can batch requests):

* ``speech_encoder``: audio (B, L) → audio_features (B, T_a, 384). The Whisper log-mel front end
  is INSIDE the graph (a DFT as a strided Conv, ``cafetalk_rt/nn/log_mel.py``).
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
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from cafetalk_rt.blendshapes import NUM_BLENDSHAPES
from cafetalk_rt.control.au import NUM_AUS

#: Version of the graph contract this runtime speaks. Bump it whenever an exported graph's
#: inputs, outputs or computation change: graphs of another format are treated as stale.
#: History: 2 (2026-11-27): the AU graphs' constant anchor table changed (a lower-face AU no
#: longer frees the mouth channels other AUs own), so cached AU graphs of format 1 are stale.
GRAPH_FORMAT = "cafetalk_rt/graph/2"
#: The exported graphs; the sampler and end-to-end graphs exist once per K. The ``*_au`` graphs
#: are the fine-control (AU) variants, exported only for checkpoints with the stage-2 adapter;
#: the ``*_cond`` graphs are the CFG-off variants (both guidance scales 1: only the fully
#: conditioned branch, B rows instead of 3B).
GRAPH_KINDS = ("speech_encoder", "denoiser_step", "sampler", "end_to_end",
               "denoiser_step_au", "sampler_au", "end_to_end_au",
               "denoiser_step_cond", "sampler_cond", "end_to_end_cond")
#: Plain graph → its AU variant: the same inputs plus ``au``, ``au_mask``, ``au_guidance_scale``.
AU_VARIANTS = {"denoiser_step": "denoiser_step_au", "sampler": "sampler_au", "end_to_end": "end_to_end_au"}
#: Plain graph → its CFG-off variant: the same inputs less ``guidance_scale`` and
#: ``audio_guidance_scale`` (x0 = G_AC, which the plain graph also returns at s_a = s_c = 1).
COND_VARIANTS = {"denoiser_step": "denoiser_step_cond", "sampler": "sampler_cond", "end_to_end": "end_to_end_cond"}

# Metadata keys of the graph's identity (ONNX ``metadata_props``; a ``.json`` sidecar for
# TensorRT engines). The other keys are the field names of :class:`GraphMetadata`.
KEY_FORMAT = "cafetalk.format"
KEY_GRAPH = "cafetalk.graph"
KEY_IO = "cafetalk.io"
KEY_PRECISION = "cafetalk.precision"
KEY_MODEL_SHA256 = "model_sha256"


class StaleGraphError(RuntimeError):
    """An exported graph does not match the checkpoint, K, precision or runtime it is used with."""


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
assert tuple(GRAPHS) == GRAPH_KINDS
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
        return f"{kind}_k{int(num_inference_steps)}.{precision}.onnx"
    return f"{kind}.{precision}.onnx"


def dynamic_axes(spec: TensorSpec) -> dict[int, str]:
    """{axis: dim name} of a tensor's dynamic axes."""
    return {i: d for i, d in enumerate(spec.shape) if isinstance(d, str)}


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


def contract_markdown() -> str:
    """The I/O contract as Markdown tables (docs/export.md holds them; tests/test_layout.py checks)."""
    rows = []
    for kind, g in GRAPHS.items():
        rows.append(f"\n**{kind}**\n\n| | name | dtype | shape | meaning |\n|---|---|---|---|---|")
        for io, ts in (("in", g.inputs), ("out", g.outputs)):
            for t in ts:
                shape = "(" + ", ".join(str(d) for d in t.shape) + ("," if len(t.shape) == 1 else "") + ")"
                rows.append(f"| {io} | `{t.name}` | {t.dtype} | {shape} | {t.doc} |")
    return "\n".join(rows) + "\n"


def _json_list(x) -> str:
    return json.dumps([float(v) for v in x] if isinstance(x, np.ndarray) else list(x))


@dataclass(frozen=True)
class GraphMetadata:
    """The metadata every exported graph carries: written by the exporter with
    :meth:`to_metadata`, parsed and validated by the runtime with :meth:`from_metadata`.

    Attributes:
        kind: one of ``GRAPH_KINDS``.
        precision: "fp32" or "fp16" (compute precision; graph I/O is float32/int64/bool either way).
        model_sha256: SHA-256 of the checkpoint the graph was exported from.
        fps: model frame rate (frames per second) of ``num_frames`` axes.
        sample_rate: audio sample rate in Hz of ``audio`` inputs (16 000).
        feature_rate_hz: speech-encoder frame rate (50 Hz).
        num_inference_steps: K of a sampler / end-to-end graph, else None.
        timesteps: (K,) the solver's training timesteps, descending; () if not a sampler.
        solver: "ddim" for the fused samplers, "" otherwise.
        prediction_type, schedule, num_train_timesteps: sampling setup of the model.
        guidance: the graph's CFG combine, in words.
        blendshape_names, emotions, au_vocabulary: channel, emotion-index and AU names (the
            ``au`` input's last axis in AU graphs, ``cafetalk_rt.control.au.AU_NAMES``; () in the others).
        bs_mean, bs_std: (52,) float32 data normalisation: blendshapes = x0 · bs_std + bs_mean.
        model_config: the checkpoint's model config as JSON; speech_encoder: its encoder name.
        exporter: versions of the tools that wrote the graph.
        inputs, outputs: {tensor name: {"name", "dtype", "shape", "doc"}} (:data:`GRAPHS`).
        format: :data:`GRAPH_FORMAT` of the writer.
    """

    kind: str
    precision: str
    model_sha256: str
    fps: int
    sample_rate: int
    num_inference_steps: int | None
    timesteps: tuple[int, ...]
    prediction_type: str
    schedule: str
    num_train_timesteps: int
    blendshape_names: tuple[str, ...]
    emotions: tuple[str, ...]
    au_vocabulary: tuple[str, ...]
    bs_mean: np.ndarray = field(repr=False)
    bs_std: np.ndarray = field(repr=False)
    feature_rate_hz: float = 50.0
    solver: str = ""
    guidance: str = ""
    model_config: str = "{}"
    speech_encoder: str = ""
    exporter: str = ""
    inputs: dict = field(default_factory=dict, repr=False)
    outputs: dict = field(default_factory=dict, repr=False)
    format: str = GRAPH_FORMAT

    @classmethod
    def for_graph(cls, kind: str, **values: Any) -> "GraphMetadata":
        """A record for graph ``kind`` with its I/O from :data:`GRAPHS` (the exporter's entry)."""
        g = GRAPHS[kind]
        return cls(kind=kind, inputs={t.name: t.to_dict() for t in g.inputs},
                   outputs={t.name: t.to_dict() for t in g.outputs}, **values)

    def to_metadata(self) -> dict[str, str]:
        """{key: string} for ONNX ``metadata_props`` (or a TensorRT engine's JSON sidecar)."""
        k = self.num_inference_steps
        return {
            KEY_FORMAT: self.format, KEY_GRAPH: self.kind, KEY_PRECISION: self.precision,
            KEY_IO: json.dumps({"format": self.format, "dims": {d: list(v) for d, v in DIMS.items()},
                                "inputs": self.inputs, "outputs": self.outputs}),
            KEY_MODEL_SHA256: self.model_sha256, "fps": str(self.fps), "sample_rate": str(self.sample_rate),
            "feature_rate_hz": f"{self.feature_rate_hz:g}", "num_inference_steps": str(k) if k else "",
            "solver": self.solver, "timesteps": json.dumps([int(t) for t in self.timesteps]),
            "prediction_type": self.prediction_type, "schedule": self.schedule,
            "num_train_timesteps": str(self.num_train_timesteps), "guidance": self.guidance,
            "blendshape_names": _json_list(self.blendshape_names), "emotions": _json_list(self.emotions),
            "au_vocabulary": _json_list(self.au_vocabulary), "bs_mean": _json_list(np.asarray(self.bs_mean)),
            "bs_std": _json_list(np.asarray(self.bs_std)), "model_config": self.model_config,
            "speech_encoder": self.speech_encoder, "exporter": self.exporter,
        }

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str], *, source: str = "graph") -> "GraphMetadata":
        """Parse and validate a graph's metadata (the inverse of :meth:`to_metadata`).

        Raises:
            StaleGraphError: the graph was written for another contract version (re-export it),
                or lacks cafetalk metadata (not one of ours).
        """
        fmt = metadata.get(KEY_FORMAT)
        if fmt != GRAPH_FORMAT:
            raise StaleGraphError(f"{source}: graph format {fmt!r}, this runtime reads {GRAPH_FORMAT!r}; "
                                  "re-export it with `cafetalk-rt export onnx`")
        try:
            io = json.loads(metadata[KEY_IO])
            k = metadata.get("num_inference_steps", "")
            return cls(
                kind=metadata[KEY_GRAPH], precision=metadata[KEY_PRECISION], model_sha256=metadata[KEY_MODEL_SHA256],
                fps=int(metadata["fps"]), sample_rate=int(metadata["sample_rate"]),
                feature_rate_hz=float(metadata.get("feature_rate_hz", "50")), num_inference_steps=int(k) if k else None,
                timesteps=tuple(json.loads(metadata.get("timesteps", "[]"))), solver=metadata.get("solver", ""),
                prediction_type=metadata["prediction_type"], schedule=metadata["schedule"],
                num_train_timesteps=int(metadata["num_train_timesteps"]), guidance=metadata.get("guidance", ""),
                blendshape_names=tuple(json.loads(metadata["blendshape_names"])),
                emotions=tuple(json.loads(metadata["emotions"])),
                au_vocabulary=tuple(json.loads(metadata["au_vocabulary"])),
                bs_mean=np.asarray(json.loads(metadata["bs_mean"]), np.float32),
                bs_std=np.asarray(json.loads(metadata["bs_std"]), np.float32),
                model_config=metadata.get("model_config", "{}"), speech_encoder=metadata.get("speech_encoder", ""),
                exporter=metadata.get("exporter", ""), inputs=io["inputs"], outputs=io["outputs"], format=fmt)
        except (KeyError, ValueError) as e:
            raise StaleGraphError(f"{source}: incomplete cafetalk metadata ({e!r}); re-export it") from None

    def check(self, *, kind: str, precision: str, model_sha256: str | None = None,
              num_inference_steps: int | None = None, source: str = "graph") -> "GraphMetadata":
        """Raise :class:`StaleGraphError` unless this is the graph asked for (kind, precision, K,
        and, when given, the checkpoint hash); returns ``self``."""
        want = {"kind": kind, "precision": precision, "num_inference_steps": num_inference_steps}
        if model_sha256 is not None:
            want["model_sha256"] = model_sha256
        got = {k: getattr(self, k) for k in want}
        if got != want:
            diff = ", ".join(f"{k}: {got[k]!r} != {want[k]!r}" for k in want if got[k] != want[k])
            raise StaleGraphError(f"{source}: stale or wrong graph ({diff})")
        return self

    def feed(self, **arrays: Any) -> dict[str, np.ndarray]:
        """Arrays keyed by the graph's own input names, cast to the dtypes its metadata declares.

        Raises:
            StaleGraphError: the graph's inputs differ from the given names (contract mismatch).
        """
        if set(arrays) != set(self.inputs):
            raise StaleGraphError(f"{self.kind} graph inputs {sorted(self.inputs)} != fed {sorted(arrays)}")
        return {name: np.ascontiguousarray(arrays[name], dtype=spec["dtype"]) for name, spec in self.inputs.items()}


if __name__ == "__main__":  # the docs table: python -m cafetalk_rt.backends.contract
    print(contract_markdown(), end="")
