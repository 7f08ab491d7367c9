"""Classifier-free guidance with separate audio and coarse (emotion) scales, one batched call.

Branch layout along the batch axis (3B): ``[full (A, C), audio-only (A, ∅), null (∅, ∅)]``.
The combine is the compositional form of the paper's Eq. 6 without the fine term:

    x0 = G_∅ + s_a · (G_A − G_∅) + s_c · (G_{A,C} − G_A)

``s_a = s_c = 1`` gives the fully conditioned prediction, so CFG is skipped (B rows only).
"""
from __future__ import annotations

from typing import Any, Callable

#: Names of the condition branches in batch order.
BRANCHES = ("full", "audio_only", "null")


def num_branches(audio_guidance_scale: float, guidance_scale: float) -> int:
    """1 when no guidance is needed (both scales 1.0), else 3."""
    return 1 if (audio_guidance_scale == 1.0 and guidance_scale == 1.0) else 3


def combine(x0_branches: Any, batch_size: int, audio_guidance_scale: float, guidance_scale: float) -> Any:
    """Combine (nB, T, C) branch predictions into (B, T, C); n = 1 or 3 (see module doc)."""
    if x0_branches.shape[0] == batch_size:
        return x0_branches
    g_full = x0_branches[:batch_size]
    g_audio = x0_branches[batch_size : 2 * batch_size]
    g_null = x0_branches[2 * batch_size :]
    return g_null + audio_guidance_scale * (g_audio - g_null) + guidance_scale * (g_full - g_audio)


def guided_denoiser(
    batched_denoiser: Callable[[Any, int], Any],
    batch_size: int,
    audio_guidance_scale: float,
    guidance_scale: float,
    repeat: Callable[[Any, int], Any],
) -> Callable[[Any, int], Any]:
    """Wrap ``batched_denoiser(x_t (nB,T,C), t) -> x0 (nB,T,C)`` whose conditions are already laid
    out as ``BRANCHES`` into a (B,T,C) → (B,T,C) denoiser for the samplers.

    ``repeat(x, n)`` tiles x n times along the batch axis (np.concatenate / torch.cat).
    """
    n = num_branches(audio_guidance_scale, guidance_scale)

    def denoise(x_t: Any, t: int) -> Any:
        out = batched_denoiser(repeat(x_t, n) if n > 1 else x_t, t)
        return combine(out, batch_size, audio_guidance_scale, guidance_scale)

    return denoise
