"""The public official annotation files the tests read (``../shared/real-annotations`` beside the checkout)."""

from __future__ import annotations

from pathlib import Path

import pytest

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "real-annotations"
CASME2 = REAL / "casme2" / "CASME2-coding-20190701.xlsx"
SAMM = REAL / "samm" / "SAMM_Micro_FACS_Codes_v2.xlsx"
SAMM_LV = REAL / "samm" / "SAMM_LongVideos_V2_Release.csv"
GT = REAL / "megc2019" / "combined_3class_gt.csv"
CASME3 = REAL / "casme3" / "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx"
CASME3_MM = REAL / "casme3" / "CAS(ME)3_part_A_v2.xls"
CASME_SQ = REAL / "casme_sq" / "CAS(ME)^2code_final(Updated).csv"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not available")
    return path
