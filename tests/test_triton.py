"""Triton model repository: configs from io_spec, validated with Triton's own protobuf schema
(``tritonclient.grpc.model_config_pb2``), files skipped when up to date."""
import pytest

pytest.importorskip("tritonclient.grpc.model_config_pb2")
pytest.importorskip("torch")

from google.protobuf import text_format  # noqa: E402

from cafetalk_rt.backends import contract  # noqa: E402
from export.testing import write_tiny_checkpoint  # noqa: E402
from export.triton import config_text, model_name, validate, write_repository  # noqa: E402


@pytest.mark.parametrize("platform", ["onnxruntime", "tensorrt"])
@pytest.mark.parametrize("kind", list(contract.GRAPHS))
def test_configs_parse_with_tritons_schema(kind, platform):
    cfg = validate(config_text(kind, 4, platform, max_batch_size=8))
    assert cfg.name == model_name(kind, 4, platform) and cfg.max_batch_size == 8
    assert cfg.platform == {"onnxruntime": "onnxruntime_onnx", "tensorrt": "tensorrt_plan"}[platform]
    assert [i.name for i in cfg.input] == contract.GRAPHS[kind].input_names
    assert [o.name for o in cfg.output] == contract.GRAPHS[kind].output_names
    assert cfg.HasField("dynamic_batching")


def test_dims_and_types_follow_io_spec():
    from tritonclient.grpc import model_config_pb2 as pb

    cfg = validate(config_text("end_to_end", 10, "onnxruntime"))
    inputs = {i.name: i for i in cfg.input}
    assert list(inputs["audio"].dims) == [-1] and inputs["audio"].data_type == pb.TYPE_FP32
    assert list(inputs["noise"].dims) == [-1, 52]
    assert list(inputs["emotion"].dims) == [1] and inputs["emotion"].data_type == pb.TYPE_INT64
    assert inputs["emotion"].HasField("reshape") and list(inputs["emotion"].reshape.shape) == []
    assert list(cfg.output[0].dims) == [-1, 52]


def test_schema_rejects_a_bad_config():
    bad = config_text("sampler", 2, "onnxruntime").replace("TYPE_FP32", "TYPE_FLOAT32", 1)
    with pytest.raises(text_format.ParseError):
        validate(bad)
    with pytest.raises(ValueError, match="max_batch_size"):
        config_text("sampler", 2, "onnxruntime", max_batch_size=64)


def test_repository_written_then_kept(tmp_path_factory, tmp_path):
    root = tmp_path_factory.getbasetemp()
    ckpt = write_tiny_checkpoint(root / "tiny.safetensors")
    repo = tmp_path / "repo"
    kw = dict(num_inference_steps=(2,), platforms=("onnxruntime", "tensorrt"), onnx_dir=root / "tiny_graphs")
    written = {p.relative_to(repo).as_posix() for p in write_repository(ckpt, repo, **kw)}
    assert written >= {"cafetalk_end_to_end_k2_onnx/config.pbtxt", "cafetalk_end_to_end_k2_onnx/1/model.onnx",
                       "cafetalk_end_to_end_k2_trt/config.pbtxt", "cafetalk_end_to_end_k2_trt/BUILD.md",
                       "cafetalk_streaming_la4_onnx/config.pbtxt", "cafetalk_streaming_la4_onnx/1/model.onnx"}
    assert "export tensorrt" in (repo / "cafetalk_end_to_end_k2_trt" / "BUILD.md").read_text()
    validate((repo / "cafetalk_end_to_end_k2_trt" / "config.pbtxt").read_text())
    assert write_repository(ckpt, repo, **kw) == []  # up to date: nothing rewritten


# ---- live streams under the sequence batcher (implicit state) ------------------------------

def test_streaming_config_uses_the_sequence_batcher_with_implicit_state():
    from cafetalk_rt.backends.streaming_contract import DEFAULT_LAYOUT
    from export.triton_streaming import model_name as streaming_name
    from export.triton_streaming import sequence_config_text

    cfg = validate(sequence_config_text(DEFAULT_LAYOUT))
    assert cfg.name == streaming_name(DEFAULT_LAYOUT) and cfg.HasField("sequence_batching")
    sb = cfg.sequence_batching
    assert [c.name for c in sb.control_input] == ["START", "READY", "END"]
    assert {s.input_name: s.output_name for s in sb.state} == {
        "state_audio": "next_state_audio", "state_features": "next_state_features", "state_frames": "next_state_frames"}
    assert all(s.initial_state[0].zero_data for s in sb.state)
    assert list(sb.state[0].dims) == [DEFAULT_LAYOUT.audio_state_samples]
    names = [i.name for i in cfg.input]
    assert names == ["audio_chunk", "noise", "emotion", "intensity", "condition_mix", "guidance_scale"]
    assert [o.name for o in cfg.output] == ["frames"] and list(cfg.output[0].dims) == [2, 52]


def test_sequence_graph_equals_the_streaming_graph_with_state_fed_back(tmp_path):
    """What Triton does with implicit state, done by hand in ONNX Runtime: START=1 then 0, the
    state outputs fed back; the frames equal the shipped streaming graph's."""
    import numpy as np
    import onnxruntime as ort

    from cafetalk_rt.backends.streaming_contract import DEFAULT_LAYOUT
    from cafetalk_rt.model_files import SHIPPED_GRAPHS_DIR
    from export.streaming_export import example_feeds
    from export.triton_streaming import sequence_graph

    src = SHIPPED_GRAPHS_DIR / DEFAULT_LAYOUT.filename()
    dst = sequence_graph(src, tmp_path / "1" / "model.onnx")
    plain, seq = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (src, dst))
    assert {"START", "READY", "END"} <= {i.name for i in seq.get_inputs()}
    feeds = example_feeds(DEFAULT_LAYOUT, batch=2)
    state = {k: np.zeros_like(v) for k, v in feeds.items() if k.startswith("state_")}
    rng = np.random.default_rng(0)
    for hop in range(4):
        feeds["audio_chunk"] = (0.1 * rng.standard_normal(feeds["audio_chunk"].shape)).astype(np.float32)
        start = np.full((2,), float(hop == 0), np.float32)
        a = plain.run(None, {**feeds, **state, "start": start})
        ctrl = {"START": start[:, None], "READY": np.ones((2, 1), np.float32), "END": np.zeros((2, 1), np.float32)}
        b = seq.run(None, {**{k: v for k, v in feeds.items() if k != "start"}, **state, **ctrl})
        for x, y in zip(a, b):
            assert np.abs(x - y).max() < 1e-6
        state = dict(zip(["state_audio", "state_features", "state_frames"], b[1:]))
