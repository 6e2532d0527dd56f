"""Stand-ins for the `os` module of the delivery part's file primitives
(`custom_components/bioreactor/delivery/files.py`): inject errors into its writes,
fsyncs and renames. Install with `monkeypatch.setattr(files, "os", FaultyOs(...))`."""

from __future__ import annotations

import errno
import os
from typing import Any

# The calls that change what is on disk.
MUTATING = ("write", "fsync", "replace", "ftruncate", "unlink")


class FaultyOs:
    """`os`, except that the `fail_at`-th mutating call (counting from 1) raises
    OSError(`code`) (ENOSPC for writes unless given); `calls` counts them."""

    def __init__(self, fail_at: int | None = None, code: int | None = None) -> None:
        self.fail_at = fail_at
        self.code = code
        self.calls = 0
        self.failed: str | None = None

    def __getattr__(self, name: str) -> Any:
        real = getattr(os, name)
        if name not in MUTATING:
            return real

        def call(*args: Any) -> Any:
            self.calls += 1
            if self.calls == self.fail_at:
                self.failed = name
                code = self.code or (errno.ENOSPC if name == "write" else errno.EIO)
                raise OSError(code, f"injected {os.strerror(code)} in {name}")
            return real(*args)

        return call


class TracingOs:
    """`os`, recording what the delivery part asks the file system to do, in order:
    ("create", path), ("write", path, offset, data), ("truncate", path, length),
    ("fsync", path) of a file or directory, ("rename", src, dst), ("unlink", path).
    Directory creation is taken as durable (not recorded). A test may append its own
    events (e.g. acknowledgements) to `ops` to place them between file operations."""

    # It stands in for `os` itself, so it calls `os`, not pathlib.
    # ruff: noqa: PTH105, PTH108, PTH110

    def __init__(self) -> None:
        self.ops: list[tuple[Any, ...]] = []
        self._paths: dict[int, str] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def open(self, path: Any, flags: int, mode: int = 0o777) -> int:
        name = os.fspath(path)
        existed = os.path.exists(name)
        fd = os.open(name, flags, mode)
        self._paths[fd] = name
        if flags & os.O_CREAT and not existed:
            self.ops.append(("create", name))
        elif flags & os.O_TRUNC:
            self.ops.append(("truncate", name, 0))
        return fd

    def write(self, fd: int, data: Any) -> int:
        written = os.write(fd, data)
        end = os.lseek(fd, 0, os.SEEK_CUR)
        self.ops.append(("write", self._paths[fd], end - written, bytes(data[:written])))
        return written

    def fsync(self, fd: int) -> None:
        os.fsync(fd)
        self.ops.append(("fsync", self._paths[fd]))

    def ftruncate(self, fd: int, length: int) -> None:
        os.ftruncate(fd, length)
        self.ops.append(("truncate", self._paths[fd], length))

    def replace(self, src: Any, dst: Any) -> None:
        os.replace(src, dst)
        self.ops.append(("rename", os.fspath(src), os.fspath(dst)))

    def unlink(self, path: Any) -> None:
        os.unlink(path)
        self.ops.append(("unlink", os.fspath(path)))

    def close(self, fd: int) -> None:
        os.close(fd)
        self._paths.pop(fd, None)
