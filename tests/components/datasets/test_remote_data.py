"""Interaction files by URI: fetched through fsspec, cached by version, clear errors."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from kuberec.api.spec import DataSpec, FileSpec
from kuberec.components.datasets.sources import load_source
from kuberec.errors import DataError

CSV = "customer,sku,rating\n1,10,5\n1,11,3\n2,10,4\n"


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "www"
    root.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()


def _spec(uri: str) -> DataSpec:
    return DataSpec(interactions=FileSpec(uri=uri, columns={"user_id": "customer",
                                                            "item_id": "sku"}))  # fmt: skip


def test_an_http_uri_is_read_like_a_local_file(http_root: tuple[str, Path]) -> None:
    url, root = http_root
    (root / "events.csv").write_text(CSV)
    dataset = load_source(_spec(f"{url}/events.csv"))
    assert len(dataset.interactions) == 3
    assert set(dataset.interactions["item_id"]) == {10, 11}  # ids kept as given: numbers


def test_a_file_uri_is_a_local_path(tmp_path: Path) -> None:
    (tmp_path / "events.csv").write_text(CSV)
    assert len(load_source(_spec((tmp_path / "events.csv").as_uri())).interactions) == 3


def test_a_missing_remote_file_is_named(http_root: tuple[str, Path]) -> None:
    url, _ = http_root
    with pytest.raises(DataError, match=r"no such file|cannot be read"):
        load_source(_spec(f"{url}/nope.csv"))


def test_a_scheme_without_its_driver_names_the_package_to_install() -> None:
    with pytest.raises(DataError, match=r"pip install gcsfs"):
        load_source(_spec("gs://bucket/events.parquet"))
