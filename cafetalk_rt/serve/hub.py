"""All live streams of a server on one model: one batched streaming-step call per round.

:class:`StreamHub` owns the :class:`~cafetalk_rt.longform.live.LiveStream` of every connection.
One asyncio task (:meth:`StreamHub.run`) repeats: take what the connections received (audio,
controls, ends) into their streams, run ONE round of hops for every stream with a hop of audio
(:func:`~cafetalk_rt.longform.live.advance_round`, in a worker thread so the event loop keeps
reading sockets), then queue each stream's new final frames on its connection's outbox. A
connection's receive and send sides only touch its :class:`Session`'s inbox and outbox, so:

* a stream that stalls (no audio) is simply not in the round; one that leaves is dropped between
  rounds; neither changes what the others compute (their frames equal what each would get alone);
* a slow client fills only its own outbox; past ``max_outbox`` messages it is disconnected with
  an error, and the rounds never wait for a socket;
* a client that sends faster than real time has its audio queued up to ``max_buffer_s`` seconds
  ahead of the computation; beyond that its chunk is refused with an error that says so.
"""
from __future__ import annotations

import asyncio
import logging
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from cafetalk_rt.blendshapes import ARKIT_NAMES
from cafetalk_rt.frames import SAMPLE_RATE
from cafetalk_rt.longform.live import LIVE_NUM_INFERENCE_STEPS, LiveOptions, LiveStream, advance_round
from cafetalk_rt.options import AnimateOptions
from cafetalk_rt.serve.protocol import PcmDecoder, ProtocolError, StartRequest

log = logging.getLogger(__name__)


