#!/usr/bin/env bash
# make gpu-check [ARGS="--out DIR --steps mtcnn,training"]: the GPU path measured in <= 8 min
# (scripts/gpu_check.py): a Markdown report plus raw CSVs in one folder, by default
# outputs/gpu_check/<date>_<time>/.
#
# Offline GPU nodes: the node's own Python (3.12) keeps its torch, torchvision, Lightning,
# scikit-learn, pandas, matplotlib, TensorBoard, timm, onnxruntime and OpenCV; the project's
# other packages come from the folder `make gpu-wheels` filled on a machine with network
# (GPU_WHEELS, default gpu_wheels/), installed with `pip install --no-index --no-deps` into a
# venv that also sees the node's packages (GPU_VENV, default .gpu_venv/). Nothing is
# downloaded and the node's torch is never replaced.
#
#   PYTHON=python3.12 (the node's interpreter; a venv's python is used as it is)
#
# Without a CUDA device it says so in one line and exits 0.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
wheels="${GPU_WHEELS:-$repo/gpu_wheels}"
venv="${GPU_VENV:-$repo/.gpu_venv}"

if ! "$python" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "gpu_check: no CUDA device visible to $python (torch missing or torch.cuda.is_available() is False); nothing measured."
  exit 0
fi

# A venv python already sees its packages; a system/conda python gets a venv on top of its own.
if "$python" -c "import sys; sys.exit(0 if sys.prefix != sys.base_prefix else 1)"; then
  run_python="$python"
else
  [[ -x "$venv/bin/python" ]] || "$python" -m venv --system-site-packages "$venv"
  run_python="$venv/bin/python"
fi
if [[ -d "$wheels" ]]; then
  "$run_python" -m pip install --quiet --no-index --no-deps "$wheels"/*
fi
exec "$run_python" "$repo/scripts/gpu_check.py" "$@"
