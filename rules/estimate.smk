"""Planning: the GPU-hours of the config's grid, from a measured throughput table (not part of all)."""

GPU_HOURS = config["gpu_hours"]  # schema defaults filled in by validate()
#: what the estimate depends on: the grid and the engine, not the figures
GRID = {k: config[k] for k in ("name", "engine", "models", "tasks", "methods", "experiments")}


rule estimate_gpu_hours:
    """GPU-hours per model and in total ('budget' and 'typical' output) from the measured throughput
    table (gpu_hours.throughput, default benchmarks/results/throughput.csv) and the grid; the rows
    not measured are extrapolated by the resource model (sparse_frontier/planning/)."""
    input:
        throughput=GPU_HOURS["throughput"],
    output:
        csv=paths.TABLE.format(table="gpu_hours"),
        md=paths.TABLE_MD.format(table="gpu_hours"),
        runs=paths.TABLE.format(table="gpu_hours_runs"),
    log:
        paths.log_path(paths.TABLE.format(table="gpu_hours")),
    localrule: True
    conda:
        "../envs/pipeline.yaml"
    params:
        grid=GRID,
        typical_output_tokens=GPU_HOURS["typical_output_tokens"],
        card=GPU_HOURS["card"],
        rows_card=GPU_HOURS["rows_card"],
    script:
        "../workflow/scripts/estimate_gpu_hours.py"
