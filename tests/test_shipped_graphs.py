"""The default model's ONNX graphs shipped in the package (``cafetalk_rt/assets/graphs``, built by
``python -m export ship``): they belong to the shipped checkpoint, stay within the size budget,
lose nothing to the fp16 storage, and match the torch backend on real speech within 1e-3."""
import json

import numpy as np
import pytest

from cafetalk_rt.backends.cache import file_sha256
from cafetalk_rt.backends.contract import GRAPH_FORMAT, GraphMetadata, graph_filename
from cafetalk_rt.model_files import DEFAULT_MODEL, SHIPPED_GRAPHS, SHIPPED_GRAPHS_DIR, WEIGHTS_FILE
from cafetalk_rt.options import DEFAULT_NUM_INFERENCE_STEPS, AnimateOptions

#: The issue's budget for what the shipped graphs add to the package.
from cafetalk_rt.backends.streaming_contract import LAYOUTS  # noqa: E402

MAX_SHIPPED_BYTES = 60 * 10**6


def test_manifest_names_the_shipped_checkpoint():
    manifest = json.loads((SHIPPED_GRAPHS_DIR / "manifest.json").read_text())
    assert manifest["model_sha256"] == file_sha256(DEFAULT_MODEL), (
        "the shipped graphs were built from another checkpoint: rebuild them with `python -m export ship`")
    assert manifest["format"] == GRAPH_FORMAT
    assert [tuple(g) for g in manifest["graphs"]] == [tuple(g) for g in SHIPPED_GRAPHS]
    assert manifest["streaming"] == [layout.filename() for layout in LAYOUTS.values()]
    on_disk = {p.name: p.stat().st_size for p in SHIPPED_GRAPHS_DIR.iterdir() if p.name != "manifest.json"}
    assert on_disk == manifest["bytes"]
    assert sum(on_disk.values()) <= MAX_SHIPPED_BYTES
    # One shared copy of the weights in fp16 (Whisper tiny.en encoder 8.2 M + denoiser with adapter
    # 9.6 M parameters, 2 bytes each: 35.6 MB; a copy per graph would be > 100 MB), plus the 8.6 MB
    # of denoiser matrices the streaming graphs' exporter laid out differently (transposed), so
    # content deduplication cannot share them; graph files hold structure only.
    assert 30e6 < on_disk.pop(WEIGHTS_FILE) < 40e6  # the transposed denoiser matrices are stored once
    assert all(size < 2e6 for size in on_disk.values()), on_disk


@pytest.mark.parametrize("kind,k", SHIPPED_GRAPHS)
def test_each_shipped_graph_carries_the_checkpoint_hash(kind, k):
    from cafetalk_rt.backends.onnxruntime_backend import OnnxRuntimeRunner

    run = OnnxRuntimeRunner(SHIPPED_GRAPHS_DIR / graph_filename(kind, "fp32", k))
    meta = GraphMetadata.from_metadata(run.metadata).check(kind=kind, precision="fp32", num_inference_steps=k,
                                                           model_sha256=file_sha256(DEFAULT_MODEL))
    assert meta.fps == 25 and meta.bs_mean.shape == (52,)
    assert run.input_names == list(meta.inputs) and run.output_names == list(meta.outputs)


def test_packing_keeps_every_number(tmp_path):
    """fp16 storage only for tensors that survive the round trip; the rest stays fp32, and the
    packed graph computes bit-identically."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    from export.ship import pack_graphs

    exact = np.arange(1024, dtype=np.float32).reshape(32, 32) / 64  # fp16-exact
    inexact = np.random.default_rng(0).standard_normal((32, 32)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "a"], ["y"]), helper.make_node("MatMul", ["y", "b"], ["z"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 32])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 32])],
        [numpy_helper.from_array(exact, "a"), numpy_helper.from_array(inexact, "b")])
    src = tmp_path / "g.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(src))
    out = pack_graphs([src, src], tmp_path / "packed")
    packed = onnx.load(str(out[0]), load_external_data=False)
    dtypes = {t.name: t.data_type for t in packed.graph.initializer}
    assert dtypes == {"a__fp16": TensorProto.FLOAT16, "b": TensorProto.FLOAT}
    assert (tmp_path / "packed" / WEIGHTS_FILE).stat().st_size == exact.nbytes // 2 + inexact.nbytes  # a in fp16; once
    x = np.random.default_rng(1).standard_normal((2, 32)).astype(np.float32)
    want = ort.InferenceSession(str(src)).run(None, {"x": x})[0]
    got = ort.InferenceSession(str(out[0])).run(None, {"x": x})[0]
    np.testing.assert_array_equal(got, want)


@pytest.fixture(scope="module")
def animators():
    pytest.importorskip("torch")
    from cafetalk_rt.pipeline import Animator

    return Animator(backend="onnxruntime"), Animator(backend="torch")


CASES = {
    "emotion, CFG, fused K=4": AnimateOptions(emotion="happy", intensity=3, seed=3),
    "CFG off, fused K=4": AnimateOptions(emotion="sad", intensity=2, seed=4, guidance_scale=1.0),
    "AU spans, fused K=4": AnimateOptions(seed=5, au_spans="AU12=0.8@0.4-2.0,AU1=1.0@1.0-2.5"),
    "host DDIM K=2 on the step graph": AnimateOptions(seed=6, num_inference_steps=2),
    "long audio (windowed)": AnimateOptions(seed=7, emotion="angry"),
}


@pytest.mark.parametrize("case", CASES)
def test_shipped_graphs_match_the_torch_backend_on_real_speech(animators, demo_audio, case):
    """Same seed, same animation: ONNX Runtime on the shipped graphs vs the torch backend on the
    shipped checkpoint, within 1e-3 on every channel and frame of the bundled real recording."""
    assert CASES["emotion, CFG, fused K=4"].num_inference_steps == DEFAULT_NUM_INFERENCE_STEPS
    audio = np.concatenate([demo_audio] * 4) if case.startswith("long") else demo_audio  # 12.4 s: 2 windows
    ort, torch_ = animators
    got = ort.animate(audio, CASES[case]).blendshapes
    want = torch_.animate(audio, CASES[case]).blendshapes
    assert got.shape == want.shape and got.std(axis=0).max() > 0.05  # a moving face, not a constant
    assert np.abs(got - want).max() <= 1e-3
