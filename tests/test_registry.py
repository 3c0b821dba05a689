"""The one registry type: duplicates raise, unknown names list the known ones, built-ins load lazily."""

import sys

import pytest

from microexp.errors import ConfigError
from microexp.registry import Registry


def test_duplicate_name_raises_and_unknown_lists_known() -> None:
    reg: Registry[int] = Registry("widget")
    reg.add("a", 1)
    with pytest.raises(ConfigError, match="widget 'a' is registered twice"):
        reg.add("a", 2)
    assert reg.get("a") == 1
    with pytest.raises(ConfigError, match=r"unknown widget 'b' \(known: a\)"):
        reg.get("b")
    assert reg.names() == ["a"] and "a" in reg and len(reg) == 1


def test_builtin_modules_import_only_on_first_lookup(tmp_path, monkeypatch) -> None:
    (tmp_path / "_reg_probe_mod.py").write_text("from _reg_probe_owner import REG\nREG.add('x', 42)\n")
    (tmp_path / "_reg_probe_owner.py").write_text(
        "from microexp.registry import Registry\nREG = Registry('probe', builtin=('_reg_probe_mod',))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import _reg_probe_owner

    assert "_reg_probe_mod" not in sys.modules
    assert _reg_probe_owner.REG.get("x") == 42
    assert "_reg_probe_mod" in sys.modules
