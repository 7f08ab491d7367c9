"""Shared fixtures: the shipped default model and the bundled real speech clip."""
import numpy as np
import pytest

from cafetalk_rt.pipeline import DEFAULT_MODEL, DEMO_CLIP


@pytest.fixture(scope="session")
def animator():
    from cafetalk_rt.pipeline import Animator

    assert DEFAULT_MODEL.is_file(), f"the default model must ship in the repo: {DEFAULT_MODEL}"
    return Animator()


@pytest.fixture(scope="session")
def demo_audio() -> np.ndarray:
    from cafetalk_rt.audio import load_audio

    return load_audio(DEMO_CLIP)


@pytest.fixture(scope="session")
def torch_animator():
    """The shipped model on the torch backend (the [torch] extra), for tests of its internals."""
    pytest.importorskip("torch")
    from cafetalk_rt.pipeline import Animator

    return Animator(backend="torch")
