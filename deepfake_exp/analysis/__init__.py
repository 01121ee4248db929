"""Dataset analysis (York study): face embeddings -> PCA -> t-SNE -> HDBSCAN, bias per cluster.

Modules are pure functions over arrays and frames (``reduce``, ``clusters``, ``bias``,
``figures``, ``bench``) plus ``embeddings``, which runs any callable model over a dataset with
a resumable on-disk cache. None imports training code; ``deepfake_exp.analyze`` wires a model in.
"""
