"""Downloading and unpacking archives safely: checksums, and zips that cannot escape."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath

MAX_ZIP_ENTRIES = 5_000
MAX_ZIP_BYTES = 200_000_000  # uncompressed; GMD's MIDI zip unpacks to about 30 MB
MAX_ZIP_RATIO = 200  # compressed -> uncompressed, per entry; higher smells of a zip bomb


class ArchiveError(ValueError):
    """An archive that is refused, or a download that failed its check; says why."""


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, dest: str | os.PathLike, sha256: str | None,
             progress: Callable[[int, int], None] | None = None) -> Path:
    """Fetch `url` (http(s) or file) to `dest`, verifying its SHA-256; atomic."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, suffix=".part")
    try:
        # open the temp file first: it then closes even when the URL cannot be opened
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            for block in iter(lambda: response.read(1 << 16), b""):
                out.write(block)
                done += len(block)
                if progress:
                    progress(done, total)
        got = sha256_of(tmp)
        if sha256 and got != sha256.lower():
            raise ArchiveError(f"checksum mismatch for {url}: expected {sha256}, got {got}")
        os.chmod(tmp, 0o644)  # mkstemp makes 0600
        os.replace(tmp, dest)
    except OSError as exc:
        raise ArchiveError(f"could not download {url}: {exc}") from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    return dest


def _check_member(info: zipfile.ZipInfo) -> PurePosixPath | None:
    """The safe relative path of a zip member, None for a folder; raises on anything unsafe."""
    name = info.filename.replace("\\", "/")
    path = PurePosixPath(name)
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise ArchiveError(f"zip entry {info.filename!r} has an absolute path")
    if ".." in path.parts:
        raise ArchiveError(f"zip entry {info.filename!r} points outside the archive (../)")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise ArchiveError(f"zip entry {info.filename!r} is a symbolic link")
    if info.is_dir():
        return None
    if info.file_size > MAX_ZIP_RATIO * max(info.compress_size, 1) and info.file_size > 1 << 20:
        raise ArchiveError(f"zip entry {info.filename!r} expands {info.file_size:,} bytes from "
                           f"{info.compress_size:,}: refused as a likely zip bomb")
    return path


def safe_extract(zip_path: str | os.PathLike, dest: str | os.PathLike,
                 max_entries: int = MAX_ZIP_ENTRIES, max_bytes: int = MAX_ZIP_BYTES) -> Path:
    """Unpack `zip_path` into the new folder `dest`, refusing absolute or `../` paths, links,
    more than `max_entries` entries or `max_bytes` uncompressed bytes. Nothing is written
    unless every entry passes; what was written is removed if unpacking fails."""
    dest = Path(dest)
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ArchiveError(f"not a readable zip file: {exc}") from None
    with archive:
        members = archive.infolist()
        if len(members) > max_entries:
            raise ArchiveError(
                f"the zip has {len(members):,} entries; the limit is {max_entries:,}")
        total = sum(m.file_size for m in members)
        if total > max_bytes:
            raise ArchiveError(f"the zip unpacks to {total:,} bytes; the limit is {max_bytes:,}")
        plan = [(m, _check_member(m)) for m in members]
        dest.mkdir(parents=True, exist_ok=False)
        try:
            for info, rel in plan:
                if rel is None:
                    continue
                target = dest.joinpath(*rel.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as src, open(target, "wb") as out:
                    # read at most the declared size: a lying header cannot inflate past it
                    out.write(src.read(info.file_size + 1)[: info.file_size])
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:  # bad CRC, bad deflate data
            shutil.rmtree(dest, ignore_errors=True)
            raise ArchiveError(f"corrupt zip entry {info.filename!r}: {exc}") from None
        except BaseException:
            shutil.rmtree(dest, ignore_errors=True)
            raise
    return dest
