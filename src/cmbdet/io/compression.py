"""Whole-buffer gzip for ``.nii.gz`` files: ISA-L's igzip where installed (the ``isal``
package: the same format as zlib, several times faster to write and about 1.5x faster to
read), Python's gzip else. Each call is one C call that runs outside Python's global lock, so
another thread (a second file's reading, PyTorch's import) goes on meanwhile."""

from __future__ import annotations

try:
    from isal import igzip as _gzip
except ImportError:  # pragma: no cover - depends on the install
    import gzip as _gzip

WRITE_LEVEL = 1
"""Compression level of written files: nibabel's default for zlib; igzip's levels are 0-3."""


def gunzip(data: bytes) -> bytes:
    """The decompressed content of gzip ``data`` (every member).

    Raises:
        EOFError, OSError or the library's error: truncated or corrupt data.
    """
    return _gzip.decompress(data)


def gzipped(data: bytes) -> bytes:
    """``data`` gzip-compressed, with a zero time stamp (the same bytes every run of one
    install; igzip and zlib compress to different bytes of the same content)."""
    return _gzip.compress(data, WRITE_LEVEL, mtime=0)
