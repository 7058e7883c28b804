"""Dataset generation: prompts as token ids of the target model, fitted into [0.95 L, L]."""


rule generate_dataset:
    input:
        model=model_inputs,
    output:
        paths.DATASET,
    log:
        paths.log_path(paths.DATASET),
    conda:
        "../envs/pipeline.yaml"
    params:
        run=dataset_run_params,
        model_location=model_folder,
    script:
        "../workflow/scripts/generate_dataset.py"
