#!/bin/bash
# config/gpu-demo.yaml through Snakemake on the lent GPU machine, after benchmarks/device_pipeline.sh
# install. Usage: bash benchmarks/gpu_demo.sh SECONDS OUT_DIR [RESULTS_TAR]
# Runs `snakemake all` for at most SECONDS (resumable: a second call goes on where it stopped), then
# draws the figures from whatever finished (figures.allow_missing) and copies the tables, figures,
# the machine's description, and results/ with the logs in one tarball (summaries included; it also
# lets another machine resume) to OUT_DIR.
# RESULTS_TAR: an earlier machine's results.tar.gz (carried in, e.g. .gpu/resume/), unpacked when this
# machine has no results/ yet. The model is converted first and the unpacked files then all get one
# later timestamp: otherwise the new model (and the new GGUF under it) would be newer than every
# carried dataset, and Snakemake would recompute them all (checked with a dry run on the CPU).
# SNAKEMAKE_ARGS: more arguments for `snakemake all`, e.g. --prioritize with the sweeps to run first.
# FIGURES_SECONDS=0 skips the figures (draw them on another machine from results.tar.gz).
# Each Snakemake call gets SIGINT at its limit and SIGKILL 30 s later (a job that ignores the
# interrupt once held a call past its limit), and a stale lock is cleared first.
set -uo pipefail
budget=${1:?seconds}; out=${2:?output folder}; resume=${3:-}
source benchmarks/device_env.sh
export PYTHONPATH=$PYTHONPATH:/root/sm-site PATH=/root/sm-bin:$PATH
mkdir -p "$out"
snakemake --unlock --configfile config/gpu-demo.yaml --cores 1 > /dev/null 2>&1
if [ -n "$resume" ] && [ ! -d results/datasets ]; then
  tar -xzf "$resume"
  # Tables and figures drawn from a partial run (allow_missing) would pass for complete once the
  # stamp below dates their missing-runs records (sparse_frontier/analysis/partial.py) with them:
  # Snakemake would schedule none of the unscored runs. They are redrawn from the scores in seconds.
  rm -rf results/tables results/figures
  snakemake resources/models/smollm2-135m-instruct --configfile config/gpu-demo.yaml --cores 4 > "$out/convert.log" 2>&1
  sleep 1; stamp=$(date +%s)
  # benchmark files are outputs too (a stale one makes its job rerun)
  find results logs $(ls -d benchmarks/runs 2>/dev/null) -exec touch -h -d "@$stamp" {} +
fi
start=$(date +%s)
timeout -k 30 --signal=INT "$budget" snakemake all --configfile config/gpu-demo.yaml --profile profiles/local \
  --cores 16 --resources gpu=1 ${SNAKEMAKE_ARGS:-} > "$out/snakemake_all.log" 2>&1
echo "snakemake all: exit $? after $(( $(date +%s) - start )) s" | tee -a "$out/wall_time.txt"
snakemake --unlock --configfile config/gpu-demo.yaml --cores 1 > /dev/null 2>&1
[ "${FIGURES_SECONDS:-150}" -gt 0 ] && timeout -k 15 --signal=INT "${FIGURES_SECONDS:-150}" snakemake all_figures results/tables/scores.csv --configfile config/gpu-demo.yaml config/allow-missing.yaml \
  --profile profiles/local --cores 16 --resources gpu=1 > "$out/snakemake_figures.log" 2>&1
echo "figures: exit $? at $(( $(date +%s) - start )) s" | tee -a "$out/wall_time.txt"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python -c "import vllm, torch, triton, transformers; print('vllm', vllm.__version__, 'torch', torch.__version__, 'triton', triton.__version__, 'transformers', transformers.__version__)"
  python -m snakemake --version; } > "$out/machine.txt" 2>&1
cp -r results/tables results/figures "$out"/ 2>/dev/null
# Everything computed so far (datasets, predictions, scores, calibration, captured head; not the model,
# which the conversion rule rebuilds in seconds): carried back to a later machine (`run`'s carry), it
# lets `snakemake all` resume there instead of starting over.
tar -czf "$out/results.tar.gz" results logs benchmarks/runs 2>/dev/null
ls "$out"
