"""Planning GPU work: what a predict job needs, and the GPU-hours of a config's grid.

- ``cards``: the GPUs planned for (memory, decode bandwidth, prefill FLOP rate, data-sheet peaks).
- ``roofline``: an attention kernel's FLOPs and bytes, its achieved rates, the least time a card allows.
- ``resources``: the resource model of one predict job (memory plan, phases, Snakemake resources).
- ``throughput_table``: the measured throughput table (columns, checks, reading and appending rows).
- ``throughput_report``: the table as issue #18's method x length table with its targets, and its plot.
- ``jobs``: how runs become GPU jobs (engine starts, shared prefills).
- ``estimate``: the GPU-hours of a grid from the table, extrapolated by the resource model.
- ``report``: the estimate written out (CSVs and the Markdown report with its checks).

Submodules are imported where used (``rules/common.smk`` needs only ``resources``).
"""
