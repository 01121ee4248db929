#!/usr/bin/env bash
# make gpu-wheels [ARGS=<folder>]: on a machine WITH network, download the packages an offline
# GPU node lacks into one folder (default gpu_wheels/, git-ignored), for the node's Python and
# platform. The node keeps its own torch, torchvision, Lightning, scikit-learn, pandas,
# matplotlib, TensorBoard, timm, onnxruntime and OpenCV: none of those is downloaded.
# Copy the folder next to the checkout on the node; `make gpu-check` installs it with
# `pip install --no-index --no-deps` into a venv that sees the node's own packages.
#
#   PY_VERSION=3.12 (the node's Python)   PLATFORM="manylinux2014_x86_64 ..." (pip --platform tags)
#   PIP="python3 -m pip" (default: the project's .venv; any pip >= 22 with setuptools works,
#   it need not be the node's Python)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${1:-$repo/gpu_wheels}"
py_version="${PY_VERSION:-3.12}"
platforms="${PLATFORM:-manylinux_2_28_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64}"
default_pip="python3 -m pip"
[[ -x "$repo/.venv/bin/python" ]] && default_pip="$repo/.venv/bin/python -m pip"  # has setuptools for the builds
read -r -a pip <<<"${PIP:-$default_pip}"
constraints="$repo/constraints.txt"

# The project's packages the node lacks, with what they need beyond the node's stack.
# Versions come from constraints.txt (the tested set).
binary=(
  hydra-core omegaconf PyYAML
  facenet-pytorch
  albumentations albucore pydantic pydantic_core annotated-types typing-inspection
  typing_extensions simsimd stringzilla
  av
  tabulate openTSNE hdbscan webdataset braceexpand
  pytest pluggy iniconfig
)
# Published as source only; all pure Python, so a locally built py3-none-any wheel fits the node.
source_only=(antlr4-python3-runtime efficientnet_pytorch ttach grad-cam)

pin() {  # name -> name==version from constraints.txt (case and -/_ insensitive)
  awk -F'==' -v key="$(echo "$1" | tr 'A-Z_' 'a-z-')" '
    { name = tolower($1); gsub("_", "-", name) }
    name == key && NF == 2 { print $1 "==" $2; found = 1; exit }
    END { exit !found }' "$constraints" || { echo "gpu_wheels: $1 has no pin in constraints.txt" >&2; return 1; }
}

mkdir -p "$dest"
platform_args=()
for p in $platforms; do platform_args+=(--platform "$p"); done
pins=()
for name in "${binary[@]}"; do
  spec="$(pin "$name")" || exit 1
  pins+=("$spec")
done
"${pip[@]}" download --quiet --no-deps --only-binary=:all: --python-version "$py_version" \
  --implementation cp "${platform_args[@]}" --dest "$dest" "${pins[@]}"

for name in "${source_only[@]}"; do
  spec="$(pin "$name")" || exit 1
  if ! ls "$dest" | grep -qi "^$(echo "${spec%%==*}" | tr '-' '_')-${spec##*==}-"; then
    "${pip[@]}" wheel --quiet --no-deps --no-build-isolation --wheel-dir "$dest" "$spec"
  fi
done
foreign() {  # files that are neither pure Python nor for this Python (cpXY-cpXY or stable abi3)
  ls "$dest" | grep -v -- '-none-any.whl$' | grep -v -- "-cp${py_version/./}-" | grep -v -- '-abi3-' || true
}
if [[ -n "$(foreign)" ]]; then
  echo "gpu_wheels: wheels for another Python than $py_version in $dest:" >&2
  foreign >&2
  exit 1
fi
size_mib=$(($(du -sk "$dest" | cut -f1) / 1024))
echo "gpu_wheels: $(ls "$dest" | wc -l) files, ${size_mib} MiB in $dest (Python $py_version; limit 60 MiB)"
if ((size_mib >= 60)); then
  echo "gpu_wheels: over the 60 MiB limit" >&2
  exit 1
fi
