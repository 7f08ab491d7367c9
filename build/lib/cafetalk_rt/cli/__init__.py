"""The ``cafetalk-rt`` command line: ``main`` parses flags into options and calls the library.

Sub-commands live one per module: ``animate`` (``main``), ``export`` (``export``), preview flags
(``preview``); ``batch`` plans and runs many files.
"""
from cafetalk_rt.cli.main import main

__all__ = ["main"]
