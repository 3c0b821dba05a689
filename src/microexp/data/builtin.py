"""The modules that define the built-in datasets (each registers its :class:`~microexp.data.registry.DatasetSpec`
and class protocols on import). One explicit list, read by both registries; a new dataset module is added here."""

MODULES = (
    "microexp.data.plain",
    "microexp.data.casme2",
    "microexp.data.samm",
    "microexp.data.samm_lv",
    "microexp.data.smic",
    "microexp.data.casme_sq",
    "microexp.data.casme",
    "microexp.data.casme3",
    "microexp.data.megc2019",
)
