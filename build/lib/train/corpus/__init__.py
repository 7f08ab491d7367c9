"""Training-corpus generation: TTS speech with exact phone timing → ARKit curves + emotion,
plus importers for real captures. Uses GPL TTS engines (Piper, espeak-ng) and openfacefx, all
in the ``[train]`` extra; the runtime (``cafetalk_rt``) never imports this package.

Modules: ``sentences`` (text source and split rule), ``tts`` (speech + phone timings),
``face`` (phones → blendshapes, emotion, blinks), ``format`` (on-disk clip format),
``livelink`` (Live Link Face CSV importer), ``generate`` (parallel corpus generation).
CLI: ``python -m train.corpus {generate,import-livelink,summary}``.
"""
