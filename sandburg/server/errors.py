"""API errors: one JSON shape, a stable `code`, the right status — never a traceback.

    {"statusCode": 404, "error": "Not Found", "message": "...", "code": "SANDBOX_NOT_FOUND", "source": "sandburg"}

Toolbox codes (files, exec timeout) say `"source": "DAYTONA_DAEMON"` so that Daytona's SDKs raise their own
matching exception classes.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .._codes import STATUS, TOOLBOX_CODES, ErrorCode

log = logging.getLogger("sandburg.server")


class ApiError(Exception):
    def __init__(
        self, code: ErrorCode, message: str, *, details: list[Any] | None = None, **extra: Any
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = STATUS[code]
        self.details = details
        self.extra = extra


def error_body(code: ErrorCode, message: str, status: int | None = None, **extra: Any) -> dict[str, Any]:
    status = status or STATUS[code]
    body: dict[str, Any] = {
        "statusCode": status,
        "error": HTTPStatus(status).phrase,
        "message": message,
        "code": code.value,
        "source": "DAYTONA_DAEMON" if code in TOOLBOX_CODES else "sandburg",
    }
    body.update({k: v for k, v in extra.items() if v is not None})
    return body


def error_response(code: ErrorCode, message: str, status: int | None = None, **extra: Any) -> JSONResponse:
    body = error_body(code, message, status, **extra)
    return JSONResponse(body, status_code=body["statusCode"])


_STATUS_CODES = {
    400: ErrorCode.BAD_REQUEST,
    401: ErrorCode.UNAUTHORIZED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.BAD_REQUEST,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    429: ErrorCode.RATE_LIMITED,
}


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_req: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.code, exc.message, details=exc.details, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(_req: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        first = details[0] if details else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"] if p not in ("body", "query", "path"))
        msg = f"{where}: {first['msg']}" if where else str(first["msg"])
        return error_response(ErrorCode.VALIDATION_ERROR, msg, details=details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(req: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code in (404, 405):  # no route: a Daytona endpoint sandburg lacks yet is a typed 501
            from .unsupported import not_implemented

            missing = not_implemented(req.method, req.url.path)
            if missing is not None:
                return error_response(missing.code, missing.message)
        code = _STATUS_CODES.get(
            exc.status_code, ErrorCode.INTERNAL_ERROR if exc.status_code >= 500 else ErrorCode.BAD_REQUEST
        )
        return error_response(code, str(exc.detail), status=exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(req: Request, exc: Exception) -> JSONResponse:
        cause: BaseException | None = exc
        while cause is not None and not hasattr(cause, "sqlite_errorname"):
            cause = cause.__cause__ or cause.__context__
        detail = f" (sqlite: {getattr(cause, 'sqlite_errorname', '')})" if cause is not None else ""
        log.exception("unhandled error on %s %s%s", req.method, req.url.path, detail)
        return error_response(
            ErrorCode.INTERNAL_ERROR, f"internal error ({type(exc).__name__}); see the server log"
        )
