"""Reporting: text tables for the terminal (:mod:`.text`), the self-contained HTML report of a run
(:mod:`.html`, ``microexp report``) and the comparison of two runs (:mod:`.compare`, ``microexp compare``)."""
