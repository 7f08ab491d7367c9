"""Export a denoiser checkpoint (and its speech encoder) to the ONNX graphs of the I/O contract
(:mod:`cafetalk_rt.backends.contract`).

``speech_encoder`` and ``denoiser_step`` come from ``torch.onnx.export(..., dynamo=True,
dynamic_shapes=...)``; ``sampler`` (K fused steps) and ``end_to_end`` are composed from them
(``export/compose.py``). Every file gets the metadata of :func:`graph_metadata`; a file whose
metadata already matches (format, graph, precision, K, checkpoint hash) is not rebuilt.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import onnx

from cafetalk_rt.control.au import AU_NAMES
from cafetalk_rt.backends.contract import KEY_FORMAT, KEY_GRAPH, KEY_IO, KEY_MODEL_SHA256, KEY_PRECISION
from cafetalk_rt.backends.cache import file_sha256
from cafetalk_rt.options import DEFAULT_NUM_INFERENCE_STEPS
from cafetalk_rt.blendshapes import ARKIT_NAMES
from cafetalk_rt.control.emotions import EMOTIONS
from cafetalk_rt.frames import FEATURE_RATE_HZ, SAMPLE_RATE
from cafetalk_rt.diffusion.schedule import inference_timesteps, make_schedule
from cafetalk_rt.backends import contract
from export import io_spec

log = logging.getLogger(__name__)

#: What each graph is built from (exported first, into the same directory).
DEPENDS = {**{kind: (step,) for kind, step in contract.STEP_OF.items()},
           **{kind: ("speech_encoder", sampler) for kind, sampler in contract.SAMPLER_OF.items()}}
#: Metadata ``guidance`` of the CFG-off graphs.
GUIDANCE_COND = "CFG off: x0 = G_AC, the fully conditioned branch alone (B rows)"
#: Metadata ``guidance``: the combine formula of a graph's CFG.
GUIDANCE = "x0 = G_null + s_a (G_A - G_null) + s_c (G_AC - G_A); branches [full, audio_only, null] in one 3B batch"
GUIDANCE_AU = (GUIDANCE[: GUIDANCE.index(";")] + " + beta Z (G_ACF - G_AC), Z = min(1, ((au > 0) & au_mask) @ "
               "region_matrix); x0_pred = x0_u + anchor (x0_c - x0_u), anchor = max_T min(1, ((au > 0) & au_mask) "
               "@ anchor_matrix); rows [full, audio_only, null, "
               "fine] at x_t + [full, audio_only, null] at x_t_uncontrolled in one 7B batch")


@dataclass(frozen=True)
class ExportResult:
    """One graph file: ``skipped`` = an up-to-date file was already there; ``seconds`` spent."""

    path: Path
    kind: str
    precision: str
    num_inference_steps: int | None
    skipped: bool
    seconds: float


def graph_metadata(kind: str, precision: str, model, model_sha256: str,
                   num_inference_steps: int | None) -> contract.GraphMetadata:
    """The :class:`~cafetalk_rt.backends.contract.GraphMetadata` of one graph of ``model``
    (written with ``to_metadata()``); ``au_vocabulary`` lists ``cafetalk_rt.control.au.AU_NAMES``
    for the AU graphs, () for the others."""
    cfg = model.config
    au_graph = kind in contract.AU_KINDS
    k = num_inference_steps if kind in contract.PER_K else None
    import onnxscript
    import torch

    return contract.GraphMetadata.for_graph(
        kind, precision=precision, model_sha256=model_sha256, fps=int(cfg.fps), sample_rate=SAMPLE_RATE,
        feature_rate_hz=float(FEATURE_RATE_HZ), num_inference_steps=k, solver="ddim" if k else "",
        timesteps=tuple(int(t) for t in inference_timesteps(k, cfg.num_train_timesteps)) if k else (),
        prediction_type=cfg.prediction_type, schedule=cfg.schedule, num_train_timesteps=int(cfg.num_train_timesteps),
        guidance=GUIDANCE_AU if au_graph else GUIDANCE_COND if kind in contract.COND_KINDS else GUIDANCE,
        blendshape_names=tuple(ARKIT_NAMES), emotions=tuple(EMOTIONS), au_vocabulary=tuple(AU_NAMES) if au_graph else (),
        bs_mean=model.bs_mean.float().numpy(), bs_std=model.bs_std.float().numpy(),
        model_config=json.dumps(cfg.to_dict()), speech_encoder=cfg.speech_encoder,
        exporter=f"torch {torch.__version__}, onnxscript {onnxscript.__version__}, opset {contract.OPSET}")


def read_metadata(path: Path) -> dict[str, str]:
    """Metadata props of an ONNX file ({} if it is missing or unreadable)."""
    try:
        m = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - a truncated or foreign file is simply not up to date
        return {}
    return {p.key: p.value for p in m.metadata_props}


def is_up_to_date(path: Path, meta: dict[str, str]) -> bool:
    """True when ``path`` exists and carries the same identity keys as ``meta``."""
    if not path.is_file():
        return False
    have = read_metadata(path)
    keys = (KEY_FORMAT, KEY_GRAPH, KEY_PRECISION, KEY_MODEL_SHA256, "num_inference_steps", KEY_IO)
    return all(have.get(k) == meta[k] for k in keys)


def export_torch_graph(module, kind: str):
    """``torch.onnx.export(module, dynamo=True)`` with the names and dynamic axes of the contract;
    the exporter's progress prints go to the debug log. Returns the ``onnx.ModelProto``."""
    import torch

    from export.graphs import example_inputs

    spec = contract.GRAPHS[kind]
    chatter = io.StringIO()
    with contextlib.redirect_stdout(chatter), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation chatter, not ours to fix
        program = torch.onnx.export(module.eval(), example_inputs(kind), dynamo=True,
                                    dynamic_shapes=io_spec.torch_dynamic_shapes(kind), input_names=spec.input_names,
                                    output_names=spec.output_names, opset_version=contract.OPSET, verbose=False)
    log.debug("%s", chatter.getvalue())
    model = program.model_proto
    for vi, t in zip(model.graph.output, spec.outputs):  # derived axes get the contract's names,
        for dim, d in zip(vi.type.tensor_type.shape.dim, t.shape):  # e.g. "((num_samples + 319)//320)"
            if isinstance(d, str):
                dim.dim_param = d
    return model


