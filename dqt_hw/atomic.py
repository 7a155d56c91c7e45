"""Atomic output: a reader sees a file or folder's old content or its new content, never half.

Everything dqt-hw writes for people or for later stages (checkpoints, packages, reports, Verilog,
test vectors) goes through here, so an interrupted run leaves nothing half-written.
"""

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["atomic_file", "write_atomic", "staging_dir", "replace_dir", "atomic_dir"]


def _default_mode():
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_file(path, mode="w"):
    """Yield a file object for `path`'s new content; rename it into place only on success.

    The temporary file sits beside `path` (same file system, so the rename is atomic) and is
    flushed to disk first; on any exception it is removed and `path` is left as it was.
    """
    path = Path(path)
    with _naming(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                             suffix=".tmp")
    try:
        with os.fdopen(handle, mode) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, _default_mode())     # mkstemp creates 0600; give the usual mode
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def write_atomic(path, data):
    """Replace `path` with `data` (str or bytes) atomically."""
    with atomic_file(path, "wb" if isinstance(data, bytes) else "w") as file:
        file.write(data)


@contextlib.contextmanager
def _naming(path):
    """Report a failure to create the temporary file or folder as one about `path` itself:
    the user asked for `path`, the temporary name would only confuse."""
    try:
        yield
    except OSError as error:
        raise OSError(error.errno, error.strerror, str(path)) from None


def staging_dir(out_dir, kind="tmp"):
    """A new empty folder beside `out_dir` to build its next content in (see `replace_dir`)."""
    out_dir = Path(out_dir)
    with _naming(out_dir):
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.{kind}-", dir=out_dir.parent))


def replace_dir(staging, out_dir):
    """Move the finished folder `staging` to `out_dir`, replacing an existing one.

    `staging` must sit beside `out_dir`. An existing `out_dir` is first renamed aside, so at
    every moment `out_dir` is either the old complete folder or the new one.
    """
    staging, out_dir = Path(staging), Path(out_dir)
    if not out_dir.exists():
        os.rename(staging, out_dir)
        return
    retired = staging_dir(out_dir, "old")
    os.rename(out_dir, retired / out_dir.name)
    os.rename(staging, out_dir)
    shutil.rmtree(retired, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(out_dir):
    """Yield a staging folder beside `out_dir`; on success it replaces `out_dir` (see
    `replace_dir`), on any exception it is removed and `out_dir` is left as it was."""
    staging = staging_dir(out_dir)
    try:
        yield staging
        replace_dir(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
