"""``cafetalk-rt serve``: the model behind a WebSocket (live streams), HTTP (whole clips) and a
live page (:mod:`cafetalk_rt.serve`). Loads the model once; Ctrl-C stops it cleanly."""
from __future__ import annotations

import argparse
import logging


def register(sub) -> None:
    """Add the ``serve`` subcommand (see ``cafetalk_rt.cli.main.SUBCOMMAND_MODULES``)."""
    from cafetalk_rt.backends import BACKENDS, DEFAULT_BACKEND

    p = sub.add_parser("serve", help="serve live streams (WebSocket /v1/stream), whole clips (POST /v1/animate) "
                                     "and a live page (/)",
                       description="Serve the model: live streams over a WebSocket at /v1/stream, POST /v1/animate, "
                                   "GET /healthz and a live page at /. Needs the [serve] extra.")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--backend", default=DEFAULT_BACKEND, choices=BACKENDS)
    p.add_argument("--device", default="cpu")
    p.add_argument("--model", default=None, help="denoiser checkpoint (default: the shipped model)")
    p.add_argument("--max-streams", type=int, default=8, help="live streams at once; more are refused (default 8)")
    p.add_argument("--max-buffer-s", type=float, default=10.0,
                   help="audio a stream may send ahead of the animation before its chunks are refused (default 10)")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the model, then serve until Ctrl-C; returns 0."""
    from cafetalk_rt.errors import InputError, MissingDependencyError

    if args.max_streams < 1:
        raise InputError(f"--max-streams must be at least 1, got {args.max_streams}")
    if not 0 < args.port < 65536:
        raise InputError(f"--port must be in 1..65535, got {args.port}")
    try:
        import uvicorn

        from cafetalk_rt.serve.app import create_app
    except ImportError as e:
        raise MissingDependencyError(f"cafetalk-rt serve needs FastAPI and uvicorn ({e.name} is missing): "
                                     "pip install 'cafetalk-rt[serve]'") from None
    from cafetalk_rt.pipeline import Animator

    logging.getLogger("cafetalk_rt").setLevel(args.log_level.upper())
    animator = Animator(args.model, backend=args.backend, device=args.device)
    app = create_app(animator, max_streams=args.max_streams, max_buffer_s=args.max_buffer_s)
    logging.getLogger(__name__).warning("cafetalk-rt serve: http://%s:%d/ (live page), ws://%s:%d/v1/stream",
                                        args.host, args.port, args.host, args.port)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0
