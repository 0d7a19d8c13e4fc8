"""Errors as OpenAI's API gives them: ``{"error": {"message", "type", "param", "code"}}``
with a 4xx status for every bad request, so that a client (and the ``openai`` package) reads
one line of what went wrong, never a traceback."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from asr_adapt.core.errors import AsrAdaptError, AudioError, OptionsError

log = logging.getLogger(__name__)

INVALID_REQUEST = "invalid_request_error"


class ApiError(Exception):
    """A request the server answers with ``status`` and an OpenAI-style error body."""

    def __init__(self, status: int, message: str, code: str, type: str = INVALID_REQUEST,
                 param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.type, self.param = status, message, code, type, param


def error_body(message: str, type: str = INVALID_REQUEST, code: str | None = None, param: str | None = None) -> dict:
    """OpenAI's error object."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def unauthorized() -> ApiError:
    """401: no key, or one the keys file does not hold."""
    return ApiError(401, "missing or invalid API key: send 'Authorization: Bearer KEY'", "invalid_api_key",
                    type="authentication_error")


def model_not_found(name: str) -> ApiError:
    """The same answer for a model that is not there and one the key may not use, so that
    nobody learns which profile names exist."""
    shown = name if len(name) <= 64 else name[:61] + "..."
    return ApiError(404, f"the model {shown!r} does not exist or you do not have access to it",
                    "model_not_found", param="model")


def too_large(message: str) -> ApiError:
    """413: an upload or audio past the server's limits."""
    return ApiError(413, message, "request_too_large")


#: Status and code of the library's own one-line errors.
_LIBRARY_ERRORS = ((AudioError, "invalid_audio"), (OptionsError, "invalid_value"))


def library_error(error: AsrAdaptError) -> ApiError:
    """400 with the library's own one-line message (bad audio, a bad option)."""
    code = next((c for kind, c in _LIBRARY_ERRORS if isinstance(error, kind)), "invalid_request")
    return ApiError(400, str(error), code)


def _respond(error: ApiError) -> JSONResponse:
    return JSONResponse(error_body(error.message, error.type, error.code, error.param), status_code=error.status)


def _validation_message(error: RequestValidationError) -> tuple[str, str | None]:
    problems = error.errors()
    if not problems:
        return "invalid request", None
    first = problems[0]
    where = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "header", "form")]
    param = ".".join(where) or None
    return (f"{param}: {first.get('msg', 'invalid value')}" if param else str(first.get("msg"))), param


def install_error_handlers(app: FastAPI) -> None:
    """Every error the app can meet, answered as OpenAI answers it."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        return _respond(error)

    @app.exception_handler(AsrAdaptError)
    async def asr_adapt_error(request: Request, error: AsrAdaptError) -> JSONResponse:
        return _respond(library_error(error))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(error)
        return _respond(ApiError(400, message, "invalid_value", param=param))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        codes = {400: "invalid_multipart", 404: "not_found", 405: "method_not_allowed"}
        detail = error.detail if isinstance(error.detail, str) else "invalid request"
        response = _respond(ApiError(error.status_code, detail, codes.get(error.status_code, "http_error")))
        for name, value in (error.headers or {}).items():
            response.headers[name] = value
        return response

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error serving %s", request.url.path)
        return JSONResponse(error_body("the server failed to handle this request", "server_error", "internal_error"),
                            status_code=500)


__all__ = ["ApiError", "error_body", "install_error_handlers", "library_error", "model_not_found", "too_large",
           "unauthorized"]
