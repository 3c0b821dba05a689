"""Explanations of trained models: vanilla-gradient saliency and Grad-CAM on held-out clips and on windows of new
videos."""

from microexp.explain.saliency import (
    binarise,
    explain_clip,
    explain_window,
    grad_cam,
    last_conv3d,
    vanilla_saliency,
)

__all__ = ["binarise", "explain_clip", "explain_window", "grad_cam", "last_conv3d", "vanilla_saliency"]
