"""The streaming step graph under Triton's sequence batcher with implicit state.

``REPO/cafetalk_streaming_la<L>_onnx/`` holds ``config.pbtxt`` and ``1/model.onnx`` (+
``model.onnx.data``): the ``streaming_step`` graph (:mod:`cafetalk_rt.backends.streaming_contract`)
with three changes for Triton's controls, made by :func:`sequence_graph`:

* ``start`` (B,) becomes the control input ``START`` (B, 1) float32 (CONTROL_SEQUENCE_START:
  1 on a sequence's first request, when the graph swaps the state for the silence state);
* ``READY`` and ``END`` (B, 1) float32 control inputs are accepted (Triton feeds them to every
  batch slot; the graph needs neither: an empty slot's row is computed and thrown away, and a
  stream's state is simply dropped after its last request);
* nothing else: the three ``state_*`` inputs and ``next_state_*`` outputs are the sequence
  batcher's implicit state (``sequence_batching.state``), kept by Triton between the requests of
  a sequence and zero at its start.

A client then sends, per hop and per sequence (``sequence_id``, ``sequence_start`` on the first
request, ``sequence_end`` on the last): ``audio_chunk`` [H·640], ``noise`` [P+H+L, 52],
``emotion`` [2] int64, ``intensity`` [2], ``condition_mix`` [1], ``guidance_scale`` [1], and
reads ``frames`` [H, 52] (see docs/live.md "Triton"). The ``oldest`` strategy batches the
requests of different sequences into one call, as ``LiveBatch`` does.

Triton itself cannot run here: the configuration is checked with Triton's own protobuf schema
(``tritonclient``'s ``model_config_pb2``), and the graph with ONNX Runtime by feeding the state
back by hand, as Triton would.
"""
from __future__ import annotations

from pathlib import Path

from cafetalk_rt.backends.streaming_contract import StreamingLayout, graph_io
from export.triton import _TYPES, validate

CONTROLS = (("START", "CONTROL_SEQUENCE_START"), ("READY", "CONTROL_SEQUENCE_READY"), ("END", "CONTROL_SEQUENCE_END"))


def model_name(layout: StreamingLayout) -> str:
    return f"cafetalk_streaming_la{layout.lookahead_frames}_onnx"


def _dims(shape) -> str:
    return ", ".join(str(d) for d in shape[1:])


def sequence_config_text(layout: StreamingLayout, *, max_batch_size: int = 64, max_candidate_sequences: int = 256,
                         max_queue_delay_us: int = 1000, idle_timeout_s: float = 10.0) -> str:
    """config.pbtxt of the streaming graph under the sequence batcher (implicit state)."""
    inputs, outputs = graph_io(layout)
    rows = []
    for t in inputs:
        if t.name == "start" or t.name.startswith("state_"):
            continue  # a control and the implicit state
        if len(t.shape) == 1:
            rows.append(f'  {{ name: "{t.name}" data_type: {_TYPES[t.dtype]} dims: [ 1 ] reshape: {{ shape: [ ] }} }}')
        else:
            rows.append(f'  {{ name: "{t.name}" data_type: {_TYPES[t.dtype]} dims: [ {_dims(t.shape)} ] }}')
    frames = outputs[0]
    controls = ",\n".join(f'    {{ name: "{name}" control [ {{ kind: {kind} fp32_false_true: [ 0, 1 ] }} ] }}'
                          for name, kind in CONTROLS)
    states = ",\n".join(
        f'    {{ input_name: "{t.name}" output_name: "next_{t.name}" data_type: TYPE_FP32 dims: [ {_dims(t.shape)} ]\n'
        f'      initial_state: {{ name: "silence" data_type: TYPE_FP32 dims: [ {_dims(t.shape)} ] zero_data: true }} }}'
        for t in inputs if t.name.startswith("state_"))
    return (f'name: "{model_name(layout)}"\nplatform: "onnxruntime_onnx"\nmax_batch_size: {max_batch_size}\n'
            f"input [\n" + ",\n".join(rows) + "\n]\n"
            f'output [\n  {{ name: "{frames.name}" data_type: TYPE_FP32 dims: [ {_dims(frames.shape)} ] }}\n]\n'
            f"sequence_batching {{\n  max_sequence_idle_microseconds: {int(idle_timeout_s * 1e6)}\n"
            f"  oldest {{ max_candidate_sequences: {max_candidate_sequences} "
            f"max_queue_delay_microseconds: {max_queue_delay_us} }}\n"
            f"  control_input [\n{controls}\n  ]\n  state [\n{states}\n  ]\n}}\n"
            "instance_group [ { kind: KIND_AUTO count: 1 } ]\n")


def sequence_graph(src: Path, dst: Path) -> Path:
    """Write ``src`` (a streaming_step graph, external data allowed) as ``dst`` with the
    START/READY/END control inputs (module docstring); weights go to ``dst``.data.

    Raises:
        ValueError: ``src`` is not a streaming_step graph (no ``start`` input).
    """
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(src), load_external_data=True)
    g = model.graph
    start = next((i for i in g.input if i.name == "start"), None)
    if start is None:
        raise ValueError(f"{src} has no 'start' input: not a streaming_step graph")
    batch = start.type.tensor_type.shape.dim[0].dim_param or "batch"
    g.input.remove(start)
    for name, _ in CONTROLS:
        g.input.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [batch, 1]))
    axes = helper.make_tensor("triton_control_axes", TensorProto.INT64, [1], [1])
    g.initializer.append(axes)
    g.node.insert(0, helper.make_node("Squeeze", ["START", "triton_control_axes"], ["start"], name="triton_start"))
    dst.parent.mkdir(parents=True, exist_ok=True)
    data = dst.with_name(dst.name + ".data")
    if data.exists():
        data.unlink()  # save appends to an existing data file
    onnx.save(model, str(dst), save_as_external_data=True, location=data.name)
    onnx.checker.check_model(str(dst))
    return dst


def write_streaming_models(repo: Path, layouts, graph_for, *, force: bool = False) -> list[Path]:
    """Write ``REPO/<model_name(layout)>/`` for each layout; ``graph_for(layout)`` gives the
    path of its streaming_step graph. Files already up to date (config unchanged, graph newer
    than its source) are kept unless ``force``. Returns the files written; each config is
    validated with Triton's schema first."""
    from export.triton import _write_if_changed

    written = []
    for layout in layouts:
        text = sequence_config_text(layout)
        validate(text)
        folder = repo / model_name(layout)
        if _write_if_changed(folder / "config.pbtxt", text, force):
            written.append(folder / "config.pbtxt")
        src, dst = Path(graph_for(layout)), folder / "1" / "model.onnx"
        if force or not dst.is_file() or dst.stat().st_mtime < src.stat().st_mtime:
            written.append(sequence_graph(src, dst))
    return written
