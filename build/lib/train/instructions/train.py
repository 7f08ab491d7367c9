"""Train the text → AU detector on cached sentence embeddings (CPU, seconds to minutes).

Model (Cafe-Talk §3.4, with our sizes): a frozen text encoder's embedding e (D) → adapter
``f = e + up(relu(down(e)))`` (D → 128 → D; the paper's 512 → 128 → 512) → a multi-label head
(one sigmoid per AU), and an intensity regressor on e (D → 64 → 1, sigmoid: intensity words
modify the whole clause, whatever the AUs). Loss::

    L = BCE(head(f), y) + λ_nce · InfoNCE(f, set(y)) + λ_int · MSE(intensity(e), i | y ≠ ∅)

InfoNCE aligns the normalised adapted text feature with its AU set's embedding, the normalised
sum of learnt per-AU prototype vectors (a learnt "none" vector for texts with no AU); positives
are all examples in the batch with the same set; symmetric as in CLIP, temperature τ.

Decoding (our choice, measured on the validation split): the AU set is the one, among the sets
seen in training, that maximises ``cos(f, set embedding) / τ + lik_weight · log P(set | sigmoids)``.
On paraphrases the detector never saw this beats thresholding the sigmoids (which fall below any
threshold when unsure) by a wide margin; ``lik_weight`` is picked on the validation split.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cafetalk_rt.control.au import AU_NAMES
from cafetalk_rt.control.instructions import InstructionDetector

log = logging.getLogger(__name__)
#: Candidate weights of the sigmoid likelihood in the set decoder (chosen on val).
LIK_WEIGHTS = (0.0, 0.1, 0.3, 1.0)


@dataclass(frozen=True)
class DetectorConfig:
    """Training hyper-parameters (our choices)."""
    hidden: int = 128
    epochs: int = 40
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    input_dropout: float = 0.1
    nce_weight: float = 0.5
    intensity_weight: float = 1.0
    temperature: float = 0.07
    seed: int = 0


class DetectorNet(torch.nn.Module):
    """Adapter + heads + AU prototypes (the trainable part; the text encoder is frozen)."""

    def __init__(self, dim: int, num_aus: int, hidden: int = 128):
        super().__init__()
        self.down = torch.nn.Linear(dim, hidden)
        self.up = torch.nn.Linear(hidden, dim)
        self.head = torch.nn.Linear(dim, num_aus)
        self.intensity = torch.nn.Sequential(torch.nn.Linear(dim, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
        self.prototypes = torch.nn.Parameter(torch.randn(num_aus + 1, dim) / dim ** 0.5)  # last: "none"

    def forward(self, e: torch.Tensor):
        f = e + self.up(torch.relu(self.down(e)))                      # (B, D)
        return f, self.head(f), torch.sigmoid(self.intensity(e))[:, 0]  # (B, D), (B, n_AU), (B,)

    def set_embeddings(self, labels: torch.Tensor) -> torch.Tensor:
        """(S, n_AU) {0, 1} AU sets → (S, D) unit vectors (the "none" vector for empty sets)."""
        n = labels.shape[1]
        empty = (labels.sum(1, keepdim=True) == 0).to(labels.dtype)     # (S, 1)
        return F.normalize(labels @ self.prototypes[:n] + empty * self.prototypes[n], dim=-1)

    def export(self, sets: np.ndarray) -> dict[str, np.ndarray]:
        """Weights named as ``cafetalk_rt.control.instructions.WEIGHT_SHAPES`` (float32 numpy), with the
        candidate ``sets`` (S, n_AU) and their embeddings."""
        t = {"adapter.down": self.down, "adapter.up": self.up, "head": self.head,
             "intensity.hidden": self.intensity[0], "intensity.out": self.intensity[2]}
        out = {f"{k}.{p}": getattr(m, p).detach().float().numpy().copy() for k, m in t.items()
               for p in ("weight", "bias")}
        with torch.no_grad():
            out["sets.labels"] = np.asarray(sets, np.float32)
            out["sets.embeddings"] = self.set_embeddings(torch.from_numpy(out["sets.labels"])).numpy()
        return out


def info_nce(f: torch.Tensor, labels: torch.Tensor, net: DetectorNet, temperature: float) -> torch.Tensor:
    """Symmetric multi-positive InfoNCE between texts (B, D) and their AU-set embeddings."""
    z = F.normalize(f, dim=-1)                                          # (B, D)
    logits = z @ net.set_embeddings(labels).T / temperature             # (B, B)
    same = (labels[:, None, :] == labels[None, :, :]).all(-1).float()   # (B, B) positives
    target = same / same.sum(1, keepdim=True)
    return 0.5 * (-(target * logits.log_softmax(1)).sum(1).mean() - (target * logits.log_softmax(0)).sum(0).mean())


def training_sets(labels: np.ndarray) -> np.ndarray:
    """The distinct AU sets (S, n_AU) float32 of the training labels, sorted."""
    return np.array(sorted({tuple(int(v) for v in row) for row in np.asarray(labels) > 0.5}), np.float32)


def fit(x: np.ndarray, labels: np.ndarray, intensity: np.ndarray,
        config: DetectorConfig = DetectorConfig()) -> DetectorNet:
    """Train on embeddings x (N, D) float32, labels (N, n_AU) {0, 1}, intensity (N, n_AU)."""
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    x_t, y_t, i_t = (torch.from_numpy(np.asarray(a, np.float32)) for a in (x, labels, intensity))
    net = DetectorNet(x.shape[1], labels.shape[1], config.hidden)
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps = config.epochs * int(np.ceil(len(x) / config.batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, config.lr, total_steps=steps, pct_start=0.1)
    for _ in range(config.epochs):
        for idx in torch.randperm(len(x), generator=gen).split(config.batch_size):
            e = F.dropout(x_t[idx], config.input_dropout, training=True)
            f, logits, inten = net(e)
            y = y_t[idx]
            loss = F.binary_cross_entropy_with_logits(logits, y)
            loss = loss + config.nce_weight * info_nce(f, y, net, config.temperature)
            has_au = (y.sum(1) > 0).float()                                 # (B,)
            mse = ((inten - i_t[idx].max(1).values) ** 2 * has_au).sum() / has_au.sum().clamp(min=1.0)
            loss = loss + config.intensity_weight * mse
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return net.eval()


def metrics(pred: np.ndarray, inten: np.ndarray, labels: np.ndarray, target_int: np.ndarray,
            au_names=AU_NAMES) -> dict:
    """Exact-set accuracy, per-AU precision/recall/F1, rejection of no-AU texts, intensity MAE,
    from predicted sets ``pred`` (N, n_AU) bool and intensities (N, n_AU)."""
    pred = np.asarray(pred, bool)
    true = labels > 0.5
    exact = (pred == true).all(1)
    neg = ~true.any(1)
    per_au = {}
    for k, name in enumerate(au_names):
        p_k, t_k = pred[:, k], true[:, k]
        tp, fp, fn = int((p_k & t_k).sum()), int((p_k & ~t_k).sum()), int((~p_k & t_k).sum())
        p, r = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
        per_au[name] = {"precision": round(p, 4), "recall": round(r, 4), "f1": round(2 * p * r / max(p + r, 1e-9), 4),
                        "support": int(true[:, k].sum())}
    hit = pred & true
    levels = {}
    for name, value in (("low", 0.3), ("medium", 0.6), ("high", 1.0)):
        sel = hit & np.isclose(target_int, value)
        levels[name] = round(float(inten[sel].mean()), 4) if sel.any() else None
    return {"n": int(len(labels)), "exact_set_accuracy": round(float(exact.mean()), 4),
            "exact_set_accuracy_with_au": round(float(exact[~neg].mean()), 4) if (~neg).any() else None,
            "no_au_rejected": round(float((~pred[neg].any(1)).mean()), 4) if neg.any() else None,
            "macro_f1": round(float(np.mean([v["f1"] for v in per_au.values() if v["support"]])), 4),
            "intensity_mae": round(float(np.abs(inten - target_int)[hit].mean()), 4) if hit.any() else None,
            "mean_intensity_by_level": levels, "per_au": per_au}


def best_decoder(detector: InstructionDetector, x_val: np.ndarray, labels_val: np.ndarray) -> float:
    """The ``lik_weight`` of ``LIK_WEIGHTS`` with the best exact-set accuracy on val (ties: smaller)."""
    acc = {}
    for w in LIK_WEIGHTS:
        detector.lik_weight = w
        acc[w] = (detector.predict(x_val)[0] == (labels_val > 0.5)).all(1).mean()
    return max(LIK_WEIGHTS, key=lambda w: (acc[w], -w))


def to_detector(net: DetectorNet, sets: np.ndarray, *, lik_weight: float, temperature: float, encoder_spec: str,
                encoder_name: str, extra: dict | None = None) -> InstructionDetector:
    """The runtime detector for a trained net (metadata as the shipped checkpoint's)."""
    meta = {"au_names": json.dumps(list(AU_NAMES)), "text_encoder": encoder_spec, "text_encoder_name": encoder_name,
            "embedding_dim": str(net.head.in_features), "hidden": str(net.down.out_features),
            "temperature": f"{temperature:g}", "lik_weight": f"{lik_weight:g}",
            "format": "cafetalk_rt.instruction_detector/1"}
    meta |= {k: v if isinstance(v, str) else json.dumps(v) for k, v in (extra or {}).items()}
    weights = {k: v.astype(np.float16).astype(np.float32) for k, v in net.export(sets).items()}  # as saved
    return InstructionDetector(weights, meta)


def save_detector(detector: InstructionDetector, path: str | Path) -> Path:
    """Write weights (float16; ``to_detector`` already rounds to it) + metadata as safetensors
    (atomic)."""
    from safetensors.numpy import save_file

    path = Path(path)
    tmp = path.with_suffix(".tmp")
    save_file({k: np.ascontiguousarray(v, np.float16) for k, v in detector.weights.items()}, str(tmp),
              metadata=detector.metadata)
    tmp.replace(path)
    return path

