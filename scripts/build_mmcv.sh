#!/usr/bin/env bash
# Builds a wheel of mmcv 2.1.0 with its compiled ops (mmdet 3.3 and mmsegmentation 1.2
# need mmcv>=2.0.0rc4,<2.2.0; PyPI has only its sdist) from the sdist, for the torch
# installed in a given venv. Nothing but PyPI is needed.
#
#   scripts/build_mmcv.sh [VENV [WHEELHOUSE]]
#     VENV        a venv that already has torch, setuptools==80.9.0 and ninja
#                 (default: $MMCV_VENV, else .venv next to this script's folder)
#     WHEELHOUSE  where the wheel goes (default: $MMCV_WHEELHOUSE, else
#                 ${XDG_CACHE_HOME:-$HOME/.cache}/bench-wheels)
#
# The wheel is reused when one for this python and torch is already in the wheelhouse:
# delete it (or set MMCV_REBUILD=1) to build again. About 12 minutes on 2 idle cores with
# MAX_JOBS=2; 62 minutes with MAX_JOBS=1 under `nice` beside other work (use that on a
# shared machine). Then install it in the same pip pass as everything else
# (docs/openmmlab.md):
#
#   pip install --find-links WHEELHOUSE --only-binary mmcv mmcv==2.1.0 ...
#
# Patch: mmcv 2.1.0's setup.py compiles with -std=c++17; against torch 2.14's headers it
# builds with -std=c++20. The wheel's version carries a local label naming the torch its
# ops were compiled against (2.1.0+torch2.14): `mmcv==2.1.0` matches it, and
# `mmcv==2.1.0+torch2.14` pins it when a wheelhouse holds wheels for several torches.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv=${1:-${MMCV_VENV:-$here/.venv}}
wheelhouse=${2:-${MMCV_WHEELHOUSE:-${XDG_CACHE_HOME:-$HOME/.cache}/bench-wheels}}
version=2.1.0
python=$venv/bin/python
[ -x "$python" ] || { echo "build_mmcv.sh: no python at $python (give a venv with torch)" >&2; exit 2; }
"$python" - <<'EOF' || { echo "build_mmcv.sh: $python needs torch, setuptools and ninja (pip install setuptools==80.9.0 ninja wheel)" >&2; exit 2; }
import torch, setuptools, ninja  # noqa: F401
EOF
torch_tag=$("$python" -c 'import torch; print("torch" + ".".join(torch.__version__.split("+")[0].split(".")[:2]))')
py_tag=$("$python" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
mkdir -p "$wheelhouse"
wheelhouse=$(cd "$wheelhouse" && pwd)
existing=$(ls "$wheelhouse"/mmcv-"$version"+"$torch_tag"-"$py_tag"-*.whl 2>/dev/null | head -n1 || true)
if [ -n "$existing" ] && [ "${MMCV_REBUILD:-0}" != 1 ]; then
  echo "build_mmcv.sh: $existing is already built (MMCV_REBUILD=1 to build again)"
  exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/mmcv-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
# --no-build-isolation: preparing the sdist's metadata runs its setup.py, which needs
# pkg_resources and torch from the venv.
"$python" -m pip download --no-binary :all: --no-deps --no-build-isolation --dest "$work" "mmcv==$version"
tar -xzf "$work/mmcv-$version.tar.gz" -C "$work"
src=$work/mmcv-$version
grep -q -- '-std=c++17' "$src/setup.py" || { echo "build_mmcv.sh: setup.py has no -std=c++17 to patch" >&2; exit 1; }
sed -i 's/-std=c++17/-std=c++20/g' "$src/setup.py"
# Local version of the distribution (not of mmcv.__version__, which mmcv parses as three
# integers): the wheel says which torch its ops were compiled against.
sed -i "s/version=get_version(),/version=get_version() + '+$torch_tag',/" "$src/setup.py"
grep -q "version=get_version() + '+$torch_tag'," "$src/setup.py" \
  || { echo "build_mmcv.sh: could not set the local version in setup.py" >&2; exit 1; }

start=$(date +%s)
# MMCV_WITH_OPS: compile the ops; FORCE_CUDA=0: CPU ops only (no nvcc here), even if the
# torch build is a CUDA one.
MMCV_WITH_OPS=1 FORCE_CUDA=${FORCE_CUDA:-0} MAX_JOBS=${MAX_JOBS:-2} \
  "$python" -m pip wheel --no-build-isolation --no-deps --wheel-dir "$work/dist" "$src"
built=$(ls "$work"/dist/mmcv-*.whl)
mv "$built" "$wheelhouse/"
echo "build_mmcv.sh: built $(basename "$built") in $(( $(date +%s) - start )) s into $wheelhouse"
