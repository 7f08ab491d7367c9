"""Proof that the exported graph runs without Python: onnxruntime-node (npm) loads the
end-to-end ONNX and reproduces the Python result (``tests/node/run_graph.mjs``).

npm installs ``tests/node/package-lock.json`` once into the user cache (``npm ci
--ignore-scripts``: the CPU binaries ship in the package; no download scripts run).
"""
import base64
import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("torch")

from cafetalk_rt.backends.contract import GraphMetadata  # noqa: E402
from cafetalk_rt.blendshapes import ARKIT_NAMES  # noqa: E402
from cafetalk_rt.backends.cache import cache_root  # noqa: E402
from cafetalk_rt.backends.onnxruntime_backend import OnnxRuntimeRunner  # noqa: E402
from cafetalk_rt.options import AnimateOptions  # noqa: E402
from cafetalk_rt.backends import contract  # noqa: E402
from export.onnx_export import export_onnx  # noqa: E402
from export.testing import write_tiny_checkpoint  # noqa: E402

NODE_DIR = Path(__file__).parent / "node"
pytestmark = pytest.mark.node


@pytest.fixture(scope="module")
def node_project():
    """A directory with run_graph.mjs and onnxruntime-node installed."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are not installed: the Node.js proof cannot run here")
    lock = (NODE_DIR / "package-lock.json").read_bytes()
    d = cache_root() / "node" / hashlib.sha256(lock).hexdigest()[:16]
    for name in ("package.json", "package-lock.json", "run_graph.mjs", "run_streaming.mjs", "blinks.mjs"):
        d.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(NODE_DIR / name, d / name)
    if not (d / "node_modules" / "onnxruntime-node").is_dir():
        proc = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"], cwd=d,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"npm ci failed:\n{proc.stderr[-3000:]}"
    return d


def _encode(arrays):
    return {k: {"dtype": str(v.dtype), "dims": list(v.shape), "data": base64.b64encode(v.tobytes()).decode()}
            for k, v in arrays.items()}


def _decode(entry):
    return np.frombuffer(base64.b64decode(entry["data"]), dtype=entry["dtype"]).reshape(entry["dims"])


def test_node_reproduces_python_end_to_end(node_project, tmp_path_factory, tmp_path):
    from cafetalk_rt.backends.torch_backend import TorchBackend

    root = tmp_path_factory.getbasetemp()
    ckpt = write_tiny_checkpoint(root / "tiny.safetensors")
    export_onnx(ckpt, root / "tiny_graphs", num_inference_steps=(2,), kinds=("end_to_end",))
    model = root / "tiny_graphs" / contract.graph_filename("end_to_end", "fp32", 2)
    py = OnnxRuntimeRunner(model)
    info = GraphMetadata.from_metadata(py.metadata)
    rng = np.random.default_rng(0)
    audio = (0.2 * rng.standard_normal((1, 20_801))).astype(np.float32)  # 1.3 s: T = 33 frames
    noise = rng.standard_normal((1, 33, 52), dtype=np.float32)
    feed = info.feed(audio=audio, noise=noise, emotion=[5], intensity=[3], guidance_scale=[2.0],
                     audio_guidance_scale=[1.0])
    (tmp_path / "feed.json").write_text(json.dumps(_encode(feed)))
    proc = subprocess.run(["node", "run_graph.mjs", str(model), str(tmp_path / "feed.json"), str(tmp_path / "out.json")],
                          cwd=node_project, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    from_node = _decode(json.loads((tmp_path / "out.json").read_text())["blendshapes"])
    from_python = py(feed)["blendshapes"]
    assert from_node.shape == (1, 33, 52) and from_node.dtype == np.float32
    assert np.abs(from_node - from_python).max() <= 1e-5
    backend = TorchBackend(ckpt)  # and the PyTorch model itself
    ref = backend.sample(backend.encode(audio[0])[None], noise, emotion=5, intensity=3,
                         options=AnimateOptions(num_inference_steps=2, guidance_scale=2.0))
    assert np.abs(from_node - np.clip(ref, 0, 1)).max() <= 1e-4


def test_node_drives_the_streaming_graph_like_python(node_project, animator, demo_audio, tmp_path):
    """Node.js runs the shipped stateful streaming graph chunk by chunk (its own state handling,
    tests/node/run_streaming.mjs), lays the seed's blinks over them (tests/node/blinks.mjs) and
    reproduces Python's LiveStream frames within 1e-4."""
    from cafetalk_rt.backends.streaming_contract import KEY_STREAMING, DEFAULT_LAYOUT
    from cafetalk_rt.longform.live import LiveStream

    audio = demo_audio[:36_000]  # 2.25 s: 56 frames, ends mid-hop
    opts = AnimateOptions(seed=11, num_inference_steps=2, emotion="happy", intensity=2)
    stream = LiveStream(animator, opts)
    frames = [stream.push(audio[i : i + 3000]) for i in range(0, audio.size, 3000)] + [stream.flush()]
    from_python = np.concatenate(frames)
    runner = animator.backend.streaming_step(DEFAULT_LAYOUT)
    graph = runner.path  # the shipped graph file (OnnxRuntimeRunner)
    noise = np.random.default_rng(11).standard_normal((80, 52), dtype=np.float32)  # LiveStream's frame noise
    audio.astype(np.float32).tofile(tmp_path / "audio.f32")
    noise.tofile(tmp_path / "noise.f32")
    from cafetalk_rt.control.emotions import emotion_index

    params = {"layout": json.loads(runner.metadata[KEY_STREAMING]), "emotion": emotion_index("happy"),
              "intensity": 2.0, "guidance_scale": opts.guidance_scale, "seed": opts.seed, "names": list(ARKIT_NAMES)}
    (tmp_path / "params.json").write_text(json.dumps(params))
    proc = subprocess.run(["node", "run_streaming.mjs", str(graph), *(str(tmp_path / n) for n in
                          ("audio.f32", "noise.f32", "params.json", "out.f32"))],
                          cwd=node_project, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    from_node = np.fromfile(tmp_path / "out.f32", np.float32).reshape(-1, 52)
    assert from_node.shape == from_python.shape == (56, 52)
    assert np.abs(from_node - from_python).max() <= 1e-4
