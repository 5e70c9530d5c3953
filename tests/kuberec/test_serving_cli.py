"""`kuberec serve`: a bad model reference or a damaged model file is one line naming it, exit 2."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kuberec.cli import main


def test_serve_names_a_reference_that_is_no_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-such-run"
    assert main(["serve", str(missing)]) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:")
    assert str(missing) in err
    assert "\n" not in err


def test_serve_refuses_a_port_out_of_range(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["serve", str(tmp_path), "--port", "not-a-port"])


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real exported model (popularity on a small synthetic dataset)."""
    from kuberec.components.datasets.synthetic import SyntheticSpec, generate
    from kuberec.components.package import export_model, package_run
    from kuberec.components.train.run import train_run
    from kuberec.components.train.settings import TrainSettings

    root = tmp_path_factory.mktemp("exported")
    dataset = generate(SyntheticSpec(n_users=40, n_items=20, n_interactions=400, seed=3))
    train_run(dataset, root / "run", model_type="popularity",
              settings=TrainSettings(backend="local"))  # fmt: skip
    tag = package_run(root / "run", "cli-popular", {}).tag
    return Path(export_model(tag, str(root / "popular.bentomodel")))


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["random", "truncated", "empty"])
def test_serve_names_a_model_file_that_is_damaged_in_one_line(
    exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    data = exported.read_bytes()
    broken = tmp_path / f"{damage}.bentomodel"
    broken.write_bytes({"random": os.urandom(len(data)), "truncated": data[: len(data) // 2],
                        "empty": b""}[damage])  # fmt: skip
    assert main(["serve", str(broken)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err
    assert str(broken) in err and "not a readable exported model" in err


@pytest.mark.slow
def test_serve_reads_a_model_file_given_by_a_relative_path(
    exported: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kuberec.serving.server import resolve_reference

    monkeypatch.chdir(exported.parent)
    assert resolve_reference(exported.name).startswith("cli-popular:")
