"""``--backend onnxruntime``: export on first use into a cache keyed by checkpoint hash + K,
agreement with ``--backend torch`` at the same seed, stale-cache detection, clear errors."""
import subprocess
import sys

import numpy as np
import onnx
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("torch")

from cafetalk_rt.backends import load_backend  # noqa: E402
from cafetalk_rt.backends.base import StaleGraphError, graph_filename  # noqa: E402
from cafetalk_rt.backends.cache import ENV_CACHE, file_sha256, graph_dir  # noqa: E402
from cafetalk_rt.cli.main import main  # noqa: E402
from cafetalk_rt.options import AnimateOptions  # noqa: E402
from cafetalk_rt.pipeline import DEFAULT_MODEL, DEMO_CLIP, Animator  # noqa: E402
from cafetalk_rt.writers import load_animation  # noqa: E402


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A fresh export cache for this module (the user's ~/.cache is never touched)."""
    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("ort_cache")
    mp.setenv(ENV_CACHE, str(root))
    yield root
    mp.undo()


@pytest.fixture(scope="module")
def cli_outputs(cache, tmp_path_factory):
    """The user path on a fresh machine: the same `animate` with both backends, same seed."""
    out = tmp_path_factory.mktemp("cli")
    args = [str(DEMO_CLIP), "--num-inference-steps", "2", "--seed", "3", "--emotion", "happy", "--intensity", "3"]
    assert main(["animate", *args, "-o", str(out / "torch.npz")]) == 0
    assert main(["animate", *args, "-o", str(out / "ort.npz"), "--backend", "onnxruntime"]) == 0
    return load_animation(out / "torch.npz")[0], load_animation(out / "ort.npz")[0]


def test_cli_torch_and_onnxruntime_agree(cli_outputs):
    torch_blend, ort_blend = cli_outputs
    assert torch_blend.shape == ort_blend.shape == (77, 52)
    assert np.abs(torch_blend - ort_blend).max() <= 1e-3


def test_first_use_exported_into_hash_keyed_cache(cli_outputs, cache):
    d = graph_dir(file_sha256(DEFAULT_MODEL))
    assert d.parent.parent == cache and d.name == file_sha256(DEFAULT_MODEL)[:16]
    names = {p.name for p in d.glob("*.onnx")}
    assert {"speech_encoder.fp32.onnx", "denoiser_step.fp32.onnx", "sampler_k2.fp32.onnx"} <= names


def test_ddpm_runs_the_step_graph_and_matches_torch(cli_outputs, demo_audio):
    """DDPM: the runtime's own sampler loop drives the denoiser_step graph (same noise)."""
    opts = AnimateOptions(sampler="ddpm", num_inference_steps=3, seed=1, guidance_scale=2.0)
    clip = demo_audio[:20_000]
    ref = Animator(backend="torch").animate(clip, opts).blendshapes
    got = Animator(backend="onnxruntime").animate(clip, opts).blendshapes
    assert np.abs(ref - got).max() <= 1e-3


@pytest.mark.parametrize("sampler", ["ddim", "dpmpp_2m"])
def test_cfg_off_runs_the_one_branch_graphs_and_matches_torch(cli_outputs, demo_audio, sampler):
    """Both guidance scales 1: the *_cond graphs (B rows per step, not 3B), the torch result."""
    opts = AnimateOptions(num_inference_steps=2, seed=2, guidance_scale=1.0, audio_guidance_scale=1.0,
                          emotion="sad", intensity=2, sampler=sampler)
    clip = demo_audio[:24_000]
    anim = Animator(backend="onnxruntime")
    got = anim.animate(clip, opts).blendshapes
    kind = "sampler_cond" if sampler == "ddim" else "denoiser_step_cond"
    assert {k for k, _ in anim.backend._graphs} >= {kind} and "sampler" not in {k for k, _ in anim.backend._graphs}
    assert np.abs(Animator(backend="torch").animate(clip, opts).blendshapes - got).max() <= 1e-3
    anim.backend.close()


def test_backend_reads_model_facts_from_metadata(cli_outputs):
    backend = load_backend("onnxruntime", DEFAULT_MODEL)
    assert backend.config.fps == 25 and backend.config.sample_rate == 16000
    assert backend.config.model_sha256 == file_sha256(DEFAULT_MODEL)
    backend.close()


def _tamper(path, key, value):
    m = onnx.load(str(path))
    for p in m.metadata_props:
        if p.key == key:
            p.value = value
    onnx.save(m, str(path))


def test_stale_cache_detected_and_reexported(cli_outputs, caplog):
    path = graph_dir(file_sha256(DEFAULT_MODEL)) / graph_filename("sampler", "fp32", 2)
    _tamper(path, "model_sha256", "0" * 64)  # as if exported from another checkpoint
    backend = load_backend("onnxruntime", DEFAULT_MODEL)
    with caplog.at_level("WARNING"):
        run, info = backend.graph("sampler", 2)
    assert "stale" in caplog.text and info.model_sha256 == file_sha256(DEFAULT_MODEL)
    backend.close()


def test_wrong_format_is_stale():
    from cafetalk_rt.backends.base import read_graph_info

    with pytest.raises(StaleGraphError, match="re-export"):
        read_graph_info({"cafetalk.format": "cafetalk_rt/graph/0"})


def test_cache_is_keyed_by_checkpoint_hash(tmp_path):
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"model one")
    b.write_bytes(b"model two")
    assert graph_dir(file_sha256(a)) != graph_dir(file_sha256(b))


def test_export_failure_says_how_to_fix(tmp_path, monkeypatch):
    from cafetalk_rt.backends.cache import run_exporter

    with pytest.raises(RuntimeError, match="cafetalk-rt\\[export\\]"):
        run_exporter(tmp_path / "missing.safetensors", tmp_path, ["sampler"], [2], "fp32")


def test_missing_onnxruntime_names_the_extra(monkeypatch):
    from cafetalk_rt.backends.onnxruntime_backend import import_onnxruntime

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match="cafetalk-rt\\[export\\]"):
        import_onnxruntime()


def test_cuda_device_needs_onnxruntime_gpu(tmp_path):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("onnxruntime-gpu is installed here")
    from cafetalk_rt.backends.onnxruntime_backend import OnnxRuntimeRunner

    with pytest.raises(ImportError, match="onnxruntime-gpu"):
        OnnxRuntimeRunner(tmp_path / "x.onnx", device="cuda")


def test_runtime_modules_import_neither_torch_nor_export():
    code = ("import sys, cafetalk_rt.backends.onnxruntime_backend, cafetalk_rt.backends.graph_backend, "
            "cafetalk_rt.backends.tensorrt_backend, cafetalk_rt.cli.export, cafetalk_rt.cli.main; "
            "bad = [m for m in ('torch', 'export', 'train', 'tensorrt') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
