"""Evaluation beside the models and the filter: metrics, tables and plots.

- `track`, `track_plots`: trajectory errors of a localization run against ground truth
  (`cvgl evaluate-track`; Table III of "Cross-View Matching for Vehicle Localization by
  Learning Geographically Local Representations").
- `pose_metrics`, `pose_plots`: per-frame pose-estimation metrics of the cross-view papers.
- `figures`: `save_figure`, the one way every plot of cvgl is written (atomic PNG, figure closed).
"""
