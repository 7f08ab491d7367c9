"""The compute floor of one benchmark call, counted from the model configs (no torch needed).

Every matrix product of the denoiser (``cafetalk_rt/nn/denoiser.py``) and of the Whisper speech
encoder (``cafetalk_rt/nn/speech_encoder.py``) is listed as a :class:`Gemm` (m × k by k × n,
``count`` times); convolutions count as the GEMMs they are (im2col). FLOPs = Σ 2·m·k·n·count.
Elementwise ops, norms, softmax and the log-mel front end are left out (≪ 1 % of the FLOPs).
Attention is counted dense, as ``scaled_dot_product_attention`` computes it: the audio
alignment mask hides most of the T × T_a scores but they are still computed. The stage-2 AU
adapter is not counted: the denoiser runs it only with AU spans, which no benchmark row uses.

Bytes per call are the floor's memory traffic: every weight read once per forward call (the
denoiser runs K times, the speech encoder once per call; a paper-style step with separate CFG
passes reads the denoiser's weights once per branch), plus the call's audio input and
blendshape output. Activations are assumed to stay on chip (a fused kernel's ideal), so this
is a lower bound, not a model of an unfused engine's traffic.

floor = max(FLOPs / measured peak matmul rate, bytes / measured copy bandwidth); a row's
``floor_ratio`` = measured latency / floor.
"""
from __future__ import annotations

from dataclasses import dataclass

from cafetalk_rt.blendshapes import NUM_BLENDSHAPES
from cafetalk_rt.frames import SAMPLE_RATE, num_feature_frames, num_frames
from cafetalk_rt.longform.windows import WindowOptions, plan_windows

#: Bytes per element of a compute precision.
DTYPE_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}

#: Published peaks of an NVIDIA GeForce RTX 2080 Ti (the paper's GPU; Turing TU102 whitepaper,
#: reference boost clock 1545 MHz): fp32 13.4 TFLOP/s, fp16 tensor cores with fp32 accumulate
#: 53.8 TFLOP/s (what PyTorch uses), GDDR6 616 GB/s. Used only for labelled estimates.
RTX_2080_TI_PEAKS = {"matmul_flops_per_s": {"fp32": 13.4e12, "fp16": 53.8e12}, "bandwidth_bytes_per_s": 616e9}


@dataclass(frozen=True)
class Gemm:
    """``count`` products of an (m × k) by a (k × n) matrix; ``weight`` if the (k × n) operand is
    a model parameter (its elements are read from memory once per forward call)."""

    name: str
    m: int
    k: int
    n: int
    count: int = 1
    weight: bool = False

    @property
    def flops(self) -> int:
        """Multiply-adds × 2."""
        return 2 * self.m * self.k * self.n * self.count


@dataclass(frozen=True)
class EncoderDims:
    """Whisper encoder sizes (``cafetalk_rt.nn.speech_encoder.WhisperEncoderConfig`` has the
    same fields; tiny.en: 80 mels, 384 wide, 4 layers, 1536 FFN)."""

    num_mel_bins: int = 80
    d_model: int = 384
    encoder_layers: int = 4
    encoder_ffn_dim: int = 1536


WHISPER_TINY_EN = EncoderDims()


@dataclass(frozen=True)
class Segment:
    """``count`` equally shaped pieces of one call: clips of a batch, or windows of long audio.

    Attributes:
        encoder_samples: audio samples (16 kHz) the speech encoder reads per piece (a window's
            own audio plus its context).
        frames: denoised frames per piece (25 fps).
        feature_frames: speech-feature frames (50 Hz) the denoiser attends to per piece.
    """

    count: int
    encoder_samples: int
    frames: int
    feature_frames: int


@dataclass(frozen=True)
class Cost:
    """FLOPs and floor bytes of one call."""

    flops: float
    bytes: float

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.flops + other.flops, self.bytes + other.bytes)

    def floor_s(self, matmul_flops_per_s: float, bandwidth_bytes_per_s: float) -> float:
        """Seconds at the given peak rates: max(compute time, memory time)."""
        return max(self.flops / matmul_flops_per_s, self.bytes / bandwidth_bytes_per_s)


