"""Build the fused K-step sampler and the end-to-end graph from exported ONNX graphs.

Why compose instead of exporting the unrolled PyTorch loop: the dynamo exporter's time grows
with the unrolled graph (K = 4 took 146 s and K = 10 took 359 s on our 2-core CPU for the small
model, against ~20 s for one step), while copying the exported step graph K times takes well
under a second and gives the same nodes (parity is tested against PyTorch).

The solver is not re-written here: :func:`cafetalk_rt.diffusion.samplers.sample_ddim` is array-agnostic,
so it runs on :class:`Value` handles whose ``+ - * /`` append ONNX nodes, and its
``denoiser(x, t)`` call inlines one copy of the ``denoiser_step`` graph with ``timestep`` = t.
The result has no Loop/If/Scan: every step is straight-line code sharing one set of weights.
The AU variants (``sampler_au``, ``end_to_end_au``) are composed the same way from
``denoiser_step_au``, the solver state stacking the controlled and the uncontrolled trajectory.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from cafetalk_rt.diffusion.samplers import sample_ddim
from cafetalk_rt.diffusion.schedule import NoiseSchedule, inference_timesteps
from cafetalk_rt.backends import contract

_DTYPES = {"float32": TensorProto.FLOAT, "int64": TensorProto.INT64, "bool": TensorProto.BOOL}


class Value:
    """A tensor in a :class:`GraphBuilder`; arithmetic with Values, floats and numpy arrays
    appends ONNX nodes (numpy constants become float32 initializers)."""

    __array_ufunc__ = None  # make ``ndarray * Value`` defer to Value.__rmul__

    def __init__(self, builder: "GraphBuilder", name: str):
        self.builder, self.name = builder, name

    def _bin(self, op: str, other, reverse: bool = False) -> "Value":
        other = other if isinstance(other, Value) else self.builder.const(other)
        a, b = (other, self) if reverse else (self, other)
        return self.builder.op(op, a, b)

    def __add__(self, o): return self._bin("Add", o)
    def __radd__(self, o): return self._bin("Add", o, True)
    def __sub__(self, o): return self._bin("Sub", o)
    def __rsub__(self, o): return self._bin("Sub", o, True)
    def __mul__(self, o): return self._bin("Mul", o)
    def __rmul__(self, o): return self._bin("Mul", o, True)
    def __truediv__(self, o): return self._bin("Div", o)


class GraphBuilder:
    """Collects nodes and initializers of a new graph; inputs/outputs follow ``io_spec``."""

    def __init__(self, kind: str):
        self.spec = contract.GRAPHS[kind]
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: dict[str, onnx.TensorProto] = {}
        self._count = 0
        self.inputs = {t.name: Value(self, t.name) for t in self.spec.inputs}

    def fresh(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, value, dtype=np.float32) -> Value:
        name = self.fresh("const")
        self.initializers[name] = numpy_helper.from_array(np.asarray(value, dtype=dtype), name)
        return Value(self, name)

    def op(self, op_type: str, *inputs: Value, **attrs) -> Value:
        """Append one single-output node; returns its output."""
        return self.op_n(op_type, 1, *inputs, **attrs)[0]

    def op_n(self, op_type: str, count: int, *inputs: Value, **attrs) -> list[Value]:
        """Append one node with ``count`` outputs (e.g. Split); returns them in order."""
        name = self.fresh(op_type.lower())
        outs = [name] if count == 1 else [f"{name}_{i}" for i in range(count)]
        self.nodes.append(helper.make_node(op_type, [v.name for v in inputs], outs, name=name, **attrs))
        return [Value(self, o) for o in outs]

    def inline(self, model: onnx.ModelProto, feed: dict[str, Value], prefix: str, weights_prefix: str) -> dict[str, Value]:
        """Append a copy of ``model``'s graph, its inputs bound to ``feed``; returns its outputs.

        Intermediate names get ``prefix``; initializers get ``weights_prefix`` and are added once,
        so K copies of one step share its weights.
        """
        g = model.graph
        init_names = {t.name for t in g.initializer}
        rename = {i.name: feed[i.name].name for i in g.input}
        rename.update({n: weights_prefix + n for n in init_names})
        for t in g.initializer:
            if weights_prefix + t.name not in self.initializers:
                copy = onnx.TensorProto()
                copy.CopyFrom(t)
                copy.name = weights_prefix + t.name
                self.initializers[copy.name] = copy
        for node in g.node:
            if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
                raise ValueError(f"cannot inline control flow ({node.op_type}) from {model.graph.name}")
            new = onnx.NodeProto()
            new.CopyFrom(node)
            new.name = prefix + node.name
            new.ClearField("metadata_props")  # the exporter's per-node provenance, K times over
            new.ClearField("doc_string")
            new.ClearField("input")
            new.ClearField("output")
            new.input.extend(rename.get(x, prefix + x) if x else "" for x in node.input)
            new.output.extend(rename.setdefault(x, prefix + x) for x in node.output)
            self.nodes.append(new)
        return {o.name: Value(self, rename[o.name]) for o in g.output}

    def finish(self, outputs: dict[str, Value], like: onnx.ModelProto) -> onnx.ModelProto:
        """The model: graph I/O typed from ``io_spec``; opset and IR version of ``like``."""
        for name, v in outputs.items():  # rename each result onto its contract name
            self.nodes.append(helper.make_node("Identity", [v.name], [name], name=f"output/{name}"))

        def info(t: contract.TensorSpec):
            return helper.make_tensor_value_info(t.name, _DTYPES[t.dtype], list(t.shape))

        graph = helper.make_graph(self.nodes, f"cafetalk_{self.spec.kind}", [info(t) for t in self.spec.inputs],
                                  [info(t) for t in self.spec.outputs], list(self.initializers.values()))
        model = helper.make_model(graph, opset_imports=list(like.opset_import), ir_version=like.ir_version)
        model.producer_name, model.producer_version = "cafetalk_rt.export", like.producer_version
        return model


def build_sampler(step: onnx.ModelProto, num_inference_steps: int, schedule: NoiseSchedule,
                  bs_mean: np.ndarray, bs_std: np.ndarray, *, kind: str = "sampler") -> onnx.ModelProto:
    """Fuse K DDIM steps (trailing timesteps, ``inference_timesteps``) of ``step`` into one graph.

    Inputs/outputs: ``contract.GRAPHS[kind]``, ``kind`` "sampler" (``step`` = ``denoiser_step``)
    or "sampler_au" (``step`` = ``denoiser_step_au``). For "sampler_au" the solver state stacks
    the controlled and the uncontrolled trajectory, (2B, T, 52), both starting from ``noise``
    (``cafetalk_rt.diffusion.guidance.anchored_fine_denoiser``); each step splits it into the step graph's
    ``x_t`` / ``x_t_uncontrolled`` and the result is the controlled half. After the last step the
    x0 prediction is denormalised (x0 · bs_std + bs_mean, (52,) float32 each) and clipped to [0, 1].
    """
    b = GraphBuilder(kind)
    inp = b.inputs
    au = kind == "sampler_au"
    batch_shape = b.op("Shape", inp["emotion"])  # (1,) int64 = [B]
    calls = iter(range(num_inference_steps))
    conds = {k: inp[k] for k in contract.GRAPHS[kind].input_names if k != "noise"}

    def denoiser(x: Value, t: int) -> Value:
        timestep = b.op("Expand", b.const(np.array([t]), np.int64), batch_shape)  # (B,)
        x_in = dict(zip(("x_t", "x_t_uncontrolled"), halves(x))) if au else {"x_t": x}
        out = b.inline(step, {**x_in, "timestep": timestep, **conds}, prefix=f"step{next(calls)}/", weights_prefix="denoiser/")
        return b.op("Concat", out["x0_pred"], out["x0_pred_uncontrolled"], axis=0) if au else out["x0_pred"]

    def halves(x: Value) -> list[Value]:  # (2B, …) → controlled (B, …), uncontrolled (B, …)
        return b.op_n("Split", 2, x, axis=0, num_outputs=2)

    timesteps = inference_timesteps(num_inference_steps, schedule.num_train_timesteps)
    x_start = b.op("Concat", inp["noise"], inp["noise"], axis=0) if au else inp["noise"]
    x0 = sample_ddim(denoiser, x_start, timesteps, schedule)  # the runtime's own solver
    if au:
        x0 = halves(x0)[0]
    blend = x0 * np.asarray(bs_std, np.float32) + np.asarray(bs_mean, np.float32)
    out = b.op("Clip", blend, b.const(0.0), b.const(1.0))
    return b.finish({"blendshapes": out}, like=step)


def build_end_to_end(encoder: onnx.ModelProto, sampler: onnx.ModelProto, *, kind: str = "end_to_end") -> onnx.ModelProto:
    """``encoder`` feeding ``sampler``: audio + conditions + noise → blendshapes, one graph.
    ``kind`` "end_to_end" (``sampler`` = a "sampler" graph) or "end_to_end_au" ("sampler_au")."""
    b = GraphBuilder(kind)
    inp = b.inputs
    feats = b.inline(encoder, {"audio": inp["audio"]}, prefix="encoder/", weights_prefix="encoder/")
    feed = {k: inp[k] for k in contract.GRAPHS[contract.SAMPLER_OF[kind]].input_names if k != "audio_features"}
    out = b.inline(sampler, {**feed, "audio_features": feats["audio_features"]}, prefix="sampler/", weights_prefix="sampler/")
    return b.finish({"blendshapes": out["blendshapes"]}, like=sampler)
