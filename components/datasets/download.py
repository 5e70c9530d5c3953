"""Fetch official archives into a cache, verified by checksum, unpacked atomically."""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from kuberec.components.datasets.atomic import atomic_path
from kuberec.errors import DownloadError

DATA_DIR_ENV = "KUBEREC_DATA_DIR"
CACHE_DIR_ENV = "KUBEREC_CACHE_DIR"


def cache_dir() -> Path:
    """Where downloaded releases live: ``$KUBEREC_CACHE_DIR`` or ``~/.cache/kuberec/datasets``."""
    return Path(os.environ.get(CACHE_DIR_ENV, Path.home() / ".cache" / "kuberec" / "datasets"))


def file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_text(url: str, timeout: float = 30.0) -> str:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.read().decode("utf-8", "replace")
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise DownloadError(_offline_hint(url, exc)) from exc


def download_file(url: str, target: Path, timeout: float = 60.0) -> Path:
    """Stream ``url`` to ``target`` with a progress bar; the file appears only when complete."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, atomic_path(target) as tmp:
            total = int(response.headers.get("Content-Length") or 0) or None
            columns = (BarColumn(), DownloadColumn(), TransferSpeedColumn())
            with Progress(*columns, transient=True) as progress, tmp.open("wb") as out:
                task = progress.add_task(url.rsplit("/", 1)[-1], total=total)
                for block in iter(lambda: response.read(1 << 20), b""):
                    out.write(block)
                    progress.advance(task, len(block))
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise DownloadError(_offline_hint(url, exc)) from exc
    return target


def verify_md5(path: Path, expected: str) -> None:
    actual = file_md5(path)
    if actual != expected.lower():
        path.unlink(missing_ok=True)
        raise DownloadError(
            f"{path.name}: wrong checksum (md5 {actual}, expected {expected}); the download "
            "was corrupted or the release changed. It was deleted: run again to re-download, "
            f"or point ${DATA_DIR_ENV} / --data-dir at a verified local copy"
        )


def fetch_archive(url: str, md5: str | None, release_dir: Path) -> Path:
    """Download, verify and unpack a GroupLens zip so ``release_dir`` holds its files.

    ``md5`` pins the archive; without one the checksum GroupLens publishes next
    to the archive (``<url>.md5``) is fetched and used.
    """
    release_dir.parent.mkdir(parents=True, exist_ok=True)
    archive = release_dir.parent / url.rsplit("/", 1)[-1]
    if not archive.exists():
        download_file(url, archive)
    expected = md5 or fetch_text(url + ".md5").split()[0]
    verify_md5(archive, expected)
    with atomic_path(release_dir) as tmp:
        tmp.mkdir()
        _extract_flat(archive, tmp)
    return release_dir


def _extract_flat(archive: Path, target: Path) -> None:
    """Unpack members of the archive's single top folder directly into ``target``."""
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.infolist():
                if member.is_dir():
                    continue
                name = Path(member.filename)
                relative = Path(*name.parts[1:]) if len(name.parts) > 1 else name
                if ".." in relative.parts:
                    raise DownloadError(f"{archive.name}: unsafe member path {member.filename!r}")
                dest = target / relative
                dest.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(member) as src, dest.open("wb") as out:
                    out.write(src.read())
    except zipfile.BadZipFile as exc:
        archive.unlink(missing_ok=True)
        raise DownloadError(f"{archive.name}: not a valid zip archive ({exc}); deleted") from exc


def _offline_hint(url: str, exc: BaseException) -> str:
    return (
        f"cannot download {url} ({exc}). If this machine is offline, put the unpacked "
        f"release in a folder (e.g. /data/ml-100k/u.data) and set {DATA_DIR_ENV}=/data "
        "or pass --data-dir /data"
    )
