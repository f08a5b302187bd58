#!/bin/bash
# latent-grid model at 0.1 BPV on the development volumes, fixed wall-clock fits (CPU, 2 threads)
cd "$(dirname "$0")/.."
mkdir -p runs benchmarks/results/grid
for spec in "ct_aorta_totalseg.tif 900" "mri_t1_colin27.tif 600" "lsm_mousebrain_cells_cellfinder_crop16x256x256.tif 300" "neuron_sparse_rivulet_crop64x256x256.tif 300"; do
  set -- $spec
  name=${1%.tif}
  OMP_NUM_THREADS=2 ${PYTHON_BIN:-.venv/bin}/napari-sci --threads 2 compress ${NAPARI_SCI_DATA:-../shared/data}/$1 -o runs/${name}_grid_0.1.sci --bpv 0.1 --model grid --steps 100000 --time-limit $2 --overwrite --json -q > benchmarks/results/grid/${name}_bpv0.1_${2}s.json 2>> runs/grid_bench.err
done
