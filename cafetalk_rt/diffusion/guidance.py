"""Classifier-free guidance with separate audio and coarse (emotion) scales, one batched call.

Branch layout along the batch axis (3B): ``[full (A, C), audio-only (A, ∅), null (∅, ∅)]``.
The combine is the compositional form of the paper's Eq. 6 without the fine term:

    x0 = G_∅ + s_a · (G_A − G_∅) + s_c · (G_{A,C} − G_A)

``s_a = s_c = 1`` gives the fully conditioned prediction, so CFG is skipped (B rows only).

Mask-based CFG for the fine (AU) condition (paper Eq. 6, §3.4): with an AU condition one more
branch, ``fine`` (A, C, F), is appended (B or 3B rows → 2B or 4B, still one batched call) and

    x0 = [above] + β · Z ⊙ (G_{A,C,F} − G_{A,C})

with β = ``au_guidance_scale`` and Z the mask of frames that carry an AU condition, (B, T, 1), or
per channel (B, T, C) (the torch backend restricts it to the active AUs' face regions,
``cafetalk_rt.control.au.region_channel_mask``, our choice), so outside Z the result is exactly the one
without AUs. The paper's Eq. 6 as we read it (paper.md,
secondary source) takes the fine difference against G_∅; we take it against G_{A,C}, so that
β = 1 gives the fully conditioned model inside Z instead of counting G_{A,C} − G_∅ twice (our
choice). β = 0 switches the control off; larger β strengthens it.

Region anchoring (:func:`anchored_fine_denoiser`, our addition): the region-limited Z stops the
fine term from moving other regions *directly*, but at the next step the stage-1 branches see
the controlled x_t (e.g. raised cheeks) and move the lips with it (a cheek raise pulled in a
smile: mouth error +10–25 %, measured in docs/fine_control.md). So the uncontrolled trajectory
runs beside the controlled one in the same batched call, and on every channel outside the
regions of the requested AUs (``anchor`` (B, 1 or T, C), 1 = controlled) the controlled x0 is
replaced by the uncontrolled one. With a deterministic sampler and the same x_T both
trajectories then agree exactly outside those regions: an upper-face AU leaves the lips
bit-identical to the uncontrolled result.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

#: Names of the condition branches in batch order; with an AU condition ``FINE_BRANCH`` follows.
BRANCHES = ("full", "audio_only", "null")
FINE_BRANCH = "fine"
#: (audio_keep, coarse_keep, fine_keep) of each branch: 1 = condition given, 0 = dropped (null).
BRANCH_KEEPS = {"full": (1.0, 1.0, 0.0), "audio_only": (1.0, 0.0, 0.0), "null": (0.0, 0.0, 0.0),
                FINE_BRANCH: (1.0, 1.0, 1.0)}


@dataclass(frozen=True)
class BranchPlan:
    """The branch layout of one batched denoiser call, computed once from the options.

    Rows are block-major: block ``j`` holds rows ``[j·B, (j+1)·B)``. Without an AU condition the
    blocks are ``BRANCHES[:num_base]``; with one (``fine``) they are those, then ``FINE_BRANCH`` at
    the controlled x_t, then ``BRANCHES[:num_base]`` again at the uncontrolled x_t
    (:func:`anchored_fine_denoiser`).

    Attributes:
        num_base: 1 (CFG off: both scales 1.0, the fully conditioned branch alone), 3 (CFG), or
            2 (full and audio-only: CFG on the emotion alone, s_a fixed at 1, a third fewer rows;
            the live streaming graph uses it).
        fine: an AU condition is present (2·num_base + 1 blocks).
    Raises:
        ValueError: ``num_base`` other than 1, 2 or 3.
    """

    num_base: int
    fine: bool = False

    def __post_init__(self):
        if self.num_base not in (1, 2, 3):
            raise ValueError(f"num_base is 1 (CFG off), 2 (CFG on the emotion only) or 3 (CFG), got {self.num_base}")

    @classmethod
    def for_scales(cls, audio_guidance_scale: float, guidance_scale: float, fine: bool = False) -> "BranchPlan":
        """The plan for s_a, s_c (Python floats): CFG is skipped when both are 1.0 (the one place
        the branch count is derived)."""
        return cls(1 if (audio_guidance_scale == 1.0 and guidance_scale == 1.0) else 3, fine)

    @classmethod
    def for_options(cls, options: Any, fine: bool = False) -> "BranchPlan":
        """:meth:`for_scales` of ``options.audio_guidance_scale`` and ``options.guidance_scale``."""
        return cls.for_scales(options.audio_guidance_scale, options.guidance_scale, fine)

    @property
    def rows(self) -> tuple[tuple[float, float, float], ...]:
        """(audio_keep, coarse_keep, fine_keep) of each block (1 = condition given, 0 = dropped)."""
        base = [BRANCH_KEEPS[name] for name in BRANCHES[: self.num_base]]
        return tuple(base + [BRANCH_KEEPS[FINE_BRANCH]] + base if self.fine else base)

    @property
    def num_blocks(self) -> int:
        """Blocks of B rows in one batched call: num_base, or 2·num_base + 1 with ``fine``."""
        return len(self.rows)


def combine(x0_branches: Any, batch_size: int, audio_guidance_scale: float, guidance_scale: float,
            *, au_guidance_scale: float = 1.0, au_mask: Any = None) -> Any:
    """Combine (nB, T, C) branch predictions into (B, T, C); n = 1, 2 (s_a taken as 1) or 3, or 2 or 4 with
    ``au_mask`` (B, T, 1) or (B, T, C) (the fine branch last; Eq. 6, see module doc)."""
    if au_mask is not None:
        g_fine = x0_branches[-batch_size:]
        base = combine(x0_branches[:-batch_size], batch_size, audio_guidance_scale, guidance_scale)
        return base + au_guidance_scale * au_mask * (g_fine - x0_branches[:batch_size])
    if x0_branches.shape[0] == batch_size:
        return x0_branches
    g_full = x0_branches[:batch_size]
    g_audio = x0_branches[batch_size : 2 * batch_size]
    if x0_branches.shape[0] == 2 * batch_size:  # (full, audio-only): s_a = 1, G_∅ cancels
        return g_audio + guidance_scale * (g_full - g_audio)
    g_null = x0_branches[2 * batch_size :]
    return g_null + audio_guidance_scale * (g_audio - g_null) + guidance_scale * (g_full - g_audio)


def guided_denoiser(
    batched_denoiser: Callable[[Any, int], Any],
    batch_size: int,
    audio_guidance_scale: float,
    guidance_scale: float,
    repeat: Callable[[Any, int], Any],
    *,
    au_guidance_scale: float = 1.0,
    au_mask: Any = None,
    branches: int | None = None,
) -> Callable[[Any, int], Any]:
    """Wrap ``batched_denoiser(x_t (nB,T,C), t) -> x0 (nB,T,C)`` whose conditions are already laid
    out as ``BRANCHES`` (then ``FINE_BRANCH`` when ``au_mask`` (B, T, 1 or C) is given) into a
    (B,T,C) → (B,T,C) denoiser for the samplers.

    ``repeat(x, n)`` tiles x n times along the batch axis (np.concatenate / torch.cat).
    ``branches``: n when the scales are tensors (e.g. the static buffers of a CUDA graph, where
    comparing them with 1.0 on the host would synchronise); default: ``BranchPlan.for_scales``'s
    num_base, plus 1 with ``au_mask``.
    """
    n = branches if branches is not None else BranchPlan.for_scales(audio_guidance_scale, guidance_scale).num_base + (
        au_mask is not None)

    def denoise(x_t: Any, t: int) -> Any:
        out = batched_denoiser(repeat(x_t, n) if n > 1 else x_t, t)
        return combine(out, batch_size, audio_guidance_scale, guidance_scale,
                       au_guidance_scale=au_guidance_scale, au_mask=au_mask)

    return denoise


def anchored_fine_denoiser(
    batched_denoiser: Callable[[Any, int], Any],
    batch_size: int,
    audio_guidance_scale: float,
    guidance_scale: float,
    repeat: Callable[[Any, int], Any],
    concat: Callable[[list], Any],
    *,
    au_guidance_scale: float,
    au_mask: Any,
    anchor: Any,
    num_base: int | None = None,
) -> Callable[[Any, int], Any]:
    """Mask-based CFG with region anchoring (module doc) as a (2B, T, C) → (2B, T, C) denoiser.

    The sampler state stacks the controlled and the uncontrolled trajectory: ``x_t[:B]`` and
    ``x_t[B:]`` (start both from the same x_T; for DDPM pass the same step noise to both halves).
    ``batched_denoiser(rows, t)`` gets ``(2·n + 1)·B`` rows laid out as ``BRANCHES`` (n = 1 or 3)
    then ``FINE_BRANCH`` at the controlled x_t, then ``BRANCHES`` again at the uncontrolled x_t.
    Returns ``concat([anchor ⊙ x0_c + (1 − anchor) ⊙ x0_u, x0_u])``; the animation is the first B rows.

    Args:
        au_mask: (B, T, 1 or C) Z of Eq. 6; anchor: (B, 1 or T, C) 1 where the control may act.
        num_base: n; default ``BranchPlan.for_scales(audio_guidance_scale, guidance_scale).num_base``.
            Pass the plan's when the scales are tensors (``nn.guided.GuidedDenoiser``).
    """
    n = BranchPlan.for_scales(audio_guidance_scale, guidance_scale).num_base if num_base is None else num_base
    b = batch_size

    def denoise(x_t: Any, t: int) -> Any:
        x_c, x_u = x_t[:b], x_t[b:]
        out = batched_denoiser(concat([repeat(x_c, n + 1), repeat(x_u, n) if n > 1 else x_u]), t)
        k = (n + 1) * b
        x0_c = combine(out[:k], b, audio_guidance_scale, guidance_scale,
                       au_guidance_scale=au_guidance_scale, au_mask=au_mask)
        x0_u = combine(out[k:], b, audio_guidance_scale, guidance_scale)
        return concat([x0_u + anchor * (x0_c - x0_u), x0_u])

    return denoise
