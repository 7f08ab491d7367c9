"""The Whisper tiny.en encoder read from CTranslate2's model.bin, its unpadded log-mel front end,
batching, and the wav2vec2 option (tiny random config). CPU, ~20 s."""
import subprocess
import sys

import numpy as np
import pytest
import torch

from cafetalk_rt.nn.features import log_mel
from cafetalk_rt.frames import num_feature_frames
from cafetalk_rt.nn.ct2_reader import read_ct2_model, whisper_model_dir
from cafetalk_rt.nn.speech_encoder import (Wav2Vec2SpeechEncoder, WhisperSpeechEncoder, build_speech_encoder,
                                           encode_audio, encode_audio_batch)


@pytest.fixture(scope="module")
def whisper():
    return build_speech_encoder("whisper-tiny.en")


@pytest.fixture(scope="module")
def padded_mel(demo_audio):
    """transformers' standard path: (1, 80, 3000) float32 log-mel of the clip padded to 30 s."""
    from transformers import WhisperFeatureExtractor

    return WhisperFeatureExtractor()(demo_audio, sampling_rate=16000, return_tensors="np").input_features


def _cosine(a, b):
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_ct2_reader_reads_all_variables():
    v = read_ct2_model(whisper_model_dir() / "model.bin")
    assert len(v) == 149  # 148 stored + the tied decoder/projection alias
    assert v["decoder/projection/weight"] is v["decoder/embeddings/weight"]
    assert v["decoder/embeddings/weight"].shape == (51864, 384)
    assert v["encoder/conv1/weight"].shape == (384, 80, 3) and v["encoder/conv2/weight"].shape == (384, 384, 3)
    assert v["encoder/position_encodings/encodings"].shape == (1500, 384)
    for i in range(4):
        p = f"encoder/layer_{i}/"
        assert v[p + "self_attention/linear_0/weight"].shape == (1152, 384)
        assert v[p + "self_attention/linear_0/bias"].shape == (1152,)
        assert v[p + "ffn/linear_0/weight"].shape == (1536, 384) and v[p + "ffn/linear_1/weight"].shape == (384, 1536)
    assert v["encoder/num_heads"].shape == () and int(v["encoder/num_heads"]) == 6
    floats = [a for a in v.values() if a.dtype.kind == "f"]
    assert all(a.dtype == np.float16 and np.isfinite(a).all() for a in floats)


def _hf_encoder(whisper):
    """transformers' own WhisperEncoder holding our weights (same parameter names)."""
    from dataclasses import asdict

    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    c = asdict(whisper.encoder.config)
    cfg = WhisperConfig(**c, decoder_layers=1, decoder_attention_heads=c["encoder_attention_heads"])
    hf = WhisperEncoder(cfg).eval()
    hf.load_state_dict(whisper.encoder.state_dict())  # strict: every name and shape matches
    return hf