def _save(model: onnx.ModelProto, path: Path, meta: dict[str, str]) -> None:
    del model.metadata_props[:]
    for k, v in meta.items():
        model.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(model)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    onnx.save(model, str(tmp))
    tmp.replace(path)  # atomic: a reader never sees half a file


class _Exporter:
    """Builds graphs for one checkpoint into ``out_dir``, each at most once per run."""

    def __init__(self, model_path: Path, out_dir: Path, force: bool):
        from cafetalk_rt.nn.checkpoint import load_denoiser

        self.model_path, self.out_dir, self.force = model_path, out_dir, force
        self.sha = file_sha256(model_path)
        self.model = load_denoiser(model_path)
        self.schedule = make_schedule(self.model.config.schedule, self.model.config.num_train_timesteps)
        self.results: dict[Path, ExportResult] = {}
        self.requested: set[Path] = set()  # the files asked for (``force`` applies to these)

    def ensure(self, kind: str, precision: str, k: int | None) -> Path:
        """Build one graph unless up to date (``force`` rebuilds requested graphs, not their
        up-to-date dependencies)."""
        k = k if kind in contract.PER_K else None
        path = self.out_dir / contract.graph_filename(kind, precision, k)
        if path in self.results:
            return path
        meta = graph_metadata(kind, precision, self.model, self.sha, k).to_metadata()
        t0 = time.perf_counter()
        skipped = not (self.force and path in self.requested) and is_up_to_date(path, meta)
        if skipped:
            log.info("%s is up to date, not rebuilt", path)
        else:
            deps = [self.ensure(d, precision, k) for d in DEPENDS.get(kind, ())]
            log.info("exporting %s", path)
            _save(self._build(kind, precision, k, deps), path, meta)
        self.results[path] = ExportResult(path, kind, precision, k, skipped, time.perf_counter() - t0)
        return path

    def _build(self, kind: str, precision: str, k: int | None, deps: list[Path]) -> onnx.ModelProto:
        import torch

        from export import compose
        from export.graphs import ConditionalDenoiserStep, GuidedDenoiserStep, GuidedDenoiserStepAU, SpeechEncoderGraph

        dtype = {"fp32": torch.float32, "fp16": torch.float16}[precision]
        if kind == "speech_encoder":
            from cafetalk_rt.nn.speech_encoder import build_speech_encoder

            if self.model.config.speech_encoder != "whisper-tiny.en":
                raise ValueError(f"export supports the whisper-tiny.en speech encoder, not {self.model.config.speech_encoder!r}")
            return export_torch_graph(SpeechEncoderGraph(build_speech_encoder(), dtype), kind)
        steps = {"denoiser_step": GuidedDenoiserStep, "denoiser_step_au": GuidedDenoiserStepAU,
                 "denoiser_step_cond": ConditionalDenoiserStep}
        if kind in steps:
            return export_torch_graph(steps[kind](copy.deepcopy(self.model), self.schedule, dtype), kind)
        if kind in contract.STEP_OF:
            m = self.model
            return compose.build_sampler(onnx.load(str(deps[0])), k, self.schedule,
                                         m.bs_mean.float().numpy(), m.bs_std.float().numpy(), kind=kind)
        return compose.build_end_to_end(onnx.load(str(deps[0])), onnx.load(str(deps[1])), kind=kind)


