"""The benchmark report's arithmetic and schema (benchmarks/): FLOP counts against PyTorch's
FLOP counter, the floor formula, the JSON/markdown writer, and that the paper-style baseline
(separate CFG passes) computes what the engine computes. No timing is checked here."""
import json

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.engine import RowSpec, paper_baseline, paper_baseline_spec
from benchmarks.report import (ROW_FIELDS, TOP_LEVEL_FIELDS, add_speedups, make_row, markdown_table, plan_rows,
                               validate_report, write_report)
from benchmarks.roofline import (DTYPE_BYTES, Cost, EncoderDims, Segment, call_cost, denoiser_gemms, encoder_gemms,
                                 segments, weight_elements)
from cafetalk_rt.frames import num_frames
from cafetalk_rt.nn.denoiser import CONFIGS, Denoiser


def test_denoiser_flops_and_weights_match_the_model():
    cfg = CONFIGS["tiny"]
    model = Denoiser(cfg).eval()
    b, t, ta = 3, 13, 26
    args = (torch.randn(b, t, 52), torch.zeros(b, dtype=torch.int64), torch.randn(b, ta, cfg.audio_dim),
            torch.zeros(b, dtype=torch.int64), torch.ones(b), torch.ones(b), torch.ones(b))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(*args)
    assert sum(g.flops for g in denoiser_gemms(cfg, b, t, ta)) == counter.get_total_flops()
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    assert weight_elements(denoiser_gemms(cfg, 1, 1, 1)) == linear


def test_encoder_flops_match_the_whisper_module():
    from cafetalk_rt.nn.speech_encoder import WhisperEncoderConfig, WhisperEncoderWeights, WhisperSpeechEncoder

    dims = EncoderDims(num_mel_bins=80, d_model=64, encoder_layers=2, encoder_ffn_dim=128)
    enc = WhisperSpeechEncoder(WhisperEncoderWeights(WhisperEncoderConfig(80, 64, 2, 1, 128, 1500)))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        enc(torch.randn(2, 80, 40))  # 2 clips, 20 feature frames
    gemms = encoder_gemms(dims, 2, 20)
    attention = sum(g.flops for g in gemms if g.name.endswith(("scores", "values")))
    # the counter skips CPU flash attention in some torch versions; everything else must agree
    assert counter.get_total_flops() in (sum(g.flops for g in gemms), sum(g.flops for g in gemms) - attention)
    params = sum(p.numel() for n, p in enc.named_parameters() if p.dim() >= 2 and "embed" not in n)
    assert weight_elements(encoder_gemms(dims, 1, 1)) == params


def test_call_cost_and_floor_arithmetic():
    cfg = CONFIGS["tiny"]
    seg = [Segment(count=2, encoder_samples=16000, frames=25, feature_frames=50)]
    den = sum(g.flops for g in denoiser_gemms(cfg, 2 * 3, 25, 50))
    enc = sum(g.flops for g in encoder_gemms(EncoderDims(), 2, 50))
    batched = call_cost(cfg, seg, num_inference_steps=4, branches=3)
    assert batched.flops == enc + 4 * den
    w_den = weight_elements(denoiser_gemms(cfg, 1, 1, 1)) * 4
    separate = call_cost(cfg, seg, num_inference_steps=4, branches=3, separate_branches=True)
    assert separate.flops == batched.flops and separate.bytes - batched.bytes == 4 * 2 * w_den
    half = call_cost(cfg, seg, num_inference_steps=4, branches=3, precision="fp16")
    io = 2 * (4 * 16000 + 4 * 25 * 52)
    assert (half.bytes - io) * DTYPE_BYTES["fp32"] == (batched.bytes - io) * DTYPE_BYTES["fp16"]
    c = Cost(flops=2e9, bytes=1e9)
    assert c.floor_s(1e12, 1e11) == pytest.approx(0.01)  # memory-bound: 1e9 B / 1e11 B/s
    assert c.floor_s(1e11, 1e12) == pytest.approx(0.02)  # compute-bound


def test_segments_cover_windowed_audio():
    n = 30 * 16000
    segs = segments(n, 1)
    frames = sum(s.count * s.frames for s in segs)
    assert sum(s.count for s in segs) >= 3 and frames > num_frames(n, 25)  # overlaps counted twice
    assert segments(5 * 16000, 4) == [Segment(4, 80000, 125, 250)]
    with pytest.raises(ValueError):
        segments(n, 4)


def _row(spec: RowSpec, ms: float) -> dict:
    return make_row(spec, [ms, ms * 1.2, ms * 0.9], encoder_ms=ms / 4, cost=Cost(1e9, 1e8), floor_s=ms / 1e4)