def test_encoder_loads_without_transformers():
    code = ("import sys; from cafetalk_rt.nn.speech_encoder import build_speech_encoder; "
            "build_speech_encoder('whisper-tiny.en'); assert 'transformers' not in sys.modules, 'transformers imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_matches_ctranslate2_reference(whisper, padded_mel):
    """transformers' own 30 s path with our mapped weights, and our forward, vs CTranslate2's C++."""
    ctranslate2 = pytest.importorskip("ctranslate2")  # in the [dev] extra
    model = ctranslate2.models.Whisper(str(whisper_model_dir()), compute_type="float32")
    ref = np.array(model.encode(ctranslate2.StorageView.from_array(padded_mel.astype(np.float32))))[0]
    with torch.inference_mode():
        hf = _hf_encoder(whisper)(torch.from_numpy(padded_mel)).last_hidden_state[0].numpy()
        ours = whisper(torch.from_numpy(padded_mel))[0].numpy()
    assert ours.shape == ref.shape == (1500, 384)
    assert np.abs(hf - ref).max() < 1e-4  # measured 2.3e-5 (|values| up to 13)
    assert np.abs(ours - hf).max() < 1e-5  # measured 0.0: same ops at T_mel = 3000


def test_log_mel_matches_feature_extractor(demo_audio, padded_mel):
    from transformers import WhisperFeatureExtractor

    fe = WhisperFeatureExtractor()
    ours = log_mel(demo_audio)
    assert ours.shape == (80, demo_audio.size // 160) and ours.dtype == np.float32
    # transformers' standard (torch.stft) path: measured 1.2e-5
    np.testing.assert_allclose(ours, padded_mel[0, :, : ours.shape[1]], atol=1e-4, rtol=0)
    for n in (1, 159, 401, 5000, 16000, 50721):  # its numpy path, incl. extra frames over the zeros: exact
        audio = np.resize(demo_audio, n)
        k = 2 * num_feature_frames(n)
        full = np.zeros(480_000, np.float32)
        full[:n] = audio
        ref = fe._np_extract_fbank_features(full[None], "cpu")[0, :, :k]
        np.testing.assert_allclose(log_mel(audio, k), ref, atol=1e-6, rtol=0)


def test_log_mel_does_not_import_torch():
    code = ("import sys, numpy as np; from cafetalk_rt.nn.features import log_mel; "
            "log_mel(np.ones(1600, np.float32)); assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("seconds", [0.3, 1.0, 3.17, 7.0])
def test_feature_frames_follow_duration(whisper, demo_audio, seconds):
    audio = np.resize(demo_audio, int(seconds * 16000))
    feats = encode_audio(whisper, audio)
    assert feats.shape == (num_feature_frames(audio.size), 384) and feats.dtype == np.float32
    assert np.isfinite(feats).all()


def test_unpadded_features_close_to_padded(whisper, demo_audio, padded_mel):
    """Own-length run (our choice) vs Whisper's 30 s window on the speech region (3.1 s clip)."""
    ours = encode_audio(whisper, demo_audio)
    with torch.inference_mode():
        ref = whisper(torch.from_numpy(padded_mel))[0, : ours.shape[0]].numpy()
    cos = _cosine(ours, ref)
    assert cos.mean() > 0.95  # measured mean 0.977 (min 0.74, at the last frames)


def test_batch_equals_single(whisper, demo_audio):
    clips = [np.resize(demo_audio, n) for n in (401, 16000, 16100, 40000, 7000)]
    batch = encode_audio_batch(whisper, clips, batch_size=4)
    for clip, b in zip(clips, batch):
        assert b.shape == (num_feature_frames(clip.size), 384)
        np.testing.assert_allclose(b, encode_audio(whisper, clip), atol=1e-4, rtol=0)  # measured 1.2e-5


def test_forward_exports_with_dynamic_length(whisper):
    """The forward traces with a symbolic frame count (what ONNX export needs)."""
    t_a = torch.export.Dim("T_a", min=1, max=1500)
    ep = torch.export.export(whisper, (torch.randn(2, 80, 200),), dynamic_shapes={"mel": {2: 2 * t_a}})
    mel = torch.randn(2, 80, 146)
    with torch.inference_mode():
        torch.testing.assert_close(ep.module()(mel), whisper(mel), atol=1e-5, rtol=1e-5)


def test_errors(whisper):
    with pytest.raises(ValueError, match="window the audio"):
        encode_audio(whisper, np.full(16000 * 31, 0.01, np.float32))
    with pytest.raises(ValueError, match="window the audio"):
        whisper(torch.zeros(1, 80, 3002))
    with pytest.raises(ValueError, match="non-empty"):
        encode_audio(whisper, np.zeros(0, np.float32))
    with pytest.raises(ValueError, match="at least 160 samples"):
        log_mel(np.zeros(100, np.float32))
    with pytest.raises(ValueError, match="unknown speech encoder"):
        build_speech_encoder("hubert")
    assert isinstance(whisper, WhisperSpeechEncoder) and whisper.feature_dim == 384
    assert not any(p.requires_grad for p in whisper.parameters()) and not whisper.training


def _tiny_wav2vec2(path, conv_stride=(5, 2, 2, 2, 2, 2, 2)):
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    torch.manual_seed(0)
    cfg = Wav2Vec2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                         conv_dim=(16,) * 7, conv_stride=conv_stride, num_conv_pos_embeddings=16,
                         num_conv_pos_embedding_groups=2)
    Wav2Vec2Model(cfg).save_pretrained(path)
    return path


def test_wav2vec2_from_local_dir(tmp_path, demo_audio):
    enc = build_speech_encoder("wav2vec2", _tiny_wav2vec2(tmp_path / "w2v"))
    assert isinstance(enc, Wav2Vec2SpeechEncoder) and enc.feature_dim == 32 and enc.receptive_field == 400
    clips = [np.resize(demo_audio, n) for n in (100, 16000, 16100, 16300, 50000)]
    for clip, feats in zip(clips, encode_audio_batch(enc, clips)):
        assert feats.shape == (num_feature_frames(clip.size), 32) and np.isfinite(feats).all()
    # per-clip normalisation: a rescaled clip gives the same features
    np.testing.assert_allclose(encode_audio(enc, clips[1] * 3), encode_audio(enc, clips[1]), atol=1e-4)


def test_wav2vec2_other_stride_is_resampled_to_50hz(tmp_path, demo_audio):
    enc = build_speech_encoder("wav2vec2", _tiny_wav2vec2(tmp_path / "w2v25", (5, 2, 2, 2, 2, 2, 4)))
    assert enc.stride == 640
    assert encode_audio(enc, demo_audio).shape == (num_feature_frames(demo_audio.size), 32)


def test_wav2vec2_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        build_speech_encoder("wav2vec2", tmp_path / "missing")
    with pytest.raises(ValueError, match="needs path"):
        build_speech_encoder("wav2vec2")
