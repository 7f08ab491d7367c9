"""The backend protocols and the exported-graph metadata the runtime reads (numpy only).

Two layers:

* :class:`GraphRunner` — the one protocol every graph engine implements (style.md habit 4):
  ``__call__(feed) -> dict`` of numpy arrays, ``input_names``, ``output_names``, ``metadata``,
  ``close()``. ONNX Runtime and TensorRT each provide one; a new engine is a new file plus one
  registry entry in :mod:`cafetalk_rt.backends`.
* :class:`Backend` — what :class:`cafetalk_rt.pipeline.Animator` calls: ``encode`` (speech
  features) and ``sample`` (denoise). ``TorchBackend`` implements it directly in PyTorch;
  :class:`cafetalk_rt.backends.graph_backend.GraphBackend` implements it on any GraphRunner.

Every exported graph carries its contract in ONNX metadata (written by ``export/io_spec.py`` and
``export/onnx_export.py``); :func:`read_graph_info` parses and validates it, so the runtime
never re-types a tensor name, a frame rate or a schedule.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping, Protocol, runtime_checkable

import numpy as np

#: Version of the graph contract this runtime speaks. Bump it whenever an exported graph's
#: inputs, outputs or computation change: graphs of another format are treated as stale.
#: History: 2 (2026-11-27): the AU graphs' constant anchor table changed (a lower-face AU no
#: longer frees the mouth channels other AUs own), so cached AU graphs of format 1 are stale.
GRAPH_FORMAT = "cafetalk_rt/graph/2"
#: The exported graphs (their inputs and outputs: ``export/io_spec.py``); the sampler and
#: end-to-end graphs exist once per K. The ``*_au`` graphs are the fine-control (AU) variants,
#: exported only for checkpoints with the stage-2 adapter; the ``*_cond`` graphs are the CFG-off
#: variants (both guidance scales 1: only the fully conditioned branch, B rows instead of 3B).
GRAPH_KINDS = ("speech_encoder", "denoiser_step", "sampler", "end_to_end",
               "denoiser_step_au", "sampler_au", "end_to_end_au",
               "denoiser_step_cond", "sampler_cond", "end_to_end_cond")
#: Plain graph → its AU variant: the same inputs plus ``au``, ``au_mask``, ``au_guidance_scale``.
AU_VARIANTS = {"denoiser_step": "denoiser_step_au", "sampler": "sampler_au", "end_to_end": "end_to_end_au"}
#: Plain graph → its CFG-off variant: the same inputs less ``guidance_scale`` and
#: ``audio_guidance_scale`` (x0 = G_AC, which the plain graph also returns at s_a = s_c = 1).
COND_VARIANTS = {"denoiser_step": "denoiser_step_cond", "sampler": "sampler_cond", "end_to_end": "end_to_end_cond"}

# Metadata keys (ONNX ``metadata_props``; a ``.json`` sidecar for TensorRT engines).
KEY_FORMAT = "cafetalk.format"
KEY_GRAPH = "cafetalk.graph"
KEY_IO = "cafetalk.io"
KEY_PRECISION = "cafetalk.precision"
KEY_MODEL_SHA256 = "model_sha256"


def graph_filename(kind: str, precision: str, num_inference_steps: int | None = None) -> str:
    """File name of an exported graph: ``{kind}.{precision}.onnx``, or ``{kind}_k{K}.{precision}.onnx``
    for graphs that depend on K (the exporter and the cache both use this one convention)."""
    k = f"_k{int(num_inference_steps)}" if num_inference_steps else ""
    return f"{kind}{k}.{precision}.onnx"


class StaleGraphError(RuntimeError):
    """An exported graph does not match the checkpoint, K, precision or runtime it is used with."""


@runtime_checkable
class GraphRunner(Protocol):
    """One loaded graph. ``feed`` maps input names to numpy arrays (dtypes of the contract);
    the result maps every output name to a numpy array on the host."""

    input_names: list[str]
    output_names: list[str]
    metadata: dict[str, str]

    def __call__(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...


class Backend(Protocol):
    """What the pipeline needs from a backend (see ``TorchBackend`` for the reference)."""

    name: str
    config: Any  # has ``fps`` (int): the model's native frame rate

    def encode(self, audio: np.ndarray) -> np.ndarray: ...

    def sample(self, features: np.ndarray, noise: np.ndarray, *, emotion: int, intensity: int,
               options: Any, step_noise: np.ndarray | None = None) -> np.ndarray: ...


@dataclass(frozen=True)
class GraphInfo:
    """The metadata of one exported graph, parsed.

    Attributes:
        kind: one of ``GRAPH_KINDS``.
        precision: "fp32" or "fp16" (compute precision; graph I/O is float32/int64 either way).
        fps: model frame rate (frames per second) of ``num_frames`` axes.
        sample_rate: audio sample rate in Hz of ``audio`` inputs (16 000).
        num_inference_steps: K of a sampler / end-to-end graph, else None.
        timesteps: (K,) the solver's training timesteps, descending; () if not a sampler.
        solver, prediction_type, schedule, num_train_timesteps: sampling setup of the model.
        blendshape_names, emotions, au_vocabulary: channel, emotion-index and AU names (the
            ``au`` input's last axis in AU graphs, ``cafetalk_rt.control.au.AU_NAMES``; () in the others).
        bs_mean, bs_std: (52,) data normalisation: blendshapes = x0 · bs_std + bs_mean.
        inputs, outputs: {tensor name: {"dtype", "shape", "doc"}} from ``export/io_spec.py``.
        model_sha256: SHA-256 of the checkpoint the graph was exported from.
    """

    kind: str
    precision: str
    fps: int
    sample_rate: int
    num_inference_steps: int | None
    timesteps: tuple[int, ...]
    solver: str
    prediction_type: str
    schedule: str
    num_train_timesteps: int
    blendshape_names: tuple[str, ...]
    emotions: tuple[str, ...]
    au_vocabulary: tuple[str, ...]
    bs_mean: np.ndarray
    bs_std: np.ndarray
    inputs: dict[str, dict]
    outputs: dict[str, dict]
    model_sha256: str


def read_graph_info(metadata: Mapping[str, str], *, source: str = "graph") -> GraphInfo:
    """Parse and validate a graph's metadata.

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
        return GraphInfo(
            kind=metadata[KEY_GRAPH], precision=metadata[KEY_PRECISION], fps=int(metadata["fps"]),
            sample_rate=int(metadata["sample_rate"]), num_inference_steps=int(k) if k else None,
            timesteps=tuple(json.loads(metadata.get("timesteps", "[]"))), solver=metadata.get("solver", ""),
            prediction_type=metadata["prediction_type"], schedule=metadata["schedule"],
            num_train_timesteps=int(metadata["num_train_timesteps"]),
            blendshape_names=tuple(json.loads(metadata["blendshape_names"])),
            emotions=tuple(json.loads(metadata["emotions"])),
            au_vocabulary=tuple(json.loads(metadata["au_vocabulary"])),
            bs_mean=np.asarray(json.loads(metadata["bs_mean"]), np.float32),
            bs_std=np.asarray(json.loads(metadata["bs_std"]), np.float32),
            inputs=io["inputs"], outputs=io["outputs"], model_sha256=metadata[KEY_MODEL_SHA256])
    except (KeyError, ValueError) as e:
        raise StaleGraphError(f"{source}: incomplete cafetalk metadata ({e!r}); re-export it") from None


def check_graph(info: GraphInfo, *, kind: str, precision: str, model_sha256: str | None = None,
                num_inference_steps: int | None = None, source: str = "graph") -> GraphInfo:
    """Raise :class:`StaleGraphError` unless ``info`` is the graph asked for (kind, precision, K,
    and, when given, the checkpoint hash); returns ``info``."""
    want = {"kind": kind, "precision": precision, "num_inference_steps": num_inference_steps}
    if model_sha256 is not None:
        want["model_sha256"] = model_sha256
    got = {k: getattr(info, k) for k in want}
    if got != want:
        diff = ", ".join(f"{k}: {got[k]!r} != {want[k]!r}" for k in want if got[k] != want[k])
        raise StaleGraphError(f"{source}: stale or wrong graph ({diff})")
    return info


def make_feed(info: GraphInfo, **arrays: Any) -> dict[str, np.ndarray]:
    """Arrays keyed by the graph's own input names, cast to the dtypes its metadata declares.

    Raises:
        StaleGraphError: the graph's inputs differ from the given names (contract mismatch).
    """
    if set(arrays) != set(info.inputs):
        raise StaleGraphError(f"{info.kind} graph inputs {sorted(info.inputs)} != fed {sorted(arrays)}")
    return {name: np.ascontiguousarray(arrays[name], dtype=spec["dtype"]) for name, spec in info.inputs.items()}
