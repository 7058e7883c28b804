"""Prediction in vLLM through the sparse_frontier plugin.

engine.methods_per_job = 1 (default): one job = one run (task, length, model, method), rule predict.
engine.methods_per_job > 1 (docs/hpc.md, "Grouping"): one GPU job per chunk of methods of one
dataset (predict_sweep, loading the model once), and each run's predictions file copied from it
(copy_sweep_predictions). Exactly one of the two producers of paths.PREDICTIONS is defined for a
config: no ambiguity to resolve (no ruleorder, no per-job branching), the default's DAG is today's,
and the copies are local rules rather than a cluster job per run.
"""

if config["engine"]["methods_per_job"] == 1:

    rule predict:
        input:
            dataset=paths.DATASET,
            model=model_inputs,
            calibration=calibration_input,
        output:
            paths.PREDICTIONS,
        log:
            paths.log_path(paths.PREDICTIONS),
        benchmark:
            paths.benchmark_path(paths.PREDICTIONS)
        conda:
            "../envs/vllm-cuda.yaml"
        threads: predict_resource("threads")
        resources:
            gpu=run_gpus,
            mem_mb=predict_resource("mem_mb"),
            runtime=predict_resource("runtime"),
        params:
            run=run_params,
            model_location=model_folder,
        script:
            "../workflow/scripts/predict.py"

else:

    rule predict_sweep:
        input:
            dataset=paths.DATASET,
            model=model_inputs,
            calibration=sweep_calibration_input,
        output:
            # only the manifest: Snakemake deletes an incomplete job's outputs before rerunning it,
            # the runs' resumable rows (paths.SWEEP_PREDICTIONS) must survive that
            paths.SWEEP,
        log:
            paths.log_path(paths.SWEEP),
        benchmark:
            paths.benchmark_path(paths.SWEEP)
        conda:
            "../envs/vllm-cuda.yaml"
        threads: sweep_resource("threads")
        resources:
            gpu=sweep_gpus,
            mem_mb=sweep_resource("mem_mb"),
            runtime=sweep_resource("runtime"),
        params:
            runs=sweep_runs_params,
            model_location=model_folder,
        script:
            "../workflow/scripts/predict_sweep.py"

    rule copy_sweep_predictions:
        input:
            sweep_of_run,
        output:
            paths.PREDICTIONS,
        log:
            paths.log_path(paths.PREDICTIONS),
        localrule: True
        params:
            source=paths.SWEEP_PREDICTIONS,
        run:
            with failures_logged(log[0]):
                copy_sweep_predictions(params.source, output[0], input[0], log[0])
