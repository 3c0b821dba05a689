"""The model and face-backend registries: one name, one entry; unknown names list the known ones; looking up
or building a model imports neither numba nor the fast CPU path."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from microexp import models
from microexp.errors import ConfigError
from microexp.preprocess import face

_PROBE_HEAD = """
import sys, traceback
class _Watch:  # remembers who first imports numba or microexp.fast, for the failure message
    first = {}
    def find_spec(self, name, path=None, target=None):
        top = 'fast' if name.startswith('microexp.fast') else name.split('.')[0]
        if top in ('numba', 'fast') and top not in self.first:
            self.first[top] = ''.join(traceback.format_stack(limit=12)[:-1])
        return None
sys.meta_path.insert(0, _Watch())
"""
_PROBE_TAIL = """
import json
print(json.dumps({'numba': any(m == 'numba' or m.startswith('numba.') for m in sys.modules),
                  'fast': any(m == 'microexp.fast' or m.startswith('microexp.fast.') for m in sys.modules),
                  'who': _Watch.first}))
"""


def _loaded_after(code: str) -> dict[str, bool]:
    """Run ``code`` in a fresh interpreter and report which of numba / microexp.fast it left imported (``who``:
    the import stack that first asked for each)."""
    out = subprocess.run([sys.executable, "-c", _PROBE_HEAD + code + _PROBE_TAIL], capture_output=True, text=True,
                         check=True)
    found = json.loads(out.stdout.strip().splitlines()[-1])
    who = found.pop("who")
    print("\n".join(f"first import of {k}:\n{v}" for k, v in who.items()))  # shown when an assertion fails
    return found


def test_looking_up_and_building_models_imports_neither_numba_nor_the_fast_path() -> None:
    assert _loaded_after("import microexp.models as m\nm.get('stcnn')") == {"numba": False, "fast": False}
    # every model registered, STCNN built, and a model without a fast path run forward
    assert _loaded_after(
        "import torch\nimport microexp.models as m\nm.names()\nm.get('stcnn').build(3)\n"
        "x = m.get('offapexnet').build(3)\nx.eval()\nx(flow=torch.zeros(1, 2, 1, 28, 28))"
    ) == {"numba": False, "fast": False}
    # with the plain layers forced, STCNN's forward does not load it either
    assert _loaded_after(
        "import torch\nimport microexp.models as m\n"
        "s = m.get('stcnn').builder(3, {'clip': (1, 18, 12, 12)}, fast=False, filters=4, dense=8)\n"
        "s(clip=torch.zeros(1, 1, 18, 12, 12))"
    ) == {"numba": False, "fast": False}
    # the control: a forward that takes the fast path imports it (and numba, for its compiled pooling loop)
    assert _loaded_after(
        "import torch\nimport microexp.models as m\n"
        "s = m.get('stcnn').builder(3, {'clip': (1, 18, 12, 12)}, filters=4, dense=8)\n"
        "s(clip=torch.zeros(1, 1, 18, 12, 12))"
    ) == {"numba": True, "fast": True}


def test_a_model_name_registered_twice_raises_and_unknown_names_list_the_known_ones() -> None:
    spec = models.get("stcnn")
    with pytest.raises(ConfigError, match="model 'stcnn' is registered twice"):
        models.register(spec)
    assert models.get("stcnn") is spec
    with pytest.raises(ConfigError, match=r"unknown model 'stcn' \(known: fusenet-intermediate, .*stcnn"):
        models.get("stcn")


def test_model_spec_rejects_an_unknown_kind_and_fewer_than_two_classes() -> None:
    spec = models.get("stcnn")
    with pytest.raises(ConfigError, match=r"model 'x': kind='keras' is not one of \['torch', 'sklearn'\]"):
        models.ModelSpec("x", spec.builder, spec.preprocess, "src", kind="keras")
    with pytest.raises(ConfigError, match="model 'x': classes=1 must be >= 2"):
        models.ModelSpec("x", spec.builder, spec.preprocess, "src", classes=1)


def test_face_backends_register_once_and_unknown_names_list_the_known_ones() -> None:
    assert face.FACE_BACKENDS.names() == ["dlib", "dlib-mmod"]
    with pytest.raises(ConfigError, match="face backend 'dlib' is registered twice"):
        face.register_backend("dlib", face.DlibBackend)
    with pytest.raises(ConfigError, match=r"unknown face backend 'mediapipe' \(known: dlib, dlib-mmod\)"):
        face.get_backend("mediapipe")
