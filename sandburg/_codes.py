"""Stable error codes shared by the server and the SDKs.

Every error the API returns carries one of these in its `code` field, with the HTTP status listed here.
Codes that Daytona's SDKs recognise (with `source: DAYTONA_DAEMON`) keep Daytona's spelling, so the
official Daytona clients raise their own matching exception types.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    # 400
    BAD_REQUEST = "BAD_REQUEST"
    VALIDATION_ERROR = "VALIDATION_ERROR"
    INVALID_FILE_PATH = "INVALID_FILE_PATH"
    NOT_A_DIRECTORY = "NOT_A_DIRECTORY"
    IS_A_DIRECTORY = "IS_A_DIRECTORY"
    # 401 / 403
    UNAUTHORIZED = "UNAUTHORIZED"
    FORBIDDEN = "FORBIDDEN"
    FILE_ACCESS_DENIED = "FILE_ACCESS_DENIED"
    # 404
    NOT_FOUND = "NOT_FOUND"
    SANDBOX_NOT_FOUND = "SANDBOX_NOT_FOUND"
    IMAGE_NOT_FOUND = "IMAGE_NOT_FOUND"
    FILE_NOT_FOUND = "FILE_NOT_FOUND"
    # 408
    PROCESS_EXECUTION_TIMEOUT = "PROCESS_EXECUTION_TIMEOUT"
    # 409
    SANDBOX_NAME_CONFLICT = "SANDBOX_NAME_CONFLICT"
    SANDBOX_NOT_RUNNING = "SANDBOX_NOT_RUNNING"
    SANDBOX_BUSY = "SANDBOX_BUSY"
    FILE_EXISTS = "FILE_EXISTS"
    # 413 / 507
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    DISK_QUOTA_EXCEEDED = "DISK_QUOTA_EXCEEDED"
    # 422
    INVALID_RESOURCES = "INVALID_RESOURCES"
    # 429
    RATE_LIMITED = "RATE_LIMITED"
    # 5xx
    INTERNAL_ERROR = "INTERNAL_ERROR"
    RUNTIME_ERROR = "RUNTIME_ERROR"
    AGENT_UNAVAILABLE = "AGENT_UNAVAILABLE"
    NOT_IMPLEMENTED = "NOT_IMPLEMENTED"
    PIDS_LIMIT_REACHED = "PIDS_LIMIT_REACHED"


STATUS: dict[ErrorCode, int] = {
    ErrorCode.BAD_REQUEST: 400,
    ErrorCode.VALIDATION_ERROR: 400,
    ErrorCode.INVALID_FILE_PATH: 400,
    ErrorCode.NOT_A_DIRECTORY: 400,
    ErrorCode.IS_A_DIRECTORY: 400,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.FILE_ACCESS_DENIED: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.SANDBOX_NOT_FOUND: 404,
    ErrorCode.IMAGE_NOT_FOUND: 404,
    ErrorCode.FILE_NOT_FOUND: 404,
    ErrorCode.PROCESS_EXECUTION_TIMEOUT: 408,
    ErrorCode.SANDBOX_NAME_CONFLICT: 409,
    ErrorCode.SANDBOX_NOT_RUNNING: 409,
    ErrorCode.SANDBOX_BUSY: 409,
    ErrorCode.FILE_EXISTS: 409,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.DISK_QUOTA_EXCEEDED: 507,
    ErrorCode.INVALID_RESOURCES: 422,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.INTERNAL_ERROR: 500,
    ErrorCode.RUNTIME_ERROR: 500,
    ErrorCode.AGENT_UNAVAILABLE: 502,
    ErrorCode.NOT_IMPLEMENTED: 501,
    ErrorCode.PIDS_LIMIT_REACHED: 503,
}

# Codes raised by the in-sandbox toolbox: reported with source DAYTONA_DAEMON so Daytona's SDKs map them.
TOOLBOX_CODES = frozenset(
    {
        ErrorCode.INVALID_FILE_PATH,
        ErrorCode.NOT_A_DIRECTORY,
        ErrorCode.IS_A_DIRECTORY,
        ErrorCode.FILE_ACCESS_DENIED,
        ErrorCode.FILE_NOT_FOUND,
        ErrorCode.FILE_EXISTS,
        ErrorCode.PROCESS_EXECUTION_TIMEOUT,
        ErrorCode.DISK_QUOTA_EXCEEDED,
    }
)
