"""The server: :func:`create_app` builds the FastAPI app (OpenAI's transcription endpoint, the
model list, health, the live WebSocket, the web page) over an engine, and :func:`serve`
runs it with uvicorn.

Every request is authenticated first (``Authorization: Bearer KEY``, see
:mod:`asr_adapt.server.keys`), its model resolved for its key (:mod:`asr_adapt.server.names`),
its upload read within the limits (:mod:`asr_adapt.server.uploads`); only then does the engine
(:mod:`asr_adapt.server.engine`) see it. Every refusal is an OpenAI-style JSON error."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from contextlib import asynccontextmanager
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from asr_adapt import __version__
from asr_adapt.server.ct2_engine import local_engine
from asr_adapt.server.engine import Engine
from asr_adapt.server.errors import ApiError, error_body, install_error_handlers, unauthorized
from asr_adapt.server.keys import LOCAL, Caller, KeyRing, bearer_token
from asr_adapt.server.names import resolve, visible_models
from asr_adapt.server.options import ServeOptions, is_loopback
from asr_adapt.server.responses import render_response
from asr_adapt.server.uploads import decode_upload, read_form
from asr_adapt.server.websocket import live_endpoint

log = logging.getLogger("asr_adapt.server")

STATIC = Path(__file__).resolve().parent / "static"


class ServerState:
    """What the routes share: the options, the keys, the engine, live streams per key."""

    def __init__(self, options: ServeOptions, engine: Engine) -> None:
        self.options = options
        self.engine = engine
        self.keys = KeyRing(options.api_keys) if options.api_keys is not None else None
        self.streams: Counter = Counter()
        self.guard_host = self.keys is None and is_loopback(options.host)

    def authenticate(self, authorization: str | None, key: str | None = None) -> Caller | None:
        """The caller of a request (None: refuse it). Without a keys file, everyone is the
        local user: the server then only listens on loopback."""
        if self.keys is None:
            return LOCAL
        return self.keys.check(bearer_token(authorization) or key)

    def host_allowed(self, hostname: str | None) -> bool:
        """Whether a request may name this host: always, but on a loopback server without keys,
        which answers only to loopback names (against DNS rebinding: a page on a domain that
        resolves to 127.0.0.1 would otherwise be "same origin" with it)."""
        return not self.guard_host or is_loopback(hostname or "")

    def caller(self, request: Request) -> Caller:
        """The caller of an HTTP request; ApiError 401 when its key is missing or wrong."""
        caller = self.authenticate(request.headers.get("authorization"))
        if caller is None:
            raise unauthorized()
        return caller


def create_app(options: ServeOptions, engine: Engine | None = None) -> FastAPI:
    """The app over ``engine`` (default: a :class:`~asr_adapt.server.engine.LocalEngine` running
    the models here on ``options.engine``)."""
    state = ServerState(options, engine if engine is not None else local_engine(options))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        state.engine.close()

    app = FastAPI(title="asr-adapt", version=__version__, docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)
    app.state.server = state
    install_error_handlers(app)
    _add_checks(app, state)
    _add_api_routes(app, state)

    @app.websocket("/v1/live")
    async def live(websocket: WebSocket) -> None:
        await live_endpoint(websocket, state)

    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        page = STATIC / "index.html"
        if not page.is_file():
            raise ApiError(404, "the web page is not installed", "not_found")
        return FileResponse(page)

    if STATIC.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC), name="static")

    return app


def _add_api_routes(app: FastAPI, state: ServerState) -> None:
    options = state.options

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "version": __version__}

    @app.get("/v1/models")
    async def models(request: Request) -> dict:
        caller = state.caller(request)
        return {"object": "list", "data": await run_in_threadpool(visible_models, caller, options)}

    @app.post("/v1/audio/transcriptions")
    async def transcriptions(request: Request) -> Response:
        caller = state.caller(request)  # before a byte of the upload is read
        form = await read_form(request, options.max_upload_bytes)
        ref = await run_in_threadpool(resolve, form.model, caller, options)
        audio = await run_in_threadpool(decode_upload, form.data, form.filename, options.max_audio_seconds)
        try:
            transcript = await asyncio.wait_for(state.engine.transcribe(ref, audio, form.request),
                                                timeout=options.request_timeout)
        except TimeoutError:
            raise ApiError(504, f"the transcription took longer than the server's {options.request_timeout:.0f} s "
                                "limit; send shorter audio or try again later", "timeout", type="server_error") from None
        return render_response(transcript, form.response_format, form.request)


def _add_checks(app: FastAPI, state: ServerState) -> None:
    """Host header check (loopback without keys) and an access log without query strings
    (a browser's live stream carries its key in one)."""

    @app.middleware("http")
    async def checks(request: Request, call_next) -> Response:
        if not state.host_allowed(request.url.hostname):
            return JSONResponse(error_body("this server only answers requests to 127.0.0.1 or localhost",
                                           code="invalid_host"), status_code=400)
        response = await call_next(request)
        log.info("%s %s %s", request.method, request.url.path, response.status_code)
        return response


def serve(options: ServeOptions, engine: Engine | None = None) -> None:
    """Run the server until Ctrl-C."""
    config = uvicorn_config(create_app(options, engine), options)
    uvicorn.Server(config).run()


def uvicorn_config(app: FastAPI, options: ServeOptions):
    """uvicorn's settings: frames of at most 1 MiB (32 s of audio), no access log of its own."""
    return uvicorn.Config(app, host=options.host, port=options.port, ws_max_size=1 << 20, access_log=False,
                          log_level="info", timeout_graceful_shutdown=5)


__all__ = ["ServerState", "create_app", "serve", "uvicorn_config"]
