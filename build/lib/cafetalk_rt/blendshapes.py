"""The 52 ARKit blendshape names and the channel groups the rest of the code refers to.

Order is Apple's ``ARFaceAnchor.BlendShapeLocation`` documentation order, which is also the
column order of Live Link Face CSV files (``EyeBlinkLeft`` … ``TongueOut``). Every
``blendshapes`` array in this project is ``(..., 52)`` float32 in ``[0, 1]`` in this order.
"""
from __future__ import annotations

ARKIT_NAMES: tuple[str, ...] = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft",
    "eyeSquintLeft", "eyeWideLeft",
    "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight",
    "eyeSquintRight", "eyeWideRight",
    "jawForward", "jawLeft", "jawRight", "jawOpen",
    "mouthClose", "mouthFunnel", "mouthPucker", "mouthLeft", "mouthRight",
    "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthUpperUpLeft", "mouthUpperUpRight",
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight",
    "noseSneerLeft", "noseSneerRight",
    "tongueOut",
)
NUM_BLENDSHAPES = len(ARKIT_NAMES)
assert NUM_BLENDSHAPES == 52

INDEX: dict[str, int] = {name: i for i, name in enumerate(ARKIT_NAMES)}

#: Live Link Face CSV column names (capitalised ARKit names), same order as ``ARKIT_NAMES``.
LIVELINK_NAMES: tuple[str, ...] = tuple(n[0].upper() + n[1:] for n in ARKIT_NAMES)

#: Jaw and lip channels: the ones speech drives and lip-sync metrics are computed on.
MOUTH_NAMES: tuple[str, ...] = tuple(
    n for n in ARKIT_NAMES if n.startswith(("jaw", "mouth")) or n in ("cheekPuff", "tongueOut")
)
#: Brows, eyes, cheeks and nose: the channels emotion and blinks drive.
UPPER_FACE_NAMES: tuple[str, ...] = tuple(n for n in ARKIT_NAMES if n not in MOUTH_NAMES)


def indices(names: "tuple[str, ...] | list[str]") -> list[int]:
    """Channel indices of ``names`` in ``ARKIT_NAMES`` order.

    Raises:
        KeyError: an unknown name, with the list of valid names.
    """
    out = []
    for name in names:
        if name not in INDEX:
            raise KeyError(f"unknown ARKit blendshape {name!r}; valid names: {', '.join(ARKIT_NAMES)}")
        out.append(INDEX[name])
    return out


MOUTH_IDX = indices(MOUTH_NAMES)
UPPER_FACE_IDX = indices(UPPER_FACE_NAMES)
