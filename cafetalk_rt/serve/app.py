"""The HTTP + WebSocket application of ``cafetalk-rt serve`` (FastAPI on uvicorn).

* ``GET /``: the live page (microphone or a file → the face, with the measured delay).
* ``GET /healthz``: model, backend, device, active streams (JSON).
* ``POST /v1/animate``: an audio file as the body → what ``cafetalk-rt animate`` writes.
* ``WS /v1/stream``: live streams (:mod:`cafetalk_rt.serve.protocol`), all advanced together by
  one :class:`~cafetalk_rt.serve.hub.StreamHub`.

Importing this module needs FastAPI (the ``[serve]`` extra). No ``from __future__ import
annotations`` here: FastAPI reads the endpoints' annotations at run time.
"""
import asyncio
import logging
import tempfile
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Optional

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from cafetalk_rt.errors import AudioInputError
from cafetalk_rt.serve.hub import StreamHub
from cafetalk_rt.serve.protocol import ProtocolError, parse_control, parse_start, parse_text

log = logging.getLogger(__name__)
MEDIA_TYPES = {"npz": "application/octet-stream", "csv": "text/csv", "json": "application/json"}


def create_app(animator, *, max_streams: int = 8, max_buffer_s: float = 10.0, max_outbox: int = 256):
    """The ASGI app serving ``animator`` (a loaded :class:`~cafetalk_rt.pipeline.Animator`).

    Args:
        max_streams: WebSocket connections at once; more are refused with a message.
        max_buffer_s: audio a stream may send ahead of the computation, seconds.
        max_outbox: messages a client may leave unread before its stream is dropped.
    """
    from cafetalk_rt.serve.page import live_page

    hub = StreamHub(animator, max_streams=max_streams, max_buffer_s=max_buffer_s, max_outbox=max_outbox)
    connections = {"open": 0}

    @asynccontextmanager
    async def lifespan(app):
        task = asyncio.create_task(hub.run())
        log.info("serving %s on the %s backend", animator.model_path.name, animator.backend.name)
        yield
        task.cancel()
        hub.shutdown()

    app = FastAPI(title="cafetalk-rt", lifespan=lifespan)
    app.state.hub = hub

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return live_page()

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok", "model": str(animator.model_path), "backend": animator.backend.name,
                "device": getattr(animator.backend, "device", "cpu"), "active_streams": len(hub.sessions),
                "connections": connections["open"], "max_streams": max_streams,
                "streams_served": hub.streams_served, "rounds": hub.rounds}

    @app.post("/v1/animate")
    async def animate(request: Request, emotion: str = "neutral", intensity: int = 2, seed: int = 0, blinks: bool = True,
                      num_inference_steps: Optional[int] = None, au: str = "", format: str = "npz",
                      filename: str = "request body"):
        body = await request.body()
        try:
            data = await run_in_threadpool(animate_bytes, animator, body, filename, emotion=emotion,
                                           intensity=intensity, seed=seed, blinks=blinks,
                                           num_inference_steps=num_inference_steps,
                                           au=au, fmt=format)
        except (ValueError, FileNotFoundError) as e:  # InputError, AudioInputError: the CLI's message
            return JSONResponse({"error": str(e)}, status_code=422 if isinstance(e, AudioInputError) else 400)
        return Response(data, media_type=MEDIA_TYPES[format])

    @app.websocket("/v1/stream")
    async def stream(ws: WebSocket) -> None:
        await ws.accept()
        outbox: asyncio.Queue = asyncio.Queue(maxsize=max_outbox)
        if connections["open"] >= max_streams:
            await ws.send_json({"type": "error", "message": f"the server is at its limit of {max_streams} live "
                                "streams (cafetalk-rt serve --max-streams); try again later"})
            await ws.close(code=1013)
            return
        connections["open"] += 1
        state = {"session": None}
        sender = asyncio.create_task(_send_loop(ws, outbox, state))
        try:
            await _receive_loop(ws, hub, outbox, state)
        finally:
            connections["open"] -= 1
            if state["session"] is not None:
                hub.close(state["session"])
            sender.cancel()

    return app


async def _receive_loop(ws, hub: StreamHub, outbox: asyncio.Queue, state: dict) -> None:
    """Read messages until the client leaves; protocol errors are answered, not fatal."""
    while True:
        msg = await ws.receive()
        if msg["type"] == "websocket.disconnect":
            return
        session = state["session"]
        live = session is not None and not session.closed
        try:
            if msg.get("bytes") is not None:
                if not live:
                    raise ProtocolError('binary audio before start: send {"type": "start", …} first')
                hub.audio(session, msg["bytes"])
                continue
            m = parse_text(msg.get("text") or "")
            if m["type"] == "start":
                if live:
                    raise ProtocolError("a stream is already running on this connection; send end and wait for done")
                state["session"] = hub.open(parse_start(m), outbox)
                outbox.put_nowait(state["session"].ready_message())
            elif not live:
                raise ProtocolError(f'{m["type"]} before start: send {{"type": "start", …}} first')
            elif m["type"] == "control":
                hub.control(session, *parse_control(m))
            else:
                hub.end(session)
        except ProtocolError as e:
            try:
                outbox.put_nowait({"type": "error", "message": str(e)})
            except asyncio.QueueFull:
                return  # the client reads nothing: hang up


async def _send_loop(ws, outbox: asyncio.Queue, state: dict) -> None:
    """Send queued messages in order; a dropped stream's reason ends the connection."""
    while True:
        message = await outbox.get()
        session = state["session"]
        if session is not None and session.fatal:
            await ws.send_json({"type": "error", "message": session.fatal})
            await ws.close(code=1008)
            return
        await ws.send_json(message)


def animate_bytes(animator, body: bytes, filename: str, *, emotion: str, intensity: int, seed: int, blinks: bool,
                  num_inference_steps: int | None, au: str, fmt: str) -> bytes:
    """What ``cafetalk-rt animate FILE -o out.<fmt>`` writes, for the audio file bytes ``body``.

    Raises:
        AudioInputError: the bytes are not readable audio (the CLI's message, naming ``filename``).
        InputError: a bad option or format.
    """
    from cafetalk_rt.audio import load_audio_bytes
    from cafetalk_rt.errors import InputError
    from cafetalk_rt.options import AnimateOptions, animation_metadata
    from cafetalk_rt.writers import save_animation

    if fmt not in MEDIA_TYPES:
        raise InputError(f"format must be one of {', '.join(MEDIA_TYPES)}, got {fmt!r}")
    kw = {} if num_inference_steps is None else {"num_inference_steps": num_inference_steps}
    options = AnimateOptions(emotion=emotion, intensity=intensity, seed=seed, blinks=blinks, au_spans=au, **kw)
    audio = load_audio_bytes(body, filename)
    anim = animator.animate(audio, options, name=filename, prepared=True)
    with tempfile.TemporaryDirectory() as d:
        path = save_animation(Path(d) / f"out.{fmt}", anim.blendshapes, anim.fps,
                              metadata=animation_metadata(options, animator.model_path, filename, au=au))
        return path.read_bytes()
