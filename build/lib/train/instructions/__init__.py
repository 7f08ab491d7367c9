"""Text instructions: the generated instruction corpus (``corpus``, ``phrases``), the text → AU
detector's training (``train``) and held-out evaluation (``evaluate``); run with
``python -m train.instructions``. The runtime side is ``cafetalk_rt.control.instructions``."""
