"""Dataset generation: prompts as token ids of the target model, fitted into [0.95 L, L]."""


rule fetch_qa_source:
    output:
        NORMALISED,
    log:
        "logs/qa/{dataset}.log",
    wildcard_constraints:
        dataset="|".join(sorted(SOURCES)),
    conda:
        "../envs/pipeline.yaml"
    params:
        local_path=lambda wildcards: config.get("qa_sources", {}).get(wildcards.dataset),
    script:
        "../workflow/scripts/fetch_qa_source.py"


rule generate_dataset:
    input:
        model=model_inputs,
        qa_source=qa_source_inputs,
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
