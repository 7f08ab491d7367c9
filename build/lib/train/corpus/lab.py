"""HTK phone-label reader for corpus tools. The implementation lives in the runtime package
(``train.phones``, stdlib only) so tests and the runtime can use it without ``train``."""
from train.phones import BILABIALS, SILENCES, VOWELS, base_phone, read_phone_lab

__all__ = ["BILABIALS", "SILENCES", "VOWELS", "base_phone", "read_phone_lab"]
