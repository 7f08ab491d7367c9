"""``--backend onnxruntime`` (the default): the shipped default model runs on its shipped graphs
with nothing exported; another checkpoint's graphs come from ``cafetalk-rt export onnx`` into a
cache keyed by checkpoint hash + K; agreement with ``--backend torch`` at the same seed (fused
K = 4 sampler and the host sampler over the step graph for other K), stale-graph detection,
clear errors that name the fixing command."""
import subprocess
import sys

import numpy as np
import onnx
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("torch")

from cafetalk_rt.backends import load_backend  # noqa: E402
from cafetalk_rt.backends.contract import StaleGraphError, graph_filename  # noqa: E402
from cafetalk_rt.backends.cache import ENV_CACHE, file_sha256, graph_dir  # noqa: E402
from cafetalk_rt.cli.main import main  # noqa: E402
from cafetalk_rt.errors import MissingDependencyError  # noqa: E402
from cafetalk_rt.model_files import SHIPPED_GRAPHS_DIR  # noqa: E402
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


def test_shipped_graphs_used_and_nothing_exported(cli_outputs, cache):
    """The default model needs no export: the CLI run above left the cache empty."""
    assert not any(cache.rglob("*.onnx"))
    backend = load_backend("onnxruntime", DEFAULT_MODEL)
    assert backend.find("denoiser_step").parent == SHIPPED_GRAPHS_DIR
    assert backend.find("sampler", 2) is None  # K = 2: the host sampler over the step graph
    backend.close()


def test_ddpm_runs_the_step_graph_and_matches_torch(cli_outputs, demo_audio):
    """DDPM: the runtime's own sampler loop drives the denoiser_step graph (same noise)."""
    opts = AnimateOptions(sampler="ddpm", num_inference_steps=3, seed=1, guidance_scale=2.0)
    clip = demo_audio[:20_000]
    ref = Animator(backend="torch").animate(clip, opts).blendshapes
    got = Animator(backend="onnxruntime").animate(clip, opts).blendshapes
    assert np.abs(ref - got).max() <= 1e-3


@pytest.mark.parametrize("sampler", ["ddim", "dpmpp_2m"])
def test_cfg_off_runs_the_one_branch_graphs_and_matches_torch(cli_outputs, demo_audio, sampler):
    """Both guidance scales 1: the *_cond graphs (B rows per step, not 3B), the torch result
    (DDIM at the shipped K = 4: the fused sampler_cond graph)."""
    opts = AnimateOptions(num_inference_steps=4 if sampler == "ddim" else 2, seed=2, guidance_scale=1.0, audio_guidance_scale=1.0,
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


@pytest.fixture(scope="module")
def tiny_exported(cache, tmp_path_factory):
    """A checkpoint that is not the shipped one, with its step graphs exported into the cache."""
    from export.onnx_export import export_onnx
    from export.testing import write_tiny_checkpoint

    ckpt = write_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "tiny.safetensors")
    export_onnx(ckpt, graph_dir(file_sha256(ckpt)), num_inference_steps=(2,),
                kinds=("speech_encoder", "denoiser_step", "sampler"), precisions=("fp32",))
    return ckpt


def test_custom_checkpoint_runs_on_its_exported_graphs(tiny_exported, demo_audio):
    opts = AnimateOptions(num_inference_steps=2, seed=5)
    got = Animator(tiny_exported, backend="onnxruntime").animate(demo_audio[:16_000], opts).blendshapes
    ref = Animator(tiny_exported, backend="torch").animate(demo_audio[:16_000], opts).blendshapes
    assert np.abs(ref - got).max() <= 1e-3


def test_missing_graph_names_the_export_command(tiny_exported, demo_audio):
    """CFG off needs denoiser_step_cond, which was not exported: nothing runs behind the user's
    back; the error is the command that writes it."""
    anim = Animator(tiny_exported, backend="onnxruntime")
    with pytest.raises(MissingDependencyError, match="cafetalk-rt export onnx --model .*tiny.safetensors.*denoiser_step_cond"):
        anim.animate(demo_audio[:16_000], AnimateOptions(num_inference_steps=3, guidance_scale=1.0))


def test_stale_graph_detected_with_the_fix(tiny_exported, tmp_path):
    path = graph_dir(file_sha256(tiny_exported)) / graph_filename("sampler", "fp32", 2)
    _tamper(path, "model_sha256", "0" * 64)  # as if exported from another checkpoint
    backend = load_backend("onnxruntime", tiny_exported)
    with pytest.raises(StaleGraphError, match="--force"):
        backend.graph("sampler", 2)
    backend.close()


def test_model_that_is_not_a_checkpoint_gets_one_line(capsys, tmp_path):
    """``--model /etc/passwd`` (and a safetensors file that is not ours): one line, no traceback."""
    from safetensors.numpy import save_file

    other = tmp_path / "other.safetensors"
    save_file({"w": np.zeros(3, np.float32)}, str(other))
    for model in ("/etc/passwd", str(other)):
        out = str(tmp_path / "x.csv")
        assert main(["animate", str(DEMO_CLIP), "-o", out, "--model", model]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "not a cafetalk_rt" in err and "Traceback" not in err, err


def test_wrong_format_is_stale():
    from cafetalk_rt.backends.contract import GraphMetadata

    with pytest.raises(StaleGraphError, match="re-export"):
        GraphMetadata.from_metadata({"cafetalk.format": "cafetalk_rt/graph/0"})


def test_cache_is_keyed_by_checkpoint_hash(tmp_path):
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"model one")
    b.write_bytes(b"model two")
    assert graph_dir(file_sha256(a)) != graph_dir(file_sha256(b))


def test_missing_onnxruntime_names_the_extra(monkeypatch):
    from cafetalk_rt.backends.onnxruntime_backend import import_onnxruntime

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MissingDependencyError, match="pip install onnxruntime"):
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
