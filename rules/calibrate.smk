"""Calibration of Vertical-Slash / FlexPrefill on each model's own attention (config calibration.capture)."""


rule calibrate_attention:
    """Capture the model's estimation scores on a few prompts per length (attention stays dense) and
    fit the paper's sparsity levels (sparse_frontier/calibrate.py)."""
    input:
        datasets=calibration_datasets_of,
        model=calibration_model_inputs,
    output:
        paths.CALIBRATION,
    log:
        paths.log_path(paths.CALIBRATION),
    benchmark:
        paths.benchmark_path(paths.CALIBRATION)
    conda:
        "../envs/vllm-cuda.yaml"
    threads: config["engine"]["cpu_threads"]
    resources:
        gpu=calibration_gpus,
        mem_mb=calibration_resource("mem_mb"),
        runtime=calibration_resource("runtime"),
    params:
        datasets=lambda wildcards: CALIBRATION_PLAN[wildcards.model],
        settings=lambda wildcards: CALIBRATION_SETTINGS.get(wildcards.model, []),
        run=calibration_run,
        prompts=CALIBRATION["prompts"],
        model_location=calibration_model_location,
    script:
        "../workflow/scripts/calibrate_attention.py"
