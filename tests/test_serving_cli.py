"""`kuberec serve`: a bad model reference is one line naming it, before any server starts."""

from __future__ import annotations

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
