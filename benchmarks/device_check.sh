#!/usr/bin/env bash
# The fitting engine before and after, in one run (issue 13); see benchmarks/device_check.py.
#
# On a GPU machine (no network; Python 3.12 + torch, numpy, scipy, tifffile; at most 8 minutes):
#   pip download ... -d .whl pulp==3.3.2 highspy==1.16.0 constriction==0.5.0   (here, once; see NOTES)
#   mkdir -p .devdata && cp ../shared/data/*.tif .devdata/                      (here, once)
#   benchmarks/device_check.sh                       # the device tool, carry [".whl", ".devdata"]
# On a CPU, as a check that the script runs (tiny):
#   DEVICE=cpu benchmarks/device_check.sh benchmarks/results/device_check/cpu
#
# Environment: DEVICE (cuda), PYTHON (python3), DATA (.devdata, else ../shared/data), STEPS,
# GRID_STEPS, CONCURRENT, CONCURRENT_STEPS, AFTER (compile mode against eager), VOLUMES (space-separated
# names), LIMIT (seconds, 470).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-benchmarks/results/device_check/gpu}}
DEVICE=${DEVICE:-cuda}
PYTHON=${PYTHON:-python3}
if [ -z "${DATA:-}" ]; then
  if [ -d .devdata ]; then DATA=.devdata; else DATA=../shared/data; fi
fi
if [ "$DEVICE" = cpu ]; then
  # tiny, and compiled with inductor's default mode (auto is eager on a CPU) so that path runs too
  : "${STEPS:=20}" "${GRID_STEPS:=4}" "${CONCURRENT:=2}" "${CONCURRENT_STEPS:=10}" "${AFTER:=default}"
  : "${VOLUMES:=lsm_mousebrain_cells_cellfinder_crop16x256x256.tif}"
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
else
  : "${STEPS:=500}" "${GRID_STEPS:=200}" "${CONCURRENT:=8}" "${CONCURRENT_STEPS:=300}" "${AFTER:=auto}"
  : "${VOLUMES:=ct_aorta_totalseg.tif mri_t1_colin27.tif lsm_mousebrain_cells_cellfinder_crop16x256x256.tif neuron_sparse_rivulet_crop64x256x256.tif}"
fi
# what the GPU image lacks travels as wheels in .whl/ (git-ignored), installed into a scratch folder
if ! "$PYTHON" -c "import pulp, highspy, constriction" 2>/dev/null; then
  if ! compgen -G ".whl/*.whl" >/dev/null; then
    echo "device_check: pulp/highspy/constriction missing and no wheels in .whl/" >&2
    exit 2
  fi
  SITE=$(mktemp -d)/site
  "$PYTHON" -m pip install -q --no-index --no-deps --target "$SITE" .whl/*.whl
  export PYTHONPATH="$SITE:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD/src:${PYTHONPATH:-}"
"$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
# shellcheck disable=SC2086  # VOLUMES is a list
timeout "${LIMIT:-470}" "$PYTHON" benchmarks/device_check.py --device "$DEVICE" --data "$DATA" \
  --volumes $VOLUMES --steps "$STEPS" --grid-steps "$GRID_STEPS" --concurrent "$CONCURRENT" \
  --concurrent-steps "$CONCURRENT_STEPS" --after "$AFTER" --out "$OUT"
