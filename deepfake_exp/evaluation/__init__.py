"""Evaluation as pure functions over predictions and labels.

``metrics`` (scores of one split), ``aggregate`` (faces -> videos), ``threshold`` (chosen on
val), ``calibration`` (temperature scaling) and ``plots`` (figures and galleries). Nothing here
imports training code, so evaluation can be rerun on a saved predictions file alone.
"""