class Session:
    """One connection's live stream: an inbox the connection fills, an outbox it drains.

    Args:
        stream_id: the server's number for it (logs, /healthz).
        request: the parsed ``start`` message.
        stream: its LiveStream.
        outbox: the connection's queue of messages to send.
    """

    def __init__(self, stream_id: int, request: StartRequest, stream: LiveStream, outbox: asyncio.Queue):
        self.id, self.request, self.stream = stream_id, request, stream
        self.decoder = PcmDecoder(request.format)
        self.resampler = None
        if request.sample_rate != SAMPLE_RATE:
            import soxr

            self.resampler = soxr.ResampleStream(request.sample_rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
        self.inbox: deque = deque()  # ("audio", samples) / ("control", emotion, intensity) / ("end",)
        self.inbox_samples = 0
        self.outbox = outbox  # the connection's (bounded) queue of messages to send
        self.fatal: str | None = None  # set when the stream was dropped: the sender says why and hangs up
        self.ended = self.closed = False
        self.frames_sent = 0

    def ready_message(self) -> dict:
        r, live = self.request, self.stream.live
        return {"type": "ready", "stream_id": self.id, "fps": r.fps, "names": list(ARKIT_NAMES),
                "lookahead_ms": round(1e3 * live.lookahead_s, 3), "hop_ms": round(1e3 * live.hop_s, 3),
                "sample_rate": r.sample_rate, "format": r.format}

    @property
    def backlog_s(self) -> float:
        """Seconds of this stream's audio received but not yet computed."""
        return self.inbox_samples / SAMPLE_RATE + self.stream.buffered_s


class StreamHub:
    """The server's streams and the loop that advances them.

    Args:
        animator: the loaded model (its backend must stream: onnxruntime, torch, torch_cudagraph).
        max_streams: open streams at most; more are refused (:meth:`open` raises).
        max_buffer_s: a stream's audio backlog bound, seconds.
        max_outbox: a client's unread messages bound.
    """

    def __init__(self, animator, *, max_streams: int = 8, max_buffer_s: float = 10.0, max_outbox: int = 256):
        self.animator, self.max_streams = animator, max_streams
        self.max_buffer_s, self.max_outbox = max_buffer_s, max_outbox
        self.sessions: dict[int, Session] = {}
        self.rounds = self.streams_served = 0
        self._next_id = 0
        self._wake = asyncio.Event()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="cafetalk-hops")

    # -- called by connections (event-loop thread) -----------------------------------------------
    def open(self, request: StartRequest, outbox: asyncio.Queue) -> Session:
        """A new stream for ``request`` whose messages go to ``outbox`` (bounded: see ``max_outbox``).

        Raises:
            ProtocolError: the server is full, or the request cannot stream (e.g. a look-ahead with
                no graph: the message names the export command).
        """
        if len(self.sessions) >= self.max_streams:
            raise ProtocolError(f"the server is at its limit of {self.max_streams} live streams "
                                "(cafetalk-rt serve --max-streams); try again later")
        options = AnimateOptions(emotion=request.emotion, intensity=request.intensity, seed=request.seed,
                                 fps=request.fps, num_inference_steps=LIVE_NUM_INFERENCE_STEPS, blinks=request.blinks)
        try:
            stream = LiveStream(self.animator, options, LiveOptions(lookahead_s=request.lookahead_ms / 1e3))
        except (ValueError, ImportError) as e:  # InputError, MissingDependencyError
            raise ProtocolError(str(e)) from None
        self._next_id += 1
        session = Session(self._next_id, request, stream, outbox)
        self.sessions[session.id] = session
        log.info("stream %d opened (%s)", session.id, request)
        return session

    def audio(self, session: Session, data: bytes) -> None:
        """Queue a binary PCM message.

        Raises:
            ProtocolError: non-finite samples, or the backlog would pass ``max_buffer_s``
                (the chunk is not taken; send it again once frames have come back).
        """
        if session.ended:
            raise ProtocolError("audio after end; send a new start message for a new stream")
        x = session.decoder.decode(data)
        if session.resampler is not None:
            x = session.resampler.resample_chunk(x)
        if session.backlog_s + x.size / SAMPLE_RATE > self.max_buffer_s:
            raise ProtocolError(f"audio arrives faster than real time: {session.backlog_s:.1f} s are waiting to be "
                                f"animated (bound {self.max_buffer_s:g} s); this chunk was dropped, resend it "
                                "after more frames have arrived")
        self._put(session, ("audio", np.asarray(x, np.float32)), x.size)

    def control(self, session: Session, emotion: str | None, intensity: int | None) -> None:
        """Queue an emotion/intensity change at the current stream time."""
        if session.ended:
            raise ProtocolError("control after end; send a new start message for a new stream")
        self._put(session, ("control", emotion, intensity), 0)

    def end(self, session: Session) -> None:
        """Queue the end of the audio; the last frames and ``done`` follow."""
        if session.ended:
            raise ProtocolError("end was already sent")
        if session.resampler is not None:
            tail = session.resampler.resample_chunk(np.zeros(0, np.float32), last=True)
            self._put(session, ("audio", np.asarray(tail, np.float32)), tail.size)
        session.ended = True
        self._put(session, ("end",), 0)

    def close(self, session: Session) -> None:
        """Forget a stream (its client left or is too slow); the others go on."""
        if self.sessions.pop(session.id, None) is not None:
            session.closed = True
            log.info("stream %d closed after %d frames", session.id, session.frames_sent)

    def _put(self, session: Session, event: tuple, samples: int) -> None:
        session.inbox.append(event)
        session.inbox_samples += samples
        self._wake.set()

    # -- the loop ----------------------------------------------------------------------------------
    async def run(self) -> None:
        """Advance the streams until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while True:
                self._take_inboxes()
                sessions = list(self.sessions.values())
                streams = [s.stream for s in sessions]
                ran = await loop.run_in_executor(self._pool, advance_round, streams)
                self.rounds += ran
                self._deliver(sessions)
                if not ran and not any(s.inbox for s in self.sessions.values()):
                    break

    def _take_inboxes(self) -> None:
        for s in list(self.sessions.values()):
            while s.inbox:
                event = s.inbox.popleft()
                try:
                    if event[0] == "audio":
                        s.inbox_samples -= event[1].size
                        s.stream.append(event[1])
                    elif event[0] == "control":
                        s.stream.set_emotion(event[1], event[2])
                    else:
                        s.stream.end()
                except ValueError as e:  # InputError / AudioInputError: e.g. a silent stream
                    self._send(s, {"type": "error", "message": str(e)})
                    self.close(s)
                    break

    def _deliver(self, sessions: list[Session]) -> None:
        for s in sessions:
            if s.closed:
                continue
            done = s.stream.done
            frames = s.stream.take(final=done)
            if len(frames):
                self._send(s, {"type": "frames", "start": s.frames_sent,
                               "blendshapes": np.round(frames.astype(np.float64), 6).tolist()})
                s.frames_sent += len(frames)
            if done and not s.closed:
                self._send(s, {"type": "done", "frames": s.frames_sent})
                self.streams_served += 1
                self.close(s)

    def _send(self, session: Session, message: dict) -> None:
        try:
            session.outbox.put_nowait(message)
        except asyncio.QueueFull:
            log.warning("stream %d: client reads too slowly (%d messages unread); dropped", session.id,
                        session.outbox.qsize())
            self.close(session)
            session.fatal = f"you read too slowly ({session.outbox.qsize()} messages unread); the stream was dropped"

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

