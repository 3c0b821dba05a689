"""Spotting: find where in a long video micro- and macro-expressions happen, then (optionally) what they are.

``groundtruth`` (intervals of the long-video releases) -> ``metrics`` (MEGC interval matching, F1, STRS) ->
``outputs`` (MEGC log, spot-then-recognise CSV, JSON); ``features`` (streamed face crops and flow) -> ``mdmd``
(training-free baseline) and ``learned`` (shallow flow network) -> ``evaluate`` (leak-free LOSO, run directory).
"""
