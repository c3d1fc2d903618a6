"""Packing a bundle directory into one tar, and extracting one safely.

Packing is deterministic, so the same bundle always gives the same bytes (and the same digest in
an OCI registry): an uncompressed POSIX (pax) tar, regular files only, members sorted by path,
mtime 0, uid/gid 0, no user/group names, mode 0644. No compression because models (ONNX, TFLite)
barely compress, and a plain tar can be served with HTTP Range requests and resumed.

Extraction trusts nothing in the archive: absolute paths, `..`, links, devices and FIFOs, duplicate
names and oversized members or totals are refused with InvalidBundle. Files are written into a
temporary sibling of the destination that is renamed into place only when complete, so a reader
never sees a half-written bundle, and a failed extraction leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

from edgewise.core.errors import ConfigError, InvalidBundle

GIB = 1 << 30
DEFAULT_MAX_BYTES = 2 * GIB
MAX_MEMBERS = 10_000
_COPY_CHUNK = 1 << 20


def pack_bundle(bundle_dir: Path, tar_path: Path) -> Path:
    """Write `bundle_dir` as a deterministic tar at `tar_path` (written atomically) and return it."""
    root = Path(bundle_dir)
    if not root.is_dir():
        raise InvalidBundle(f"{root} is not a bundle directory")
    files: list[tuple[str, Path]] = []
    for path in root.rglob("*"):
        name = path.relative_to(root).as_posix()
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            raise InvalidBundle(f"bundle entry {name!r} is not a regular file (links are not packed)")
        if path.is_file():
            files.append((name, path))
    files.sort()
    tar_path = Path(tar_path)
    tar_path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=f".{tar_path.name}.", suffix=".part", dir=tar_path.parent)
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name, path in files:
                info = tarfile.TarInfo(name)
                info.size = path.stat().st_size
                info.mode = 0o644
                info.mtime = 0
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                with open(path, "rb") as handle:
                    tar.addfile(info, handle)
        os.replace(temp_name, tar_path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return tar_path


def _safe_member_name(member: tarfile.TarInfo) -> str:
    name = member.name
    if name.startswith("/") or PurePosixPath(name).is_absolute() or "\\" in name or ":" in name.split("/")[0]:
        raise InvalidBundle(f"archive member {name!r} has an absolute path; refusing to extract")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise InvalidBundle(f"archive member {name!r} escapes the bundle with '..'; refusing to extract")
    if not parts:
        raise InvalidBundle(f"archive member {name!r} has an empty path")
    return "/".join(parts)


def _check_member_type(member: tarfile.TarInfo) -> None:
    if member.issym() or member.islnk():
        raise InvalidBundle(
            f"archive member {member.name!r} is a {'symlink' if member.issym() else 'hard link'} "
            f"to {member.linkname!r}; links are refused"
        )
    if not (member.isfile() or member.isdir()):
        raise InvalidBundle(f"archive member {member.name!r} is a device, FIFO or other special file; refused")


def check_members(members: list[tarfile.TarInfo], max_bytes: int) -> list[tuple[str, tarfile.TarInfo]]:
    """(safe relative name, member) for every file; InvalidBundle at the first unsafe member."""
    if len(members) > MAX_MEMBERS:
        raise InvalidBundle(f"archive has {len(members)} members (more than {MAX_MEMBERS}); refused")
    seen: set[str] = set()
    total = 0
    safe: list[tuple[str, tarfile.TarInfo]] = []
    for member in members:
        name = _safe_member_name(member)
        _check_member_type(member)
        if member.isdir():
            continue
        if name in seen:
            raise InvalidBundle(f"archive member {name!r} appears twice; refused")
        seen.add(name)
        if member.size > max_bytes:
            raise InvalidBundle(f"archive member {name!r} is {member.size} bytes, over the {max_bytes}-byte limit")
        total += member.size
        if total > max_bytes:
            raise InvalidBundle(f"archive contents exceed the {max_bytes}-byte limit (at member {name!r})")
        safe.append((name, member))
    return safe


def extract_bundle(tar_path: Path, dest_dir: Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Path:
    """Extract a bundle tar (plain or gzip) into `dest_dir`, which must not exist or be empty."""
    dest_dir = Path(dest_dir)
    if dest_dir.exists() and (not dest_dir.is_dir() or any(dest_dir.iterdir())):
        raise ConfigError(f"{dest_dir} already exists and is not empty", "extract into a new directory")
    dest_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        tar = tarfile.open(tar_path, mode="r:*")
        members = tar.getmembers()
    except (tarfile.TarError, OSError, EOFError) as error:
        raise InvalidBundle(f"{tar_path} is not a readable tar archive: {error}") from None
    temp_dir = Path(tempfile.mkdtemp(prefix=f".{dest_dir.name}.", suffix=".part", dir=dest_dir.parent))
    try:
        with tar:
            for name, member in check_members(members, max_bytes):
                try:
                    _write_member(tar, member, temp_dir / name, max_bytes)
                except (OSError, tarfile.TarError) as error:  # a truncated archive, or 'a' and 'a/b' both
                    raise InvalidBundle(f"cannot extract archive member {name!r}: {error}") from None
        temp_dir.chmod(0o755)
        if dest_dir.exists():
            dest_dir.rmdir()  # empty (checked above); rename cannot replace a directory portably
        os.rename(temp_dir, dest_dir)
    except BaseException:
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise
    return dest_dir


def _write_member(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path, max_bytes: int) -> None:
    source = tar.extractfile(member)
    if source is None:
        raise InvalidBundle(f"archive member {member.name!r} cannot be read")
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with source, open(target, "xb") as handle:
        while chunk := source.read(_COPY_CHUNK):
            written += len(chunk)
            if written > max_bytes:
                raise InvalidBundle(f"archive member {member.name!r} is larger than it declares")
            handle.write(chunk)
    target.chmod(0o644)
