#!/bin/bash
# config/gpu-demo.yaml through Snakemake on the lent GPU machine, after benchmarks/device_pipeline.sh
# install. Usage: bash benchmarks/gpu_demo.sh SECONDS OUT_DIR
# Runs `snakemake all` for at most SECONDS (resumable: a second call goes on where it stopped), then
# draws the figures from whatever finished (figures.allow_missing) and copies the tables, figures,
# per-run summaries, logs, the machine's description and results/ itself (to resume elsewhere) to OUT_DIR.
# A results/ carried in from an earlier machine is kept: --rerun-triggers input, as its files are older
# than the model the conversion rule writes again here, and mtime would recompute every one of them.
set -uo pipefail
budget=${1:?seconds}; out=${2:?output folder}
source benchmarks/device_env.sh
export PYTHONPATH=$PYTHONPATH:/root/sm-site PATH=/root/sm-bin:$PATH
mkdir -p "$out"
start=$(date +%s)
timeout --signal=INT "$budget" snakemake all --configfile config/gpu-demo.yaml --profile profiles/local \
  --cores 16 --resources gpu=1 --rerun-triggers input > "$out/snakemake_all.log" 2>&1
echo "snakemake all: exit $? after $(( $(date +%s) - start )) s" | tee -a "$out/wall_time.txt"
tar -czf "$out/logs.tar.gz" logs benchmarks/runs 2>/dev/null
timeout --signal=INT "${FIGURES_SECONDS:-150}" snakemake all_figures results/tables/scores.csv --configfile config/gpu-demo.yaml config/allow-missing.yaml \
  --profile profiles/local --cores 16 --resources gpu=1 > "$out/snakemake_figures.log" 2>&1
echo "figures: exit $? at $(( $(date +%s) - start )) s" | tee -a "$out/wall_time.txt"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python -c "import vllm, torch, triton, transformers; print('vllm', vllm.__version__, 'torch', torch.__version__, 'triton', triton.__version__, 'transformers', transformers.__version__)"
  python -m snakemake --version; } > "$out/machine.txt" 2>&1
cp -r results/tables results/figures "$out"/ 2>/dev/null
find results/scores -name summary.json | tar -cf "$out/summaries.tar" -T - 2>/dev/null
# Everything computed so far (datasets, predictions, scores, calibration, captured head; not the model,
# which the conversion rule rebuilds in seconds): carried back to a later machine (`run`'s carry), it
# lets `snakemake all` resume there instead of starting over.
tar -czf "$out/results.tar.gz" results logs 2>/dev/null
ls "$out"
