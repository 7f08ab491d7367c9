"""TensorRT: a CPU check that every op and dtype of the exported graphs is one TensorRT's ONNX
parser supports (``export/tensorrt_support.py``), and engine tests marked ``tensorrt`` that are
skipped, and reported as skipped, where TensorRT or a GPU is missing (that is: on every machine
this repository has been run on so far)."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

pytest.importorskip("onnxruntime")
pytest.importorskip("torch")

from cafetalk_rt.backends.contract import GraphMetadata  # noqa: E402
from cafetalk_rt.backends import contract  # noqa: E402
from export.onnx_export import export_onnx  # noqa: E402
from export.tensorrt_support import SOURCE, SUPPORTED_OPS, unsupported  # noqa: E402
from export.testing import write_tiny_checkpoint  # noqa: E402


@pytest.fixture(scope="module")
def tiny_graphs(tmp_path_factory):
    """Every plain graph kind in both precisions (shared with test_export_onnx: up-to-date files
    stay; the tiny model has no adapter, so no AU graphs)."""
    root = tmp_path_factory.getbasetemp()
    ckpt = write_tiny_checkpoint(root / "tiny.safetensors")
    export_onnx(ckpt, root / "tiny_graphs", num_inference_steps=(2,), precisions=("fp32", "fp16"))
    return root / "tiny_graphs"


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("kind", [k for k in contract.GRAPHS if k not in contract.AU_KINDS])  # AU graphs: test_export_au.py
def test_every_op_and_dtype_is_supported_by_tensorrt(tiny_graphs, kind, precision):
    path = tiny_graphs / contract.graph_filename(kind, precision, 2)
    assert unsupported(onnx.load(str(path))) == [], f"see {SOURCE}"


def test_support_check_catches_problems():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])
    axes = helper.make_tensor_value_info("axes", TensorProto.INT64, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    z = helper.make_tensor_value_info("z", TensorProto.UINT16, None)
    nodes = [helper.make_node("Unique", ["x"], ["u"]), helper.make_node("Unsqueeze", ["x", "axes"], ["y"]),
             helper.make_node("Cast", ["x"], ["z"], to=TensorProto.UINT16)]
    model = helper.make_model(helper.make_graph(nodes, "bad", [x, axes], [y, z]), opset_imports=[helper.make_opsetid("", 18)])
    problems = "\n".join(unsupported(model))
    assert "Unique" in problems and "build-time constant" in problems and "UINT16" in problems


def test_support_table_has_what_our_graphs_rely_on():
    for op in ("LayerNormalization", "Conv", "MatMul", "Softmax", "Erf", "ArgMin", "Expand", "Clip"):
        assert "FLOAT16" in SUPPORTED_OPS[op] or op == "ArgMin"
    assert "Loop" in SUPPORTED_OPS  # supported by TensorRT, but our graphs must not use it (ORT CUDA graphs)


def test_profiles_are_ordered_and_named_like_the_graph_inputs():
    for kind, spec in contract.GRAPHS.items():
        profiles = contract.tensorrt_profiles(kind)
        assert list(profiles) == spec.input_names
        for lo, opt, hi in profiles.values():
            assert all(a <= b <= c for a, b, c in zip(lo, opt, hi))


def test_backend_needs_a_cuda_device():
    from cafetalk_rt.backends import load_backend

    with pytest.raises(ValueError, match="--device cuda"):
        load_backend("tensorrt", "unused.safetensors", device="cpu")


@pytest.mark.tensorrt
def test_engine_matches_onnxruntime(tiny_graphs, tmp_path):
    """fp16 engine of the fused sampler against ONNX Runtime fp32 (≤ 1e-2, the fp16 bound)."""
    pytest.importorskip("tensorrt", reason="TensorRT is not installed")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from cafetalk_rt.backends.onnxruntime_backend import OnnxRuntimeRunner
    from cafetalk_rt.backends.tensorrt_backend import TensorRTRunner
    from cafetalk_rt.backends.tensorrt_build import ensure_engine

    plan = ensure_engine(tiny_graphs / contract.graph_filename("sampler", "fp16", 2), cache_dir=tmp_path)
    trt_run = TensorRTRunner(plan)
    ort_run = OnnxRuntimeRunner(tiny_graphs / contract.graph_filename("sampler", "fp32", 2))
    info = GraphMetadata.from_metadata(ort_run.metadata)
    rng = np.random.default_rng(0)
    feed = info.feed(noise=rng.standard_normal((2, 50, 52)), audio_features=rng.standard_normal((2, 100, 384)),
                     emotion=[1, 5], intensity=[2, 3], guidance_scale=[1.5, 2.0], audio_guidance_scale=[1.0, 1.2])
    assert sorted(trt_run.input_names) == sorted(info.inputs)
    got, ref = trt_run(feed)["blendshapes"], ort_run(feed)["blendshapes"]
    assert np.abs(got - ref).max() <= 1e-2
    assert ensure_engine(tiny_graphs / contract.graph_filename("sampler", "fp16", 2), cache_dir=tmp_path) == plan  # cached


@pytest.mark.tensorrt
def test_tensorrt_backend_animates(tmp_path):
    pytest.importorskip("tensorrt", reason="TensorRT is not installed")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from cafetalk_rt.options import AnimateOptions
    from cafetalk_rt.pipeline import Animator

    audio = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    ref = Animator(backend="torch").animate(audio, AnimateOptions(num_inference_steps=4)).blendshapes
    got = Animator(backend="tensorrt", device="cuda").animate(audio, AnimateOptions(num_inference_steps=4)).blendshapes
    assert np.abs(got - ref).max() <= 1e-2


def test_streaming_graph_is_buildable_by_tensorrt(tmp_path_factory, animator):
    """The live-streaming graph TensorRT would build (fp16 export, as ``--backend tensorrt`` asks
    for it) uses only supported ops and dtypes, and its profile varies only the batch; the shipped
    fp32 one too."""
    from cafetalk_rt.backends.streaming_contract import DEFAULT_LAYOUT, StreamingLayout, graph_io, tensorrt_profiles
    from cafetalk_rt.backends.tensorrt_build import _profiles
    from export.onnx_export import read_metadata
    from export.streaming_export import export_streaming

    root = tmp_path_factory.getbasetemp()
    ckpt = write_tiny_checkpoint(root / "tiny.safetensors")
    layout = StreamingLayout(lookahead_frames=2, past_frames=3, encoder_context_frames=2)
    (path,) = export_streaming(ckpt, root / "tiny_streaming", [layout], precision="fp16")
    assert unsupported(onnx.load(str(path))) == [], f"see {SOURCE}"
    shipped = animator.backend.streaming_step(DEFAULT_LAYOUT).path
    assert unsupported(onnx.load(str(shipped))) == [], f"see {SOURCE}"
    profiles = _profiles("streaming_step", read_metadata(path))
    assert profiles == tensorrt_profiles(layout)
    assert list(profiles) == [t.name for t in graph_io(layout)[0]]
    for lo, opt, hi in profiles.values():
        assert lo[0] == 1 <= opt[0] <= hi[0] and lo[1:] == opt[1:] == hi[1:]
