"""The contract between microexp's layers: what every layer depends on and none bypasses.

- :mod:`~microexp.contract.values`: typed values (pydantic) with one-line errors; the configuration models' base.
- :mod:`~microexp.contract.overrides`: the one dotted-override helper and the one configuration diff.
- :mod:`~microexp.contract.layout`: the run directory's file names (both kinds of run) and its layout version.
- :mod:`~microexp.contract.checkpoints`: checkpoint files (safetensors; older ``.pt`` read safely).
- :mod:`~microexp.contract.spotting`, :mod:`~microexp.contract.recipe`, :mod:`~microexp.contract.serve`: the
  spotting run's configuration, a recipe's header, the server's options (the recognition run's:
  :mod:`microexp.config`).
- :mod:`~microexp.contract.load`: :func:`load`, a run directory's predictor or spotter, importing only the stack
  that kind of run needs.

The contract imports nothing of microexp but :mod:`microexp.errors`, :mod:`microexp.fileio` and (lazily, to check
names against a registry) the layer a value names.
"""
