"""Coarse conditions: emotion labels (neutral + MEAD's seven) and intensity levels 1–3."""
from __future__ import annotations

EMOTIONS: tuple[str, ...] = (
    "neutral", "angry", "contempt", "disgusted", "fear", "happy", "sad", "surprised",
)
NUM_EMOTIONS = len(EMOTIONS)
INTENSITIES: tuple[int, ...] = (1, 2, 3)

#: Common synonyms users type, mapped to the label the model knows. The paper uses a CLIP text
#: embedding of the label so synonyms work; we use a learned table plus this map (our choice).
SYNONYMS: dict[str, str] = {
    "anger": "angry", "mad": "angry", "furious": "angry", "contemptuous": "contempt",
    "disgust": "disgusted", "fearful": "fear", "afraid": "fear", "scared": "fear",
    "joy": "happy", "joyful": "happy", "glad": "happy", "sadness": "sad", "unhappy": "sad",
    "surprise": "surprised", "calm": "neutral", "none": "neutral",
}


def emotion_index(name: str) -> int:
    """Index of an emotion label (case-insensitive, synonyms accepted).

    Raises:
        ValueError: unknown label, listing the accepted ones.
    """
    key = str(name).strip().lower()
    key = SYNONYMS.get(key, key)
    if key not in EMOTIONS:
        raise ValueError(f"unknown emotion {name!r}; use one of: {', '.join(EMOTIONS)}")
    return EMOTIONS.index(key)


def check_intensity(level: int) -> int:
    """Validate an intensity level; raises ValueError unless it is 1, 2 or 3."""
    if isinstance(level, bool) or level not in INTENSITIES:
        raise ValueError(f"intensity must be 1, 2 or 3, got {level!r}")
    return int(level)
