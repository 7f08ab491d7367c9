"""The Whisper tiny.en encoder read from CTranslate2's model.bin, its log-mel front end, and the
wav2vec2 option."""
import numpy as np
import pytest
import torch

from cafetalk_rt.features import log_mel
from cafetalk_rt.frames import num_feature_frames
from cafetalk_rt.nn.ct2_reader import read_ct2_model, whisper_model_dir
from cafetalk_rt.nn.speech_encoder import (Wav2Vec2SpeechEncoder, build_speech_encoder, encode_audio)


@pytest.fixture(scope="module")
def whisper():
    return build_speech_encoder("whisper-tiny.en")


def _padded_mel(audio):
    from transformers import WhisperFeatureExtractor

    return WhisperFeatureExtractor()(audio, sampling_rate=16000, return_tensors="np").input_features  # (1, 80, 3000)


def test_ct2_reader_reads_all_variables():
    v = read_ct2_model(whisper_model_dir() / "model.bin")
    assert v["encoder/conv1/weight"].shape == (384, 80, 3) and v["encoder/conv1/weight"].dtype == np.float16
    assert v["encoder/position_encodings/encodings"].shape == (1500, 384)
    assert v["encoder/layer_3/self_attention/linear_0/weight"].shape == (1152, 384)
    assert int(v["encoder/num_heads"]) == 6
    assert all(np.isfinite(a.astype(np.float64)).all() for a in v.values() if a.dtype.kind == "f")


def test_matches_ctranslate2_reference(whisper, demo_audio):
    """Our torch encoder vs CTranslate2's own C++ encoder on the same 30 s padded mel."""
    ctranslate2 = pytest.importorskip("ctranslate2")  # in the [dev] extra; CI installs it
    mel = _padded_mel(demo_audio)
    ref = np.array(ctranslate2.models.Whisper(str(whisper_model_dir()), compute_type="float32")
                   .encode(ctranslate2.StorageView.from_array(mel.astype(np.float32))))
    with torch.no_grad():
        ours = whisper(torch.from_numpy(mel))[0].numpy()
    assert ours.shape == ref.shape[1:] == (1500, 384)
    assert np.abs(ours - ref[0]).max() < 1e-4  # measured 2.3e-5 (values up to ~13)


def test_own_length_forward_equals_transformers_at_30s(whisper, demo_audio):
    mel = torch.from_numpy(_padded_mel(demo_audio))
    with torch.no_grad():
        hf = whisper.encoder(mel).last_hidden_state
        ours = whisper(mel)
    torch.testing.assert_close(ours, hf, atol=1e-5, rtol=1e-5)


def test_log_mel_matches_feature_extractor_on_speech(demo_audio):
    ours = log_mel(demo_audio)
    ref = _padded_mel(demo_audio)[0, :, : ours.shape[1]]
    assert ours.shape == (80, 2 * num_feature_frames(demo_audio.size))
    np.testing.assert_allclose(ours[:, :-2], ref[:, :-2], atol=1e-4)  # last frames see padding differently


@pytest.mark.parametrize("seconds", [0.1, 0.3, 1.0, 3.17, 7.0])
def test_feature_frames_follow_duration(whisper, demo_audio, seconds):
    audio = np.resize(demo_audio, int(seconds * 16000))
    feats = encode_audio(whisper, audio)
    assert feats.shape == (num_feature_frames(audio.size), 384) and np.isfinite(feats).all()


def test_unpadded_features_close_to_padded(whisper, demo_audio):
    """Running at the clip's length (our choice) keeps features close to Whisper's 30 s window."""
    ours = encode_audio(whisper, demo_audio)
    with torch.no_grad():
        ref = whisper(torch.from_numpy(_padded_mel(demo_audio)))[0, : ours.shape[0]].numpy()
    cos = (ours * ref).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(ref, axis=1)
    assert cos.mean() > 0.95


def test_too_long_and_too_short(whisper):
    with pytest.raises(ValueError, match="window the audio"):
        encode_audio(whisper, np.zeros(16000 * 31, np.float32) + 0.01)
    with pytest.raises(ValueError, match="at least 400 samples"):
        log_mel(np.zeros(100, np.float32))


def test_wav2vec2_from_local_dir(tmp_path, demo_audio):
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    cfg = Wav2Vec2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                         conv_dim=(16,) * 7, num_feat_extract_layers=7, num_conv_pos_embeddings=16,
                         num_conv_pos_embedding_groups=2)
    Wav2Vec2Model(cfg).save_pretrained(tmp_path / "w2v")
    enc = build_speech_encoder("wav2vec2", tmp_path / "w2v")
    assert isinstance(enc, Wav2Vec2SpeechEncoder) and enc.feature_dim == 32
    for n in (16000, 16100, 50000):
        assert encode_audio(enc, np.resize(demo_audio, n)).shape == (num_feature_frames(n), 32)
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        build_speech_encoder("wav2vec2", tmp_path / "missing")
    with pytest.raises(ValueError, match="needs path"):
        build_speech_encoder("wav2vec2")
