"""Export the stateful live-streaming graph ``streaming_step`` (contract:
:mod:`cafetalk_rt.backends.streaming_contract`) from :class:`cafetalk_rt.nn.streaming.StreamingStep`.

One file per :class:`StreamingLayout`; every shape is fixed except the batch axis (streams), and
the K DDIM steps are unrolled, so the graph has no Loop/If/Scan (checked here). The metadata is
the usual :class:`~cafetalk_rt.backends.contract.GraphMetadata` plus ``cafetalk.streaming`` (the
layout as JSON).
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from pathlib import Path

import onnx

from cafetalk_rt.backends import contract
from cafetalk_rt.backends.cache import file_sha256
from cafetalk_rt.backends.streaming_contract import KEY_STREAMING, KIND, StreamingLayout, graph_io
from cafetalk_rt.blendshapes import ARKIT_NAMES
from cafetalk_rt.control.emotions import EMOTIONS
from cafetalk_rt.diffusion.schedule import inference_timesteps, make_schedule
from cafetalk_rt.frames import FEATURE_RATE_HZ, SAMPLE_RATE

log = logging.getLogger(__name__)

GUIDANCE_STREAMING = ("x0 = G_A + s_c (G_AC - G_A) (s_a = 1); branches [full, audio_only] in one 2B batch; "
                      "coarse embedding = (1 - condition_mix) E(emotion[:,0], intensity[:,0]) + condition_mix "
                      "E(emotion[:,1], intensity[:,1])")
#: Control-flow ops a streaming graph must not contain (non-Python callers and TensorRT run it flat).
CONTROL_FLOW = ("Loop", "If", "Scan")


def streaming_metadata(layout: StreamingLayout, precision: str, model, model_sha256: str) -> dict[str, str]:
    """The metadata props of a ``streaming_step`` graph (GraphMetadata keys + the layout)."""
    import onnxscript
    import torch

    cfg = model.config
    inputs, outputs = graph_io(layout)
    k = layout.num_inference_steps
    meta = contract.GraphMetadata(
        kind=KIND, precision=precision, model_sha256=model_sha256, fps=int(cfg.fps), sample_rate=SAMPLE_RATE,
        feature_rate_hz=float(FEATURE_RATE_HZ), num_inference_steps=k, solver="ddim",
        timesteps=tuple(int(t) for t in inference_timesteps(k, cfg.num_train_timesteps)),
        prediction_type=cfg.prediction_type, schedule=cfg.schedule, num_train_timesteps=int(cfg.num_train_timesteps),
        guidance=GUIDANCE_STREAMING, blendshape_names=tuple(ARKIT_NAMES), emotions=tuple(EMOTIONS), au_vocabulary=(),
        bs_mean=model.bs_mean.float().numpy(), bs_std=model.bs_std.float().numpy(),
        model_config=json.dumps(cfg.to_dict()), speech_encoder=cfg.speech_encoder,
        exporter=f"torch {torch.__version__}, onnxscript {onnxscript.__version__}, opset {contract.OPSET}",
        inputs={t.name: t.to_dict() for t in inputs}, outputs={t.name: t.to_dict() for t in outputs})
    return {**meta.to_metadata(), KEY_STREAMING: layout.to_metadata()}


def example_feeds(layout: StreamingLayout, batch: int = 2, seed: int = 0) -> dict:
    """Random float32/int64 numpy inputs of the graph (a stream mid-way: ``start`` = 0)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    inputs, _ = graph_io(layout)
    feeds = {}
    for t in inputs:
        shape = tuple(batch if d == "batch" else d for d in t.shape)
        if t.dtype == "int64":
            feeds[t.name] = rng.integers(0, len(EMOTIONS), shape).astype(np.int64)
        else:
            feeds[t.name] = rng.standard_normal(shape).astype(np.float32) * 0.1
    feeds["state_frames"] = rng.uniform(0, 0.5, feeds["state_frames"].shape).astype(np.float32)
    feeds["intensity"] = rng.uniform(1, 3, feeds["intensity"].shape).astype(np.float32)
    feeds["condition_mix"] = rng.uniform(0, 1, (batch,)).astype(np.float32)
    feeds["guidance_scale"] = np.full((batch,), 1.5, np.float32)
    feeds["start"] = np.zeros((batch,), np.float32)
    return feeds


def build_streaming_graph(model, layout: StreamingLayout, precision: str = "fp32") -> onnx.ModelProto:
    """``torch.onnx.export(StreamingStep, dynamo=True)`` with a dynamic batch axis.

    Raises:
        ValueError: the exported graph contains Loop/If/Scan.
    """
    import torch

    from cafetalk_rt.nn.speech_encoder import build_speech_encoder
    from cafetalk_rt.nn.streaming import StreamingStep

    dtype = {"fp32": torch.float32, "fp16": torch.float16}[precision]
    schedule = make_schedule(model.config.schedule, model.config.num_train_timesteps)
    module = StreamingStep(build_speech_encoder(), model, schedule, layout, dtype).eval()
    inputs, outputs = graph_io(layout)
    feeds = example_feeds(layout)
    args = tuple(torch.from_numpy(feeds[t.name]) for t in inputs)
    batch = torch.export.Dim("batch", min=1, max=64)
    chatter = io.StringIO()
    with contextlib.redirect_stdout(chatter), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module, args, dynamo=True, dynamic_shapes=tuple({0: batch} for _ in inputs),
                                    input_names=[t.name for t in inputs], output_names=[t.name for t in outputs],
                                    opset_version=contract.OPSET, verbose=False)
    log.debug("%s", chatter.getvalue())
    model_proto = program.model_proto
    for vi in list(model_proto.graph.input) + list(model_proto.graph.output):
        vi.type.tensor_type.shape.dim[0].dim_param = "batch"
    flow = sorted({n.op_type for n in model_proto.graph.node if n.op_type in CONTROL_FLOW})
    if flow:
        raise ValueError(f"the streaming graph must be flat, but it has {flow}")
    return model_proto


def export_streaming(model_path: str | Path, out_dir: str | Path, layouts, *, precision: str = "fp32",
                     force: bool = False) -> list[Path]:
    """Write one ``streaming_step`` graph per layout into ``out_dir`` (kept when up to date).

    Raises:
        FileNotFoundError: no checkpoint at ``model_path``.
    """
    from cafetalk_rt.nn.checkpoint import load_denoiser
    from export.onnx_export import _save, is_up_to_date, read_metadata

    model_path, out_dir = Path(model_path), Path(out_dir)
    if not model_path.is_file():
        raise FileNotFoundError(f"denoiser checkpoint not found: {model_path}")
    out_dir.mkdir(parents=True, exist_ok=True)
    sha = file_sha256(model_path)
    written = []
    for layout in layouts:
        model = load_denoiser(model_path)
        path = out_dir / layout.filename(precision)
        meta = streaming_metadata(layout, precision, model, sha)
        if not force and is_up_to_date(path, meta) and read_metadata(path).get(KEY_STREAMING) == meta[KEY_STREAMING]:
            log.info("%s is up to date, not rebuilt", path)
        else:
            log.info("exporting %s", path)
            _save(build_streaming_graph(model, layout, precision), path, meta)
        written.append(path)
    return written
