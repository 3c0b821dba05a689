"""Spotting: find where in a long video micro- and macro-expressions happen, then (optionally) what they are.

``groundtruth`` (intervals of the long-video releases) and ``data`` (a release on disk) -> ``metrics`` (MEGC
interval matching, F1, STRS) -> ``outputs`` (MEGC log, spot-then-recognise CSV, JSON); ``features`` (streamed face
crops, flow and face-region motion) -> ``methods`` (the registry of spotting methods: MDMD, learned) -> ``blinks``
(blinks as events, kept out of the expressions) -> ``detect`` (peaks, intervals, window scales, fitted choices) ->
``evaluate`` (leak-free LOSO, shuffled control, run directory); ``api`` (spotting new videos, ``microexp.load``),
``transfer`` (a run applied to another data set: the cross-renderer figures), ``report`` (timelines), ``bench``
(speed). See docs/spotting.md.
"""
