"""Denoiser checkpoints: safetensors weights with the model config in the metadata.

Format ``cafetalk_rt/denoiser/1``: tensors are the ``Denoiser`` state dict (fp32 or fp16);
metadata keys ``format``, ``config`` (JSON of :class:`DenoiserConfig`) and ``info`` (JSON: training
step, corpus hours, …). Model dimensions live in the file, so nothing is re-typed at load time.
A stage-2 checkpoint also holds the fine-control adapter's tensors (``adapter.*``) and its
``adapter_config`` (JSON of :class:`~cafetalk_rt.nn.adapter.AdapterConfig`); stage-1 files have
neither and load unchanged. Likewise the live stream's speech-encoder adapter
(``streaming_encoder.*``, metadata ``streaming_encoder_config``: JSON of
:class:`~cafetalk_rt.nn.streaming_encoder.StreamingEncoderConfig`).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from cafetalk_rt.model_files import read_checkpoint_metadata
from cafetalk_rt.nn.denoiser import Denoiser, DenoiserConfig

FORMAT = "cafetalk_rt/denoiser/1"


def save_denoiser(path: str | Path, model: Denoiser, *, info: dict | None = None, dtype=torch.float32) -> Path:
    """Write ``model`` (weights cast to ``dtype``) with config + ``info`` metadata, atomically."""
    path = Path(path)
    state = {k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).contiguous()
             for k, v in model.state_dict().items()}
    meta = {"format": FORMAT, "config": json.dumps(model.config.to_dict()), "info": json.dumps(info or {})}
    if getattr(model, "adapter", None) is not None:
        meta["adapter_config"] = json.dumps(model.adapter.config.to_dict())
    if getattr(model, "streaming_encoder", None) is not None:
        meta["streaming_encoder_config"] = json.dumps(model.streaming_encoder.config.to_dict())
    tmp = path.with_name(path.name + ".tmp")
    save_file(state, str(tmp), metadata=meta)
    tmp.replace(path)
    return path


def read_metadata(path: str | Path) -> tuple[DenoiserConfig, dict]:
    """(config, info) stored in a checkpoint. Raises ValueError if it is not one of ours."""
    meta = read_checkpoint_metadata(path)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not a cafetalk_rt denoiser checkpoint (format {meta.get('format')!r})")
    return DenoiserConfig.from_dict(json.loads(meta["config"])), json.loads(meta.get("info", "{}"))


def read_adapter_config(path: str | Path):
    """The :class:`~cafetalk_rt.nn.adapter.AdapterConfig` stored in a checkpoint, or None for a
    stage-1 checkpoint (no fine-control adapter)."""
    from cafetalk_rt.nn.adapter import AdapterConfig

    raw = read_checkpoint_metadata(path).get("adapter_config")
    return AdapterConfig.from_dict(json.loads(raw)) if raw else None


def load_denoiser(path: str | Path, *, device: str = "cpu", dtype=torch.float32) -> Denoiser:
    """Build a :class:`Denoiser` from a checkpoint, in eval mode, weights as ``dtype``.

    Raises:
        FileNotFoundError: no such file (says where the default model should be).
        ValueError: not a denoiser checkpoint, or weights that do not match the stored config.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"denoiser checkpoint not found: {path}")
    config, _ = read_metadata(path)
    model = Denoiser(config)
    adapter_config = read_adapter_config(path)
    if adapter_config is not None:
        model.attach_adapter(adapter_config)
    streaming = read_checkpoint_metadata(path).get("streaming_encoder_config")
    if streaming:
        from cafetalk_rt.nn.streaming_encoder import StreamingEncoderConfig

        model.attach_streaming_encoder(StreamingEncoderConfig.from_dict(json.loads(streaming)))
    state = load_file(str(path))
    missing, unexpected = model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not match config (missing {missing}, unexpected {unexpected})")
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)
