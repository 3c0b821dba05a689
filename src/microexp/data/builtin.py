"""The built-in datasets: each module registers its :class:`~microexp.data.registry.DatasetSpec` (and class
protocols) on import. One explicit table, read by both registries; a new dataset module is added here with the
names it registers. The names are read without importing the modules (``--help`` lists them, and stays light);
``tests/test_data_registry.py`` checks the table against what the modules register."""

DATASETS: dict[str, tuple[str, ...]] = {
    "microexp.data.plain": ("plain", "synthetic"),
    "microexp.data.casme2": ("casme2",),
    "microexp.data.samm": ("samm",),
    "microexp.data.samm_lv": ("samm_lv",),
    "microexp.data.smic": ("smic", "smic_vis", "smic_nir"),
    "microexp.data.casme_sq": ("casme_sq",),
    "microexp.data.casme": ("casme",),
    "microexp.data.casme3": ("casme3", "casme3_mm"),
    "microexp.data.megc2019": ("megc2019",),
    "microexp.data.megc2018": ("megc2018",),
}
MODULES = tuple(DATASETS)
NAMES = tuple(sorted(name for names in DATASETS.values() for name in names))
