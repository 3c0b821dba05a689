"""Spotting: find where in a long video micro- and macro-expressions happen, then (optionally) what they are.

``groundtruth`` (intervals of the long-video releases) and ``data`` (a release on disk) -> ``metrics`` (MEGC
interval matching, F1, STRS) -> ``outputs`` (MEGC log, spot-then-recognise CSV, JSON); ``features`` (streamed face
crops and flow) -> ``methods`` (MDMD, learned) -> ``detect`` (peaks, intervals, fitted choices) -> ``evaluate``
(leak-free LOSO, shuffled control, run directory); ``api`` (spotting new videos, ``microexp.load``), ``report``
(timelines), ``bench`` (speed). See docs/spotting.md.
"""
