"""MovieLens releases read from their official formats, locally or downloaded and verified."""

from __future__ import annotations

import hashlib
import http.server
import io
import socket
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from kuberec.components.datasets.canonical import Dataset
from kuberec.components.datasets.download import fetch_archive
from kuberec.components.datasets.movielens import (
    load_movielens,
    read_csv_release,
    read_ml1m,
    read_ml100k,
)
from kuberec.errors import DataError, DownloadError


def test_ml100k_has_the_published_sizes(ml100k: Dataset) -> None:
    assert (len(ml100k.interactions), ml100k.n_users, ml100k.n_items) == (100_000, 943, 1682)
    assert ml100k.interactions["rating"].between(1, 5).all()
    assert str(ml100k.interactions["timestamp"].dtype) == "datetime64[ns, UTC]"


def test_ml100k_item_titles_are_decoded_as_latin1(tmp_path: Path) -> None:
    flags = "|".join(["0"] * 18 + ["1"])
    (tmp_path / "u.data").write_text("1\t1\t4\t881250949\n")
    (tmp_path / "u.item").write_bytes(
        f"1|Misérables, Les (1995)|01-Jan-1995||http://x|{flags}\n".encode("latin-1")
    )
    (tmp_path / "u.user").write_text("1|24|M|technician|85711\n")
    items = read_ml100k(tmp_path).items
    assert items["title"].tolist() == ["Misérables, Les (1995)"]
    assert list(items["genres"][0]) == ["Western"]


def test_ml100k_genres_and_year_come_from_u_item(ml100k: Dataset) -> None:
    toy_story = ml100k.items.set_index("item_id").loc[1]
    assert toy_story["title"] == "Toy Story (1995)"
    assert list(toy_story["genres"]) == ["Animation", "Children's", "Comedy"]
    assert toy_story["year"] == 1995


def test_ml100k_users_carry_their_attributes(ml100k: Dataset) -> None:
    first = ml100k.users.set_index("user_id").loc[1]
    assert (first["age"], first["gender"], first["occupation"]) == (24, "M", "technician")


def test_a_data_dir_without_the_release_names_the_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"ml-1m/ratings.dat not found.*--data-dir"):
        load_movielens("ml-1m", tmp_path)


def test_an_unknown_release_lists_the_valid_ones() -> None:
    with pytest.raises(DataError, match=r"ml-100k.*ml-32m"):
        load_movielens("ml-7k")


def test_ml1m_format_is_double_colon_separated_latin1(tmp_path: Path) -> None:
    (tmp_path / "ratings.dat").write_text("1::10::5::978300760\n2::20::3::978302109\n")
    (tmp_path / "movies.dat").write_bytes(
        "10::Amélie (2001)::Comedy|Romance\n20::Heat (1995)::Action\n".encode("latin-1")
    )
    (tmp_path / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n")
    dataset = read_ml1m(tmp_path)
    assert dataset.interactions["item_id"].tolist() == [10, 20]
    amelie = dataset.items.set_index("item_id").loc[10]
    assert (amelie["title"], list(amelie["genres"]), amelie["year"]) == (
        "Amélie (2001)",
        ["Comedy", "Romance"],
        2001,
    )
    assert dataset.users.set_index("user_id").loc[2, "age"] == 56


def test_csv_releases_join_tags_into_item_text(tmp_path: Path) -> None:
    (tmp_path / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,2,3.5,964981247\n"
    )
    (tmp_path / "movies.csv").write_text(
        'movieId,title,genres\n1,Toy Story (1995),Adventure|Animation\n2,"Heat, The (1995)",'
        "(no genres listed)\n"
    )
    (tmp_path / "tags.csv").write_text(
        "userId,movieId,tag,timestamp\n1,1,pixar,1\n2,1,fun,2\n3,1,pixar,3\n"
    )
    dataset = read_csv_release(tmp_path)
    items = dataset.items.set_index("item_id")
    assert items.loc[1, "text"] == "pixar, fun"
    assert list(items.loc[2, "genres"]) == []
    assert dataset.interactions["rating"].tolist() == [4.0, 3.5]


def test_a_non_numeric_rating_names_file_line_and_column(tmp_path: Path) -> None:
    (tmp_path / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,2,great,964981247\n"
    )
    (tmp_path / "movies.csv").write_text("movieId,title,genres\n1,A (1990),Drama\n")
    with pytest.raises(DataError, match=r"ratings.csv, line 3, column 'rating': 'great'"):
        read_csv_release(tmp_path)


# --- downloads, against a real HTTP server on loopback -------------------------------------------


def _zip_of(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


@pytest.fixture
def archive_server(tmp_path: Path) -> Iterator[tuple[str, bytes]]:
    payload = _zip_of({"ml-tiny/u.data": "1\t1\t5\t881250949\n"})
    served = tmp_path / "served"
    served.mkdir()
    (served / "ml-tiny.zip").write_bytes(payload)
    md5 = hashlib.md5(payload).hexdigest()
    (served / "ml-tiny.zip.md5").write_text(f"{md5}  ml-tiny.zip\n")

    def handler(*args: object, **kwargs: object) -> http.server.SimpleHTTPRequestHandler:
        return http.server.SimpleHTTPRequestHandler(*args, directory=str(served), **kwargs)  # type: ignore[arg-type]

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None  # type: ignore[method-assign]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/ml-tiny.zip", payload
    server.shutdown()


def test_download_verifies_the_pinned_checksum_and_unpacks(
    archive_server: tuple[str, bytes], tmp_path: Path
) -> None:
    url, payload = archive_server
    target = tmp_path / "cache" / "ml-tiny"
    fetch_archive(url, hashlib.md5(payload).hexdigest(), target)
    assert (target / "u.data").read_text() == "1\t1\t5\t881250949\n"


def test_download_uses_the_published_md5_when_none_is_pinned(
    archive_server: tuple[str, bytes], tmp_path: Path
) -> None:
    url, _ = archive_server
    target = tmp_path / "cache" / "ml-tiny"
    fetch_archive(url, None, target)
    assert (target / "u.data").exists()


def test_a_wrong_checksum_deletes_the_download_and_leaves_no_dataset(
    archive_server: tuple[str, bytes], tmp_path: Path
) -> None:
    url, _ = archive_server
    target = tmp_path / "cache" / "ml-tiny"
    with pytest.raises(DownloadError, match="wrong checksum"):
        fetch_archive(url, "0" * 32, target)
    assert not target.exists()
    assert not (tmp_path / "cache" / "ml-tiny.zip").exists()


def test_no_network_says_how_to_point_at_a_local_copy(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DownloadError, match=r"KUBEREC_DATA_DIR=.*--data-dir"):
        fetch_archive(f"http://127.0.0.1:{port}/ml-tiny.zip", None, tmp_path / "ml-tiny")


def test_the_local_copy_matches_its_published_checksums() -> None:
    from kuberec.components.datasets.download import file_md5
    from tests.support.paths import SHARED_DATASETS

    for line in (SHARED_DATASETS / "ml-100k.md5").read_text().splitlines():
        digest, name = line.split()
        assert file_md5(SHARED_DATASETS / name) == digest, name


def test_loading_twice_gives_equal_frames(ml100k: Dataset) -> None:
    again = load_movielens("ml-100k")
    pd.testing.assert_frame_equal(ml100k.interactions, again.interactions)
