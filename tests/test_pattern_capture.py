"""The pattern figure on a real head: which dataset figures.patterns names, the head it keeps, the figure.

The capture through vLLM itself runs in the demo's slow test (tests/test_smollm2.py), which checks the
captured queries and keys against the model's own computation in transformers.
"""

import pytest
import torch
import yaml
from test_workflow import REPO

from sparse_frontier import paths
from sparse_frontier.analysis.figures import Inputs, build
from sparse_frontier.analysis.masks import SCALE, toy_qkv
from sparse_frontier.config import ConfigError, expand_runs, load_config
from sparse_frontier.pattern_capture import join_ranks, pattern_source, select_head


def test_ranks_are_joined_in_order_and_a_query_head_brings_its_kv_head():
    t, d = 5, 4
    rank = lambda r, hq, hkv: {  # noqa: E731  rank r's slice: heads numbered by their global index
        "rank": r,
        "layer": 3,
        "scale": 0.5,
        "query": torch.arange(r * hq, (r + 1) * hq).float().repeat(t, d, 1).transpose(1, 2),
        "key": torch.arange(r * hkv, (r + 1) * hkv).float().repeat(t, d, 1).transpose(1, 2),
        "value": -torch.arange(r * hkv, (r + 1) * hkv).float().repeat(t, d, 1).transpose(1, 2),
    }
    joined = join_ranks([rank(1, 3, 1), rank(0, 3, 1)])  # 6 query heads, 2 kv heads over 2 ranks
    assert joined["query"][0, :, 0].tolist() == [0, 1, 2, 3, 4, 5] and joined["key"][0, :, 0].tolist() == [0, 1]
    for head, kv in ((0, 0), (2, 0), (3, 1), (5, 1)):
        got = select_head(joined, head)
        assert got["query"].shape == (t, 1, d) and got["query"].unique().tolist() == [head]
        assert got["kv_head"] == kv and got["key"].unique().tolist() == [kv] and got["value"].unique().tolist() == [-kv]
    with pytest.raises(ValueError, match="head 6 is not a query head of layer 3: valid are 0..5"):
        select_head(joined, 6)
    with pytest.raises(ValueError, match="nothing was captured"):
        join_ranks([])


def demo_with(tmp_path, patterns):
    config = yaml.safe_load((REPO / "config/demo.yaml").read_text())
    config.setdefault("figures", {})["patterns"] = patterns
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(config))
    config = load_config(path)
    return config, expand_runs(config)


def test_figures_patterns_names_a_dataset_of_the_grid(tmp_path):
    config, runs = demo_with(tmp_path, {"model": "smollm2-135m", "task": "niah", "length": 1024, "layer": 7, "head": 2})
    source = pattern_source(config, runs)
    w = source["wildcards"]
    assert (w["task"], w["model"], w["length"], w["layer"], w["head"], w["sample"]) == (
        "ruler_niah",
        "smollm2-135m",
        1024,
        7,
        2,
        0,
    )
    assert source["path"] == paths.ATTENTION_HEAD.format(**w) and source["path"].endswith("/layer~7+head~2+sample~0.pt")
    assert paths.DATASET.format(**w) == source["run"].key.dataset  # the capture reads that dataset
    config["figures"].pop("patterns")
    assert pattern_source(config, runs) is None


@pytest.mark.parametrize(
    "patterns, message",
    [
        ({"task": "nope"}, "figures.patterns.task 'nope' is not a task of the config; valid: .*niah"),
        (
            {"length": 4096},
            "no run of task 'niah' for model 'smollm2-135m' at length 4096; the grid has it for: smollm2-135m at 1024",
        ),
        ({"sample": 99}, "figures.patterns.sample 99 is not a sample of that dataset: valid are 0..[0-9]+"),
    ],
)
def test_figures_patterns_outside_the_grid_is_named(tmp_path, patterns, message):
    config, runs = demo_with(tmp_path, {"model": "smollm2-135m", "task": "niah", "length": 1024, "layer": 0} | patterns)
    with pytest.raises(ConfigError, match=message):
        pattern_source(config, runs)


def test_the_figure_draws_a_given_head_over_its_dense_attention():
    q, k, v = toy_qkv(512 + 64)
    head = {
        "query": q,
        "key": k,
        "value": v,
        "scale": SCALE,
        "layer": 4,
        "head": 1,
        "kv_head": 0,
        "prompt_tokens": 576,
        "dataset": "results/datasets/x/dataset.jsonl",
        "model": "toy",
    }
    out = build("pattern_masks", Inputs(attention=head))
    d = out.data
    dense = d[d["method"] == "dense"]
    assert set(dense["phase"]) == {"prefill", "decode"}
    prefill = dense[dense["phase"] == "prefill"]
    # pooled probabilities: each query row's bins average to 1 / (keys per bin) -> rows sum to 128 / 512 * 4
    assert prefill["rows"].iloc[0] == 512 and prefill.groupby("row_bin")["kept_share"].sum().round(4).eq(0.25).all()
    assert set(d.loc[d["method"] != "dense", "rows"]) == {512, 64}
    assert any("layer 4 head 1" in n for n in out.notes)
    assert len(out.fig.axes) == 6 * 4  # six methods x (dense + three sparsities)
