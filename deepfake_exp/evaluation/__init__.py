"""Evaluation as pure functions over predictions and labels.

``metrics`` (scores of one split), ``bootstrap`` (group intervals), ``aggregate`` (faces ->
videos), ``threshold`` (chosen on val), ``calibration`` (temperature scaling), ``scores``
(the metric blocks of ``metrics.json``), ``cross_dataset`` (the generalization table),
``robustness`` (perturbation sweeps), ``tables`` / ``plots`` / ``figures`` (text and figures)
and ``gradcam`` / ``rollout`` (heat maps). Nothing here imports models, inference or tasks,
so evaluation can be rerun on a saved predictions file alone.
"""