def denoiser_gemms(config, rows: int, frames: int, feature_frames: int) -> list[Gemm]:
    """The matrix products of ONE denoiser forward over ``rows`` sequences of ``frames`` frames
    attending to ``feature_frames`` speech-feature frames. ``config``: a ``DenoiserConfig``."""
    d, h, c = config.width, config.heads, config.num_channels
    hidden = int(d * config.mlp_ratio)
    t, s, r = rows * frames, rows * feature_frames, rows
    out = [Gemm("x_in", t, c, d, weight=True), Gemm("audio_in", s, config.audio_dim, d, weight=True),
           Gemm("t_mlp.0", r, d, d, weight=True), Gemm("t_mlp.2", r, d, d, weight=True)]
    for i in range(config.depth):
        p = f"blocks.{i}."
        out += [Gemm(p + "ada", r, d, 9 * d, weight=True)]
        for attn, keys in (("self_attn", frames), ("cross_attn", feature_frames)):
            out += [Gemm(p + attn + ".q", t, d, d, weight=True),
                    Gemm(p + attn + ".kv", rows * keys, d, 2 * d, weight=True),
                    Gemm(p + attn + ".scores", frames, d // h, keys, count=rows * h),
                    Gemm(p + attn + ".values", frames, keys, d // h, count=rows * h),
                    Gemm(p + attn + ".out", t, d, d, weight=True)]
        out += [Gemm(p + "mlp.0", t, d, hidden, weight=True), Gemm(p + "mlp.2", t, hidden, d, weight=True)]
    out += [Gemm("ada_out", r, d, 2 * d, weight=True), Gemm("x_out", t, d, c, weight=True)]
    return out


def encoder_gemms(dims: EncoderDims, rows: int, feature_frames: int) -> list[Gemm]:
    """The matrix products of one Whisper encoder call over ``rows`` clips of ``feature_frames``
    output frames (2 · feature_frames mel frames in)."""
    d, ff = dims.d_model, dims.encoder_ffn_dim
    heads = max(1, d // 64)
    t_mel, t = 2 * feature_frames, feature_frames
    out = [Gemm("conv1", rows * t_mel, dims.num_mel_bins * 3, d, weight=True),
           Gemm("conv2", rows * t, d * 3, d, weight=True)]
    for i in range(dims.encoder_layers):
        p = f"layers.{i}."
        out += [Gemm(p + "qkv", rows * t, d, 3 * d, weight=True),
                Gemm(p + "scores", t, d // heads, t, count=rows * heads),
                Gemm(p + "values", t, t, d // heads, count=rows * heads),
                Gemm(p + "out_proj", rows * t, d, d, weight=True),
                Gemm(p + "fc1", rows * t, d, ff, weight=True), Gemm(p + "fc2", rows * t, ff, d, weight=True)]
    return out


def weight_elements(gemms: list[Gemm]) -> int:
    """Parameter elements the products read (each weight GEMM is one distinct matrix)."""
    return sum(g.k * g.n for g in gemms if g.weight)


def segments(num_samples: int, batch_size: int, fps: int = 25, windows: WindowOptions | None = None) -> list[Segment]:
    """How one call of ``batch_size`` clips of ``num_samples`` samples is cut: one segment of
    ``batch_size`` clips, or (batch 1, audio longer than ``windows.window_s``) the windows of
    :func:`cafetalk_rt.longform.windows.plan_windows`, grouped by shape.

    Raises:
        ValueError: batch_size > 1 with audio that would be windowed.
    """
    plan = plan_windows(num_samples, fps, windows or WindowOptions())
    if not plan.windowed:
        return [Segment(batch_size, num_samples, num_frames(num_samples, fps), num_feature_frames(num_samples))]
    if batch_size != 1:
        raise ValueError("batches of windowed audio are not a benchmark workload (use batch 1 for long audio)")
    shapes: dict[tuple[int, int, int], int] = {}
    for i in range(plan.num_windows):
        a0, a1 = plan.audio_span(i)
        f0, f1 = plan.frame_span(i)
        key = (a1 - a0, f1 - f0, plan.feature_span(i)[1])
        shapes[key] = shapes.get(key, 0) + 1
    return [Segment(n, *key) for key, n in shapes.items()]


def call_cost(config, segs: list[Segment], *, num_inference_steps: int, branches: int, precision: str = "fp32",
              separate_branches: bool = False, encoder: EncoderDims = WHISPER_TINY_EN) -> Cost:
    """FLOPs and floor bytes of one end-to-end call (speech encoder + K denoiser steps).

    Args:
        config: the ``DenoiserConfig``.
        segs: the call's pieces (:func:`segments`).
        branches: CFG branches per step (1 without guidance, 3 with; ``guidance.BranchPlan.num_base``).
        precision: compute precision of weights ("fp32"/"fp16"); audio in and blendshapes out
            are float32.
        separate_branches: the paper-style step: one forward call per branch (weights read
            ``branches`` times per step) instead of one batched call.
    """
    wb = DTYPE_BYTES[precision]
    enc_weights = weight_elements(encoder_gemms(encoder, 1, 1)) * wb
    den_weights = weight_elements(denoiser_gemms(config, 1, 1, 1)) * wb
    calls_per_step = branches if separate_branches else 1
    flops = 0.0
    io_bytes = 0.0
    for s in segs:
        enc_flops = sum(g.flops for g in encoder_gemms(encoder, s.count, num_feature_frames(s.encoder_samples)))
        den_flops = sum(g.flops for g in denoiser_gemms(config, s.count * branches, s.frames, s.feature_frames))
        flops += enc_flops + num_inference_steps * den_flops
        io_bytes += s.count * (4 * s.encoder_samples + 4 * s.frames * NUM_BLENDSHAPES)
    weight_bytes = enc_weights + num_inference_steps * calls_per_step * den_weights
    return Cost(float(flops), float(io_bytes + weight_bytes))


def audio_samples(audio_s: float) -> int:
    """Samples of ``audio_s`` seconds at the model's 16 kHz."""
    return int(round(audio_s * SAMPLE_RATE))
