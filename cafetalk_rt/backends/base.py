"""The backend protocols and the exported-graph metadata the runtime reads (numpy only).

Two layers:

* :class:`GraphRunner` — the one protocol every graph engine implements (style.md habit 4):
  ``__call__(feed) -> dict`` of numpy arrays, ``input_names``, ``output_names``, ``metadata``,
  ``close()``. ONNX Runtime and TensorRT each provide one; a new engine is a new file plus one
  registry entry in :mod:`cafetalk_rt.backends`.
* :class:`Backend` — what :class:`cafetalk_rt.pipeline.Animator` calls: ``encode`` (speech
  features) and ``sample`` (denoise). ``TorchBackend`` implements it directly in PyTorch;
  :class:`cafetalk_rt.backends.graph_backend.GraphBackend` implements it on any GraphRunner.

Every exported graph carries its contract in ONNX metadata: the I/O contract and the metadata
record live in :mod:`cafetalk_rt.backends.contract` (pure data), so the runtime never re-types a
tensor name, a frame rate or a schedule.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol, runtime_checkable

import numpy as np

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
class StepDenoiser:
    """One guided denoising step of a backend, for sampling loops the host drives (the graph
    backends' samplers for a K without a fused graph).

    Attributes:
        denoise: ``denoise(x_t, t) -> x0``: x_t (B, T, 52) float32 in normalised units, ``t`` an
            int training timestep; returns the guided x0 prediction (B, T, 52) float32,
            normalised (paper Eq. 6, one batched call of all CFG branches).
        bs_mean, bs_std: (52,) float32: blendshapes = x0 · bs_std + bs_mean.
        schedule: the model's noise schedule (for the sampler's update rule).
    """

    denoise: Callable[[np.ndarray, int], np.ndarray]
    bs_mean: np.ndarray
    bs_std: np.ndarray
    schedule: Any

    def normalize(self, blendshapes: np.ndarray) -> np.ndarray:
        """(…, 52) blendshapes in ARKit units → normalised x0 units, float32."""
        return ((blendshapes - self.bs_mean) / self.bs_std).astype(np.float32)

    def denormalize(self, x0: np.ndarray) -> np.ndarray:
        """(…, 52) normalised x0 → blendshapes in ARKit units (not clipped), float32."""
        return (x0 * self.bs_std + self.bs_mean).astype(np.float32)
