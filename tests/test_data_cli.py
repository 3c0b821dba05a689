"""``microexp data check`` and ``microexp synth --layout`` from the command line."""

from __future__ import annotations

import pytest

from _real import REAL
from microexp.cli import main
from microexp.data.registry import load_dataset


def test_synth_layout_then_data_check(tmp_path, capsys):
    out = tmp_path / "samm"
    assert main(["synth", "--layout", "samm", "--out", str(out), "--size", "16"]) == 0
    assert "7 clips" in capsys.readouterr().out
    assert (out / "SAMM_Micro_FACS_Codes_v2.xlsx").is_file()
    assert sorted(p.name for p in (out / "SAMM" / "006" / "006_1_2").iterdir())[:2] == ["006_05562.jpg",
                                                                                         "006_05563.jpg"]
    assert main(["data", "check", "--dataset", "samm", "--root", str(out)]) == 0
    text = capsys.readouterr().out
    assert "clips found: 7 from 6 subjects" in text and "no problems found" in text
    assert "repaired 028/028_4_1" in text  # the apex outside onset..offset planted by the generator
    (out / "SAMM" / "006" / "006_1_2" / "006_05570.jpg").unlink()
    assert main(["data", "check", "--dataset", "samm", "--root", str(out)]) == 1
    assert "missing frames" in capsys.readouterr().out


def test_synth_layout_mirrors_a_real_annotation(tmp_path, capsys):
    gt = REAL / "megc2019" / "combined_3class_gt.csv"
    if not gt.exists():
        pytest.skip("real annotations not available")
    out = tmp_path / "smic"
    assert main(["synth", "--layout", "smic", "--out", str(out), "--annotation", str(gt), "--size", "16"]) == 0
    assert load_dataset("smic", out).counts() == {"negative": 70, "positive": 51, "surprise": 43}


def test_data_check_errors_and_hints(tmp_path, capsys):
    assert main(["data", "check", "--dataset", "casme2", "--root", str(tmp_path / "nope")]) == 1
    assert "missing root" in capsys.readouterr().out
    assert main(["data", "check", "--dataset", "nosuch", "--root", str(tmp_path)]) == 2
    assert "unknown dataset" in capsys.readouterr().err
    bad = tmp_path / "ann.xlsx"
    bad.write_bytes(b"not a workbook")
    (tmp_path / "Cropped" / "sub01").mkdir(parents=True)
    assert main(["data", "check", "--dataset", "casme2", "--root", str(tmp_path), "--annotation", str(bad)]) == 1
    assert "cannot read the file" in capsys.readouterr().out
    assert main(["synth", "--layout", "plain", "--out", str(tmp_path / "p"), "--annotation", str(bad)]) == 2
