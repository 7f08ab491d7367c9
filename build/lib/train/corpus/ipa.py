"""Engine IPA phone labels → ARPAbet phones for ``openfacefx`` (its JALI rules, diphthong
splitting and viseme table are keyed by ARPAbet).

No viseme table is written here: every symbol is resolved through ``openfacefx`` data —
``openfacefx.phonemes.from_ipa`` (its IPA↔ARPAbet aliases) first, and otherwise the viseme that
``openfacefx.ipa.IPA_MAPPING`` assigns, represented by the first ARPAbet phone
``openfacefx.visemes.PHONEME_TO_VISEME`` lists for that viseme (a vowel for vowels).

espeak writes some phones as several symbols (``"əl"``, ``"ʌʊ"``, ``"ɔːɹ"``, ``"ei"``) that the
library does not list: labels are tokenised greedily (longest known symbol first) and the
phone's time is split evenly across its tokens. ``ᵻ`` (espeak's reduced ``ɪ``), the only symbol
seen that the library lacks, is aliased to ``ɪ``. A label with no known symbol (a stray modifier)
repeats the previous phone. Stress marks become ARPAbet stress digits on the first vowel.
"""
from __future__ import annotations

import logging
import unicodedata
from functools import lru_cache

log = logging.getLogger(__name__)

SILENCE_LABELS = frozenset({"_", "sil", "sp", "spn", "pau", "^", "$", "h#", "#", "epi", ""})
_ALIASES = {"ᵻ": "ɪ"}
_STRIP = {"ː", "ˑ", "ʰ", "ʲ", "ʷ", "'", ":", "ˈ", "ˌ"}


#: Extended-ARPAbet labels (TIMIT / CMU ARCTIC) → the 39-phone set openfacefx knows.
ARPABET_ALIASES = {"AX": "AH", "AXR": "ER", "IX": "IH", "UX": "UW", "DX": "T", "NX": "N",
                   "EL": "L", "EM": "M", "EN": "N", "AXH": "AH", "HV": "HH"}


def arpabet_phone(label: str) -> list[str]:
    """One ARPAbet label (any case, optional stress digit) → ``[ARPAbet]``, ``[]`` for silence."""
    if label.lower() in SILENCE_LABELS:
        return []
    digit = label[-1] if label[-1:].isdigit() else ""
    base = label.upper().rstrip("012")
    return [ARPABET_ALIASES.get(base, base) + digit]


def normalize(label: str) -> str:
    """Drop stress/length marks, secondary-articulation letters and combining diacritics."""
    return "".join(ch for ch in label if ch not in _STRIP and not unicodedata.combining(ch))


@lru_cache(maxsize=1)
def _tables() -> tuple[dict[str, str], int]:
    """(IPA symbol → ARPAbet, longest symbol length) built from openfacefx's tables."""
    from openfacefx.ipa import IPA_MAPPING, is_ipa_vowel
    from openfacefx.phonemes import ARPABET, ARPABET_VOWELS, from_ipa
    from openfacefx.visemes import PHONEME_TO_VISEME

    rep_vowel, rep_cons = {}, {}
    for ph, vis in PHONEME_TO_VISEME.items():
        (rep_vowel if ph in ARPABET_VOWELS else rep_cons).setdefault(vis, ph)
    table = {}
    for sym, row in IPA_MAPPING.rows.items():
        if sym in SILENCE_LABELS:
            continue
        arpa = from_ipa(sym)
        if arpa not in ARPABET:
            vis = max(row, key=row.get)
            reps = (rep_vowel, rep_cons) if is_ipa_vowel(sym) else (rep_cons, rep_vowel)
            arpa = reps[0].get(vis) or reps[1][vis]
        table[sym] = arpa
    return table, max(len(s) for s in table)


def to_arpabet(label: str) -> list[str]:
    """ARPAbet phones for one engine label (``[]`` for a silence or an unknown symbol).

    Example: ``"ˈaɪ"`` → ``["AY1"]``, ``"əl"`` → ``["AA0", "L"]``, ``"_"`` → ``[]``.
    """
    from openfacefx.phonemes import ARPABET_VOWELS

    if label in SILENCE_LABELS:
        return []
    digit = "1" if "ˈ" in label else "2" if "ˌ" in label else "0"
    text = "".join(_ALIASES.get(ch, ch) for ch in normalize(label))
    table, longest = _tables()
    out, i = [], 0
    while i < len(text):
        for n in range(min(longest, len(text) - i), 0, -1):
            if text[i:i + n] in table:
                out.append(table[text[i:i + n]])
                i += n
                break
        else:
            log.debug("unknown IPA symbol %r in %r", text[i], label)
            i += 1
    for k, ph in enumerate(out):
        if ph in ARPABET_VOWELS:
            out[k] = ph + digit
            break
    return [p for k, p in enumerate(out) if k == 0 or p.rstrip("012") != out[k - 1].rstrip("012")]
