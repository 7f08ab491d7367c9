"""Where the model files are, and what a checkpoint says about itself, without PyTorch.

* :data:`DEFAULT_MODEL`: the trained default model shipped in the package (safetensors, fp16).
* :data:`SHIPPED_GRAPHS_DIR`: that model's ONNX graphs, shipped too (``export/ship.py`` builds
  them; one shared ``weights.bin``), so the default install runs on ONNX Runtime alone.
* :func:`read_checkpoint_metadata`: the safetensors header's ``__metadata__`` (the exported-graph
  backends need a few facts, e.g. whether the stage-2 adapter is present; ``cafetalk_rt.nn.checkpoint``,
  which loads the weights, reads its metadata through the same function).
"""
from __future__ import annotations

from pathlib import Path

from cafetalk_rt.errors import InputError
from cafetalk_rt.options import DEFAULT_NUM_INFERENCE_STEPS

ASSETS = Path(__file__).resolve().parent / "assets"
#: The trained default model shipped in the package.
DEFAULT_MODEL = ASSETS / "cafetalk_small.safetensors"
#: The bundled real speech clip (CMU ARCTIC arctic_a0009, see assets/CREDITS.md).
DEMO_CLIP = ASSETS / "arctic_a0009.wav"
#: The default model's shipped ONNX graphs (fp32 compute, fp16-stored weights).
SHIPPED_GRAPHS_DIR = ASSETS / "graphs"
#: The one external-data file all shipped graphs share.
WEIGHTS_FILE = "weights.bin"
#: (graph kind, K or None) of every shipped graph: what the runtime needs for emotion, CFG on and
#: off, AU spans, long audio and streaming; other K run the host sampler over the step graphs.
SHIPPED_GRAPHS: tuple[tuple[str, int | None], ...] = (
    ("speech_encoder", None), ("denoiser_step", None), ("denoiser_step_cond", None), ("denoiser_step_au", None),
    ("sampler", DEFAULT_NUM_INFERENCE_STEPS), ("sampler_cond", DEFAULT_NUM_INFERENCE_STEPS),
    ("sampler_au", DEFAULT_NUM_INFERENCE_STEPS))


def read_checkpoint_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata stored in a safetensors checkpoint ({} if it has none).

    Raises:
        FileNotFoundError: no such file.
        InputError: the file is not a safetensors checkpoint (one line, naming the file and what
            ``--model`` expects).
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="np") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as e:
        raise InputError(f"{path} is not a cafetalk_rt model checkpoint (a .safetensors file written by "
                         f"`python -m train`): {e}") from None


def check_checkpoint(path: str | Path) -> dict[str, str]:
    """:func:`read_checkpoint_metadata`, also refusing a safetensors file that is not a cafetalk_rt
    denoiser (no ``config`` key).

    Raises:
        FileNotFoundError, InputError: as :func:`read_checkpoint_metadata`.
    """
    meta = read_checkpoint_metadata(path)
    if "config" not in meta:
        raise InputError(f"{path} is a safetensors file but not a cafetalk_rt denoiser checkpoint "
                         "(no 'config' metadata); pass a model written by `python -m train`")
    return meta


def has_fine_control(path: str | Path) -> bool:
    """True when the checkpoint holds the fine-control adapter (key ``adapter_config``, written
    by ``cafetalk_rt.nn.checkpoint.save_denoiser`` for stage-2 models)."""
    return bool(read_checkpoint_metadata(path).get("adapter_config"))
