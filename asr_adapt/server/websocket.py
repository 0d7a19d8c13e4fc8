"""``WebSocket /v1/live?model=NAME``: live transcription of a stream of PCM frames.

The protocol (docs/serving.md; the web page speaks exactly this):

* auth: ``Authorization: Bearer KEY``, or ``?api_key=KEY`` (browsers cannot set headers);
* client -> server: binary frames of 16 kHz mono 16-bit little-endian PCM; the text frame
  ``{"type": "stop"}`` ends the stream;
* server -> client: ``{"type": "ready", "model": NAME}``, then ``partial`` and ``final``
  events (:mod:`asr_adapt.server.streams`); after stop the last finals and ``{"type": "done"}``,
  then the server closes (1000);
* errors: ``{"type": "error", "message", "code"}``, then a close with 1008 (the key, the
  model, a limit), 1003 (data that is not the protocol's) or 1011 (the server failed).
"""

from __future__ import annotations

import asyncio
import json
import logging
from urllib.parse import urlsplit

import numpy as np
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from asr_adapt.audio.io import SAMPLE_RATE
from asr_adapt.core.errors import AsrAdaptError
from asr_adapt.server.errors import ApiError
from asr_adapt.server.names import resolve
from asr_adapt.server.streams import LiveStream, pcm16_to_float

log = logging.getLogger(__name__)

POLICY, BAD_DATA, SERVER_ERROR = 1008, 1003, 1011
#: Audio waiting to be transcribed, at most (a client far ahead of the model is refused).
MAX_PENDING_SECONDS = 30.0


class StreamRefused(Exception):
    """End the stream with an error event and a close code."""

    def __init__(self, message: str, code: str, close_code: int) -> None:
        super().__init__(message)
        self.message, self.code, self.close_code = message, code, close_code


class _Inbox:
    """Audio received and not yet fed, and whether the client said stop."""

    def __init__(self) -> None:
        self.blocks: list[np.ndarray] = []
        self.samples = 0
        self.stopped = False
        self.arrived = asyncio.Event()

    def put(self, block: np.ndarray) -> None:
        if self.samples + len(block) > MAX_PENDING_SECONDS * SAMPLE_RATE:
            raise StreamRefused(f"audio arrives faster than it is transcribed ({MAX_PENDING_SECONDS:.0f} s waiting); "
                                "send it at its own pace", "too_fast", POLICY)
        self.blocks.append(block)
        self.samples += len(block)
        self.arrived.set()

    def stop(self) -> None:
        self.stopped = True
        self.arrived.set()

    def take(self) -> np.ndarray:
        audio = np.concatenate(self.blocks) if self.blocks else np.zeros(0, dtype=np.float32)
        self.blocks, self.samples = [], 0
        self.arrived.clear()
        return audio


def same_origin(websocket: WebSocket) -> bool:
    """A browser's page may only open streams to the server that served it: a page from
    elsewhere would otherwise use the key a browser sends for it (or a loopback server
    without keys). Clients that are not browsers send no Origin."""
    origin = websocket.headers.get("origin")
    return origin is None or urlsplit(origin).netloc.lower() == websocket.headers.get("host", "").lower()


async def live_endpoint(websocket: WebSocket, server) -> None:
    """Serve one stream; ``server`` is the app's :class:`~asr_adapt.server.app.ServerState`."""
    await websocket.accept()
    key_id = None
    try:
        if not same_origin(websocket) or not server.host_allowed(websocket.url.hostname):
            raise StreamRefused("this page's origin may not open streams here", "forbidden_origin", POLICY)
        key = websocket.query_params.get("api_key") or None
        caller = server.authenticate(websocket.headers.get("authorization"), key)
        if caller is None:
            raise StreamRefused("missing or invalid API key: send 'Authorization: Bearer KEY' or ?api_key=KEY",
                                "invalid_api_key", POLICY)
        ref = await _resolve(websocket.query_params.get("model", ""), caller, server)
        if server.streams[caller.key_id] >= server.options.max_streams_per_key:
            raise StreamRefused(f"this key already has {server.options.max_streams_per_key} live streams open",
                                "too_many_streams", POLICY)
        key_id = caller.key_id
        server.streams[key_id] += 1
        stream = await server.engine.open_stream(ref)
        await websocket.send_json({"type": "ready", "model": ref.name})
        await _serve(websocket, stream, server.options.request_timeout)
        await websocket.close(1000)
    except StreamRefused as refused:
        await _refuse(websocket, refused.message, refused.code, refused.close_code)
    except WebSocketDisconnect:
        pass
    except (AsrAdaptError, TimeoutError) as error:
        await _refuse(websocket, str(error) or "the stream took too long", "stream_failed", SERVER_ERROR)
    finally:
        if key_id is not None:
            server.streams[key_id] -= 1


async def _resolve(name: str, caller, server):
    try:
        return await run_in_threadpool(resolve, name, caller, server.options)
    except ApiError as error:
        raise StreamRefused(error.message, error.code, POLICY) from None


async def _refuse(websocket: WebSocket, message: str, code: str, close_code: int) -> None:
    if websocket.application_state != WebSocketState.CONNECTED:
        return
    try:
        await websocket.send_json({"type": "error", "message": message, "code": code})
        await websocket.close(close_code)
    except (WebSocketDisconnect, RuntimeError):
        pass  # the client left meanwhile


async def _serve(websocket: WebSocket, stream: LiveStream, idle_seconds: float) -> None:
    """Read frames and feed them at the model's pace until stop; then finish and say done."""
    inbox = _Inbox()
    reader = asyncio.create_task(_read(websocket, inbox, idle_seconds))
    stepper = asyncio.create_task(_step(websocket, stream, inbox))
    try:
        done, _ = await asyncio.wait({reader, stepper}, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            task.result()  # a refusal or a disconnect, raised here
        await stepper
    finally:
        for task in (reader, stepper):
            task.cancel()
        await stream.close()


async def _read(websocket: WebSocket, inbox: _Inbox, idle_seconds: float) -> None:
    while True:
        try:
            message = await asyncio.wait_for(websocket.receive(), timeout=idle_seconds)
        except TimeoutError:
            raise StreamRefused(f"nothing received for {idle_seconds:.0f} s", "idle", POLICY) from None
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        if message.get("bytes") is not None:
            try:
                samples = pcm16_to_float(message["bytes"])
            except AsrAdaptError as error:
                raise StreamRefused(str(error), "invalid_audio", BAD_DATA) from None
            inbox.put(samples)
        elif _is_stop(message.get("text")):
            inbox.stop()
            return
        else:
            raise StreamRefused('text frames must be the JSON message {"type": "stop"}; audio goes in binary frames',
                                "invalid_message", BAD_DATA)


def _is_stop(text: str | None) -> bool:
    try:
        data = json.loads(text or "")
    except ValueError:
        return False
    return isinstance(data, dict) and data.get("type") == "stop"


async def _step(websocket: WebSocket, stream: LiveStream, inbox: _Inbox) -> None:
    while True:
        await inbox.arrived.wait()
        stopped = inbox.stopped
        audio = inbox.take()
        events = await stream.feed(audio) if len(audio) else []
        if stopped:
            events += await stream.finish()
        for event in events:
            await websocket.send_json(event)
        if stopped:
            await websocket.send_json({"type": "done"})
            return


__all__ = ["live_endpoint", "same_origin"]
