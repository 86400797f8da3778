"""Evaluation: image-quality metrics (:mod:`tgd.evaluation.metrics`) and the regions of
interest of simulated studies they are measured in (:mod:`tgd.repro.rois`).

Kept free of heavy imports: ``tgd.data`` re-exports some of these metrics.
"""
