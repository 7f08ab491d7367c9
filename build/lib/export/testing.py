"""Toy checkpoints for export tests and smoke checks: the ``tiny`` config with random weights, and
the shipped model with a random fine-control adapter (for the ``*_au`` graphs).

A freshly initialised :class:`~cafetalk_rt.nn.denoiser.Denoiser` has zero-initialised output and
AdaLN layers (its prediction ignores every input), which would make parity tests pass
vacuously; here every parameter and the data normalisation are random, so each input matters.
"""
from __future__ import annotations

from cafetalk_rt.control.au import AUCondition

from pathlib import Path


def write_tiny_checkpoint(path: str | Path, *, seed: int = 0, prediction_type: str = "x0") -> Path:
    """Write a ``tiny`` denoiser with N(0, 0.1²) weights (same seed → same bytes, same hash).

    ``bs_mean`` ∈ [0.1, 0.5) and ``bs_std`` ∈ [0.05, 0.3) per channel, so the denormalised
    output spans the [0, 1] clip at both ends.
    """
    import dataclasses

    import torch

    from cafetalk_rt.nn.checkpoint import save_denoiser
    from cafetalk_rt.nn.denoiser import CONFIGS, Denoiser

    gen = torch.Generator().manual_seed(seed)
    model = Denoiser(dataclasses.replace(CONFIGS["tiny"], prediction_type=prediction_type))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.1 * torch.randn(p.shape, generator=gen))
        model.bs_mean.copy_(0.1 + 0.4 * torch.rand(52, generator=gen))
        model.bs_std.copy_(0.05 + 0.25 * torch.rand(52, generator=gen))
    return save_denoiser(path, model, info={"note": "random tiny model for export tests", "seed": seed})


def write_adapter_checkpoint(path: str | Path, *, base: str | Path | None = None, seed: int = 0,
                             scale: float = 0.1) -> Path:
    """Write ``base`` (default: the shipped model) with a fine-control adapter whose
    zero-initialised layers (each block's output conv and FiLM) hold N(0, ``scale``²) values, so
    the AU path changes the output (a fresh adapter is an exact no-op). Same seed → same tensors.
    For export tests of the ``*_au`` graphs; the motion it adds means nothing."""
    import torch

    from cafetalk_rt.nn.adapter import AdapterConfig
    from cafetalk_rt.nn.checkpoint import load_denoiser, save_denoiser

    if base is None:
        from cafetalk_rt.pipeline import DEFAULT_MODEL

        base = DEFAULT_MODEL
    model = load_denoiser(base)  # an adapter already in ``base`` is replaced
    with torch.random.fork_rng():  # the adapter's default init draws from the global RNG
        torch.manual_seed(seed)
        model.attach_adapter(AdapterConfig(heads=model.config.heads))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for block in model.adapter.blocks:
            for p in (block.out.weight, block.out.bias, block.film[1].weight, block.film[1].bias):
                p.copy_(scale * torch.randn(p.shape, generator=gen))
    return save_denoiser(path, model, info={"note": "shipped model + random adapter for export tests", "seed": seed})


#: ONNX ops the exported graphs must not contain (they block ORT CUDA graphs, complicate TensorRT).
CONTROL_FLOW = frozenset({"Loop", "If", "Scan", "SequenceMap"})


def control_flow_ops(model) -> set[str]:
    """Control-flow op types in an ``onnx.ModelProto``, plus "subgraph attribute" when a node
    carries a graph attribute (empty for a straight-line graph)."""
    import onnx

    nodes = model.graph.node
    found = CONTROL_FLOW & {n.op_type for n in nodes}
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for n in nodes for a in n.attribute):
        found.add("subgraph attribute")
    return set(found)


def synthetic_audio(n: int, seed: int = 0):
    """(n,) float32 16 kHz: a modulated 180 Hz tone in noise (deterministic per seed)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    return (0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t))
            + 0.05 * rng.standard_normal(n)).astype(np.float32)


def conditions(emotions, intensities, guidance_scales, audio_guidance_scales) -> dict:
    """The per-row condition inputs of the graphs, (B,) each, dtypes of ``io_spec``."""
    import numpy as np

    return {"emotion": np.asarray(emotions, np.int64), "intensity": np.asarray(intensities, np.float32),
            "guidance_scale": np.asarray(guidance_scales, np.float32),
            "audio_guidance_scale": np.asarray(audio_guidance_scales, np.float32)}


def torch_reference(backend, features, noise, conds: dict, num_inference_steps: int):
    """What the sampler graphs compute, row by row through ``TorchBackend.sample`` (DDIM, clipped
    to [0, 1]): features (B, T_a, D_a), noise (B, T, 52), ``conds`` as :func:`conditions`, plus
    ``au`` (B, T, n_AU), ``au_mask`` (B, T) and ``au_guidance_scale`` (B,) for an AU graph.
    Returns (B, T, 52) float32."""
    import numpy as np

    from cafetalk_rt.options import AnimateOptions

    rows = []
    for i in range(noise.shape[0]):
        scales = {k: float(conds[k][i]) for k in ("guidance_scale", "audio_guidance_scale", "au_guidance_scale") if k in conds}
        opt = AnimateOptions(num_inference_steps=num_inference_steps, **scales)
        fine = {"fine": AUCondition(conds["au"][i : i + 1], conds["au_mask"][i : i + 1])} if "au" in conds else {}
        x0 = backend.sample(features[i : i + 1], noise[i : i + 1], emotion=int(conds["emotion"][i]),
                            intensity=int(conds["intensity"][i]), options=opt, **fine)
        rows.append(np.clip(x0, 0.0, 1.0))
    return np.concatenate(rows)
