"""Data files by URI: ``s3://``, ``gs://``, ``http(s)://`` and friends, fetched through fsspec.

The readers work on local paths, so a remote file is copied once into the
cache (keyed by its URI and the store's ETag or modification time, so a
changed object is fetched again) and the local copy is returned.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from kuberec.components.datasets.atomic import atomic_path
from kuberec.components.datasets.download import cache_dir
from kuberec.errors import DataError

PROTOCOL_PACKAGES = {"s3": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs"}


def is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def fetch(uri: str) -> Path:
    """A local copy of ``uri`` (fetched unless the same version is already cached)."""
    import fsspec

    protocol = uri.split("://", 1)[0]
    try:
        fs, path = fsspec.core.url_to_fs(uri)
        info = fs.info(path)
    except ImportError as exc:
        package = PROTOCOL_PACKAGES.get(protocol, f"the fsspec driver for {protocol}://")
        raise DataError(f"{uri}: reading {protocol}:// needs {package} (pip install {package})"
                        ) from exc  # fmt: skip
    except FileNotFoundError as exc:
        raise DataError(f"{uri}: no such file") from exc
    except Exception as exc:  # each filesystem raises its own types for auth/network errors
        raise DataError(f"{uri}: cannot be read ({type(exc).__name__}: {exc})") from exc
    version = str(info.get("ETag") or info.get("etag") or info.get("mtime") or info.get("size"))
    key = hashlib.sha1(f"{uri}|{version}".encode()).hexdigest()[:16]
    target = cache_dir().parent / "remote" / key / Path(path).name
    if not target.exists():
        with atomic_path(target) as tmp:
            fs.get(path, str(tmp))
    return target
