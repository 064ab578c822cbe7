"""Agent failures as gRPC status codes, each with the REST error code the gateway sends on."""

from __future__ import annotations

import errno

import grpc

ERROR_KEY = "sandcell-error"  # trailing metadata: the stable error code (file_not_found, ...)


class AgentError(Exception):
    """A refusal the user can act on: a gRPC status, a REST code, and words."""

    def __init__(self, status: grpc.StatusCode, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def invalid_path(message: str) -> AgentError:
    return AgentError(grpc.StatusCode.INVALID_ARGUMENT, "invalid_path", message)


def wrong_kind(message: str) -> AgentError:
    return AgentError(grpc.StatusCode.FAILED_PRECONDITION, "wrong_file_type", message)


# errno -> (status, code, what it means to the user)
_ERRNO = {
    errno.ENOENT: (grpc.StatusCode.NOT_FOUND, "file_not_found", "no such file or directory"),
    errno.ENOTDIR: (grpc.StatusCode.FAILED_PRECONDITION, "wrong_file_type",
                    "a part of the path is a file, not a directory"),
    errno.EISDIR: (grpc.StatusCode.FAILED_PRECONDITION, "wrong_file_type", "it is a directory"),
    errno.ENOTEMPTY: (grpc.StatusCode.FAILED_PRECONDITION, "directory_not_empty",
                      "the directory is not empty (remove it recursively)"),
    errno.EEXIST: (grpc.StatusCode.ALREADY_EXISTS, "file_exists", "it already exists"),
    errno.EACCES: (grpc.StatusCode.PERMISSION_DENIED, "permission_denied",
                   "the sandbox user may not access it"),
    errno.EPERM: (grpc.StatusCode.PERMISSION_DENIED, "permission_denied",
                  "the sandbox user may not do that"),
    errno.ENOSPC: (grpc.StatusCode.RESOURCE_EXHAUSTED, "insufficient_storage",
                   "the sandbox's storage is full"),
    errno.EDQUOT: (grpc.StatusCode.RESOURCE_EXHAUSTED, "insufficient_storage",
                   "the sandbox's storage quota is used up"),
    errno.ELOOP: (grpc.StatusCode.INVALID_ARGUMENT, "invalid_path", "too many symlinks"),
    errno.ENAMETOOLONG: (grpc.StatusCode.INVALID_ARGUMENT, "invalid_path", "the name is too long"),
    errno.EXDEV: (grpc.StatusCode.FAILED_PRECONDITION, "cross_device",
                  "the workspace and /tmp are separate file systems: copy, then remove"),
}


def from_os_error(exc: OSError, shown: str) -> AgentError:
    status, code, meaning = _ERRNO.get(exc.errno or 0, (
        grpc.StatusCode.INTERNAL, "agent_error", exc.strerror or str(exc)))
    return AgentError(status, code, f"{shown}: {meaning}")
