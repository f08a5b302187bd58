#!/bin/bash
# The latent-grid model on the development volumes, each fit bounded by wall-clock seconds (CPU, 2
# threads). Arguments: "VOLUME.tif SECONDS [BPV]" triples (BPV defaults to 0.1); none: the four volumes
# at 0.1 BPV, as in docs/benchmarks.md §7. Results: benchmarks/results/grid/NAME_bpvB_Ss[_TAG].json.
# GRID_ARGS adds compress options (e.g. "--grid-samples 131072"), TAG names such a variant's files.
cd "$(dirname "$0")/.."
mkdir -p runs benchmarks/results/grid
specs=("$@")
if [ ${#specs[@]} -eq 0 ]; then
  specs=("ct_aorta_totalseg.tif 900" "lsm_mousebrain_cells_cellfinder_crop16x256x256.tif 240"
         "neuron_sparse_rivulet_crop64x256x256.tif 240" "mri_t1_colin27.tif 480")
fi
for spec in "${specs[@]}"; do
  set -- $spec
  name=${1%.tif}
  bpv=${3:-0.1}
  echo "$(date -u +%H:%M:%S) $name bpv $bpv ${2}s ${GRID_ARGS:-} load $(cut -d' ' -f1-3 /proc/loadavg)" >> runs/grid_bench.log
  OMP_NUM_THREADS=2 ${PYTHON_BIN:-.venv/bin}/napari-sci --threads 2 compress \
    "${NAPARI_SCI_DATA:-../shared/data}/$1" -o "runs/${name}_grid_${bpv}.sci" --bpv "$bpv" --model grid \
    --steps 100000 --time-limit "$2" --overwrite --json -q ${GRID_ARGS:-} \
    > "benchmarks/results/grid/${name}_bpv${bpv}_${2}s${TAG:+_$TAG}.json" 2>> runs/grid_bench.err
done
