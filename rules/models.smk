"""Models the pipeline builds itself (the embedded default, from a PyPI package's GGUF file)."""


rule convert_embedded_model:
    output:
        directory(paths.EMBEDDED_MODEL_DIR),
    log:
        "logs/models/{name}.log",
    conda:
        "../envs/pipeline.yaml"
    script:
        "../workflow/scripts/convert_embedded_model.py"