def test_report_schema_writer_and_speedups(tmp_path):
    rows = [_row(paper_baseline_spec(), 60_000.0), _row(RowSpec("onnxruntime", "fp32", 4, 1, 5.0, True), 500.0),
            _row(RowSpec("torch", "fp32", 4, 4, 5.0, True), 1000.0), _row(RowSpec("torch", "fp32", 4, 1, 1.0, False), 90.0)]
    add_speedups(rows)
    assert rows[1]["speedup_vs_baseline"] == 120.0 and rows[2]["speedup_vs_baseline"] == 240.0  # per clip
    assert rows[3]["speedup_vs_baseline"] is None and rows[3]["speedup_vs_paper"] is None  # other audio length
    assert rows[1]["speedup_vs_paper"] == pytest.approx(14_710 / 500, rel=1e-3)
    assert rows[1]["latency_ms_p50"] == 500.0 and rows[1]["latency_ms_min"] == 450.0
    assert rows[2]["rtf"] == pytest.approx(1.0 / 20) and rows[2]["clips_per_s"] == 4.0
    assert rows[1]["floor_ratio"] == pytest.approx(500 / 50)
    report = {"device": "Test CPU (2 cores)", "date": "2026-01-02", "commit": "abc1234", "torch": torch.__version__,
              "device_slug": "cpu-test", "rows": rows, "notes": ["a note"]}
    json_path, md_path = write_report(report, tmp_path)
    assert json_path.name == "cpu-test-2026-01-02.json" and md_path.suffix == ".md"
    data = json.loads(json_path.read_text())
    assert list(data)[:4] == list(TOP_LEVEL_FIELDS[:4]) and list(data)[-1] == "rows"
    assert all(list(r)[: len(ROW_FIELDS)] == list(ROW_FIELDS) for r in data["rows"])
    assert data["rows"][0]["is_paper_baseline"] is True and data["rows"][0]["num_inference_steps"] == 1000
    md = md_path.read_text()
    assert "paper-style baseline" in md and md.count("\n| ") == 1 + len(rows) and "a note" in md
    assert markdown_table(rows).splitlines()[0].startswith("| backend | precision")
    bad = dict(report, rows=[{k: v for k, v in rows[0].items() if k != "floor_ms"}])
    with pytest.raises(ValueError, match="floor_ms"):
        validate_report(bad)
    with pytest.raises(ValueError, match="device"):
        validate_report({k: v for k, v in report.items() if k != "device"})


def test_plan_rows_priorities():
    pairs = [("torch", "fp32"), ("onnxruntime", "fp32")]
    rows = plan_rows(pairs, steps=[1, 4], batch_sizes=[1, 4], audio_s=[1.0, 5.0, 300.0], cfgs=[True, False],
                     reference_steps=4)
    assert rows[0].paper_baseline and rows[0].num_inference_steps == 1000 and rows[0].sampler == "ddpm"
    assert len(rows) == 1 + 2 * 4 + 2 + 2 * 2
    long = [r for r in rows if r.audio_s == 300.0]
    assert {(r.batch_size, r.num_inference_steps) for r in long} == {(1, 4)}
    fused = plan_rows(pairs, steps=[1, 4], batch_sizes=[1, 4], audio_s=[5.0], cfgs=[True], reference_steps=4,
                      fused_pairs=[("torch", "fp32")])
    assert [(r.path, r.batch_size) for r in fused if r.fused] == [("animate_batch", 1)] * 2 + [("animate_batch", 4)]


def test_paper_baseline_equals_the_engines_ddpm(torch_animator, demo_audio):
    """Separate CFG passes compute what the torch backend's batched DDPM computes (K = 2 here)."""
    spec = RowSpec("torch", "fp32", 2, 1, 0.5, True, sampler="ddpm")
    audio = demo_audio[4000:12000]
    ours = paper_baseline(torch_animator.backend, audio, spec.options)
    engine = torch_animator.animate(audio, spec.options).blendshapes
    assert ours.shape == engine.shape
    np.testing.assert_allclose(ours, engine, atol=1e-5)


def test_peaks_fall_back_to_fp32_and_work_with_one_precision():
    """A run measuring fp16 only (``--precisions fp16``) must not need an fp32 peak (it crashed
    on the H100 run of 2026-11-27); a missing precision falls back to fp32, else says so."""
    from benchmarks.hardware import Peaks

    assert Peaks({"fp16": 7e14}).matmul("fp16") == 7e14
    assert Peaks({"fp32": 5e13}).matmul("fp16") == 5e13
    with pytest.raises(KeyError, match="fp16"):
        Peaks({}).matmul("fp16")


def test_write_result_never_overwrites_an_earlier_result(tmp_path, monkeypatch):
    from benchmarks import report

    monkeypatch.setattr(report, "RESULTS_DIR", tmp_path)
    first = report.write_result({"date": "2026-12-08", "v": 1}, "x")
    second = report.write_result({"date": "2026-12-08", "v": 2}, "x")
    assert (first.name, second.name) == ("x-2026-12-08.json", "x-2026-12-08-2.json")
    assert json.loads(first.read_text())["v"] == 1 and json.loads(second.read_text())["v"] == 2
    named = report.write_result({"date": "2026-12-08", "v": 3}, "x", str(first))  # asked for: replaced
    assert named == first and json.loads(first.read_text())["v"] == 3