def export_onnx(model_path: str | Path, out_dir: str | Path, *,
                num_inference_steps: tuple[int, ...] = (DEFAULT_NUM_INFERENCE_STEPS,),
                kinds: tuple[str, ...] = tuple(contract.GRAPHS), precisions: tuple[str, ...] = ("fp32",),
                force: bool = False) -> list[ExportResult]:
    """Write the graphs ``kinds`` × ``precisions`` (× K for per-K graphs) into ``out_dir``.

    Dependencies (``sampler`` needs ``denoiser_step``; ``end_to_end`` needs ``speech_encoder`` and
    ``sampler``; likewise for the ``*_au`` graphs) are written too. Up-to-date files are kept,
    except that ``force`` rebuilds the graphs asked for (dependencies only when they are out of
    date). The AU graphs (``contract.AU_KINDS``) exist only for checkpoints with the fine-control
    adapter: for one without, they are left out of ``kinds`` with a warning.

    Returns:
        one :class:`ExportResult` per file, dependencies included.
    Raises:
        FileNotFoundError: no checkpoint at ``model_path``.
        ValueError: unknown kind or precision, K < 1, a speech encoder that cannot be exported, or
            only AU graphs asked for from a checkpoint without the fine-control adapter.
    """
    bad = [k for k in kinds if k not in contract.GRAPHS] + [p for p in precisions if p not in contract.PRECISIONS]
    if bad or any(int(k) < 1 for k in num_inference_steps):
        raise ValueError(f"bad export request {bad or num_inference_steps}; graphs {list(contract.GRAPHS)}, "
                         f"precisions {contract.PRECISIONS}, K >= 1")
    kinds = exportable_kinds(model_path, kinds)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ex = _Exporter(Path(model_path), out_dir, force)
    wanted = [(kind, p, k) for p in precisions for kind in kinds
              for k in (num_inference_steps if kind in contract.PER_K else (None,))]
    ex.requested = {out_dir / contract.graph_filename(*w) for w in wanted}
    for w in wanted:
        ex.ensure(*w)
    return list(ex.results.values())


def exportable_kinds(model_path: str | Path, kinds: tuple[str, ...]) -> tuple[str, ...]:
    """``kinds`` without the AU graphs when the checkpoint has no fine-control adapter (a
    warning names them); ``kinds`` unchanged otherwise.

    Raises:
        FileNotFoundError: no checkpoint at ``model_path``.
        ValueError: every kind asked for is an AU graph and the checkpoint has no adapter.
    """
    from cafetalk_rt.model_files import has_fine_control

    au = [k for k in kinds if k in contract.AU_KINDS]
    if not Path(model_path).is_file():
        raise FileNotFoundError(f"denoiser checkpoint not found: {model_path}")
    if not au or has_fine_control(model_path):
        return tuple(kinds)
    msg = (f"{Path(model_path).name} has no fine-control adapter (a stage-1 checkpoint), so it has no AU graphs "
           f"({', '.join(au)}); AU control needs a stage-2 checkpoint (python -m train fit-adapter)")
    rest = tuple(k for k in kinds if k not in contract.AU_KINDS)
    if not rest:
        raise ValueError(msg)
    log.warning("%s: exporting %s only", msg, ", ".join(rest))
    return rest


def graph_summary(path: Path) -> dict:
    """{"nodes", "initializers", "bytes", "ops": {op: count}} of an ONNX file (for reports)."""
    m = onnx.load(str(path))
    ops: dict[str, int] = {}
    for n in m.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    return {"nodes": len(m.graph.node), "initializers": len(m.graph.initializer),
            "bytes": path.stat().st_size, "ops": dict(sorted(ops.items(), key=lambda kv: -kv[1]))}

