"""Prediction in vLLM through the sparse_frontier plugin: one job = one run (task, length, model, method)."""


rule predict:
    input:
        dataset=paths.DATASET,
        model=model_inputs,
    output:
        paths.PREDICTIONS,
    log:
        paths.log_path(paths.PREDICTIONS),
    benchmark:
        paths.benchmark_path(paths.PREDICTIONS)
    conda:
        "../envs/vllm-cuda.yaml"
    threads: config["engine"]["cpu_threads"]
    resources:
        gpu=lambda wildcards: RUNS.run(wildcards).gpus,
        mem_mb=predict_resource("mem_mb"),
        runtime=predict_resource("runtime"),
    params:
        run=run_params,
        model_location=model_folder,
    script:
        "../workflow/scripts/predict.py"
