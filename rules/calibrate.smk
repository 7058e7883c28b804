"""Captures of a model's own attention: Vertical-Slash / FlexPrefill calibration (config
calibration.capture) and the pattern figure's real head (config figures.patterns)."""


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
    threads: calibration_resource("threads")
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


rule capture_attention_head:
    """One query head of one layer on a dataset's prompt (figures.patterns), captured through vLLM
    with attention left dense: the pattern figure's masks on a real model."""
    input:
        dataset=paths.DATASET,
        model=model_inputs,
    output:
        paths.ATTENTION_HEAD,
    log:
        paths.log_path(paths.ATTENTION_HEAD),
    conda:
        "../envs/vllm-cuda.yaml"
    threads: dataset_resource("threads")
    resources:
        gpu=dataset_gpus,
        mem_mb=dataset_resource("mem_mb"),
        runtime=dataset_resource("runtime"),
    params:
        run=dataset_run_params,
        model_location=model_folder,
    script:
        "../workflow/scripts/capture_attention_head.py"
