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
                       "cafetalk_end_to_end_k2_trt/config.pbtxt", "cafetalk_end_to_end_k2_trt/BUILD.md"}
    assert "export tensorrt" in (repo / "cafetalk_end_to_end_k2_trt" / "BUILD.md").read_text()
    validate((repo / "cafetalk_end_to_end_k2_trt" / "config.pbtxt").read_text())
    assert write_repository(ckpt, repo, **kw) == []  # up to date: nothing rewritten
