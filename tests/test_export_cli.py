"""``cafetalk-rt export …`` and ``python -m export …``: one set of flags, up-to-date files kept."""
import subprocess
import sys

import pytest

from cafetalk_rt.cli.main import main
from cafetalk_rt.cli.export import COMMANDS, add_commands, to_argv


def test_export_help_needs_no_torch(capsys):
    with pytest.raises(SystemExit) as e:
        main(["export", "onnx", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--num-inference-steps" in out and "--precision" in out


@pytest.mark.parametrize("argv", [
    ["onnx", "--out", "d", "--num-inference-steps", "1", "2", "4", "8", "--precision", "fp32", "fp16", "--force"],
    ["tensorrt", "--graphs", "--onnx", "a.onnx", "b.onnx"],
    ["triton", "--out", "repo", "--platforms", "onnxruntime", "--max-batch-size", "4"],
    ["streaming", "--lookahead-ms", "160", "80", "--past-ms", "320", "--precision", "fp16", "--force"],
])
def test_flags_round_trip_to_the_child_process(argv):
    import argparse

    ap = argparse.ArgumentParser()
    add_commands(ap)
    args = ap.parse_args(argv)
    assert vars(ap.parse_args(to_argv(args))) == vars(args)
    assert set(COMMANDS) == {"onnx", "streaming", "tensorrt", "ship", "triton"}


def test_streaming_export_refuses_partial_frames(capsys):
    from export.cli import main

    assert main(["streaming", "--lookahead-ms", "100"]) == 2
    assert "multiple of 40 ms" in capsys.readouterr().err


def test_python_m_export_keeps_up_to_date_files(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from export.onnx_export import export_onnx
    from export.testing import write_tiny_checkpoint

    root = tmp_path_factory.getbasetemp()
    ckpt = write_tiny_checkpoint(root / "tiny.safetensors")
    export_onnx(ckpt, root / "tiny_graphs", num_inference_steps=(2,), kinds=("sampler",))
    cmd = [sys.executable, "-m", "export", "onnx", "--model", str(ckpt), "--out", str(root / "tiny_graphs"),
           "--graphs", "sampler", "--num-inference-steps", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "sampler_k2.fp32.onnx: up to date, kept" in proc.stdout


def test_export_errors_are_one_line(tmp_path, capfd):
    pytest.importorskip("torch")
    code = main(["export", "onnx", "--model", str(tmp_path / "missing.safetensors"), "--out", str(tmp_path)])
    err = capfd.readouterr().err
    assert code == 2 and "missing.safetensors" in err and "Traceback" not in err
