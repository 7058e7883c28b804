"""How much do Block-Sparse's selections overlap between neighbouring query blocks and between the
query heads of a GQA group, on a real model's attention? (the case for sharing key tiles)

`sparse_prefill` runs one program per (query head, 16-query block), so each kept key block is
loaded again by every query block and head that keeps it (docs/methods.md: that gathered traffic,
not FLOPs, limits Block-Sparse at 128k). A kernel with taller tiles would compute G neighbouring
query blocks (or the g heads of a kv head) over the *union* of their kept key blocks, masking the
pairs a block did not keep. What that buys depends on the overlap, which random Q/K cannot show:

- ``traffic`` = union / (sum of the members' kept blocks): the key-tile loads left per query block
  (1 = no sharing; 1/G = identical selections);
- ``inflation`` = union / (mean kept blocks per member): the tile products per member computed
  (1 = none wasted; G = disjoint selections).

The model runs on the CPU (transformers, float32) over prompts the project's task generators make;
queries and keys are recorded after rotary embedding at every layer and fed to the method's own
index (`block_index`). Rows start past the first ``top`` query blocks (which keep every block).

    python benchmarks/block_overlap.py MODEL_DIR --length 8000 --out benchmarks/results/block_overlap
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import pandas as pd
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sparse_frontier.attention.block_sparse import block_index, top_chunks_for  # noqa: E402
from sparse_frontier.kernels.grouped_blocks import group_blocks  # noqa: E402

TASKS = {  # the grid's task settings (config/config.yaml), on the project's own generators
    "niah": ("ruler_niah", {"num_queries": 4}),
    "vt": ("ruler_vt", {"num_chains": 8, "num_hops": 4}),
    "cwe": ("ruler_cwe", {}),
    "retrieval": ("story_retrieval", {"num_questions": 16}),
    "multihop": ("story_multihop", {}),
}


def record_qk(model, input_ids: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Every layer's (query [T, Hq, D], key [T, Hkv, D]) after rotary embedding, from one forward pass."""
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    recorded = []

    def recording_sdpa(module, query, key, value, attention_mask, **kwargs):
        recorded.append((query[0].transpose(0, 1).contiguous(), key[0].transpose(0, 1).contiguous()))
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)

    AttentionInterface.register("record_qk_sdpa", recording_sdpa)
    model.config._attn_implementation = "record_qk_sdpa"
    with torch.no_grad():
        model(input_ids[None], use_cache=False)
    return recorded


def overlap(blocks: torch.Tensor, counts: torch.Tensor, nb: int, top: int, group: int, kv_heads: int):
    """traffic and inflation (see the module doc) of tiles of ``group`` query blocks of one head, and
    of the ``Hq / kv_heads`` heads of a kv head at one query block; rows past ``top`` only. The unions
    are the grouped kernel's own (``group_blocks``)."""
    hq, _, k = blocks.shape
    whole = (nb - top) // group * group  # whole groups past the fully kept rows
    if whole == 0:
        return {}
    rows = slice(top, top + whole)
    union = group_blocks(blocks[:, rows], counts[:, rows], nb, group)[2].float()  # [head, tile]
    kept = counts[:, rows].view(hq, -1, group).float()
    out = {
        "tile_traffic": (union / kept.sum(-1)).mean().item(),
        "tile_inflation": (union / kept.mean(-1)).mean().item(),
    }
    # the g heads of a kv head as the g members of a tile at each query block
    g = hq // kv_heads
    by_block = blocks[:, top:].reshape(kv_heads, g, -1, k).transpose(1, 2).reshape(kv_heads, -1, k)
    kept_h = counts[:, top:].reshape(kv_heads, g, -1).float()
    union_h = group_blocks(by_block, kept_h.transpose(1, 2).reshape(kv_heads, -1).int(), nb, g)[2].float()
    out.update(
        gqa_traffic=(union_h / kept_h.sum(1)).mean().item(), gqa_inflation=(union_h / kept_h.mean(1)).mean().item()
    )
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="an HF checkpoint folder (e.g. the pipeline's converted SmolLM2)")
    parser.add_argument("--length", type=int, default=8000)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.8, 0.9, 0.95])
    parser.add_argument("--groups", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--chunk", type=int, default=16)
    parser.add_argument("--seed", type=int, default=43)
    parser.add_argument("--out", required=True, help="folder: block_overlap.csv and block_overlap.md")
    parser.add_argument(
        "--save-qk",
        metavar="FILE",
        help="also save the first task's queries and keys of --save-layers (bfloat16, torch.save) for "
        "benchmarks/grouped_blocks.py to time the kernels on",
    )
    parser.add_argument("--save-layers", type=int, nargs="+", default=[0, 15, 29])
    args = parser.parse_args(argv)

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sparse_frontier.tasks import get_task_class
    from sparse_frontier.tasks.generate import generate_samples

    start = time.time()
    torch.manual_seed(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    kv_heads = model.config.num_key_value_heads
    rows = []

    def measure(source: str, qk: list, length: int):
        nb = -(-length // args.chunk)
        for s in args.sparsities:
            top = top_chunks_for(length, args.chunk, s)
            for layer, (q, k) in enumerate(qk):
                blocks, counts = block_index(q, k, args.chunk, top)
                for group in args.groups:
                    stats = overlap(blocks, counts, nb, top, group, kv_heads)
                    rows.append(
                        dict(source=source, length=length, sparsity=s, top=top, layer=layer, group=group, **stats)
                    )

    for name in args.tasks:
        task_name, params = TASKS[name]
        task = get_task_class(task_name).from_params(params)
        sample = next(iter(generate_samples(task, tokenizer, args.length, samples=1, seed=args.seed)))
        ids = torch.tensor(sample["input_ids"])
        qk = record_qk(model, ids)
        measure(name, qk, len(ids))
        if args.save_qk and name == args.tasks[0]:
            layers = {i: (qk[i][0].bfloat16(), qk[i][1].bfloat16()) for i in args.save_layers if i < len(qk)}
            torch.save({"model": Path(args.model).name, "task": name, "layers": layers}, args.save_qk)
        print(f"{name}: {len(ids)} tokens, {len(qk)} layers, {time.time() - start:.0f} s", flush=True)
    # the benchmark's inputs: random queries and keys of the same shapes (every layer alike)
    q, k = qk[0]  # the last task's first layer
    measure("random", [(torch.randn_like(q), torch.randn_like(k)) for _ in range(4)], q.shape[0])

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame(rows)
    table.to_csv(out / "block_overlap.csv", index=False)
    cols = ["tile_traffic", "tile_inflation", "gqa_traffic", "gqa_inflation"]
    summary = table.groupby(["sparsity", "group", "source"], sort=False)[cols].mean().round(3).reset_index()
    head = (
        f"# Block-Sparse selections: overlap between neighbouring query blocks and GQA heads\n\n"
        f"Written by `benchmarks/block_overlap.py` (`python benchmarks/block_overlap.py "
        f"{' '.join(sys.argv[1:]) if argv is None else ' '.join(argv)}`); "
        f"{Path(args.model).name}, {model.config.num_hidden_layers} layers, heads "
        f"{model.config.num_attention_heads}/{kv_heads}; {args.chunk}-token blocks; one prompt per task "
        f"(seed {args.seed}), {args.length} tokens at most; CPU ({platform.processor() or platform.machine()}), "
        f"torch {torch.__version__}; {time.time() - start:.0f} s. Mean over layers and heads.\n\n"
        "- `tile_traffic`: key-tile loads of a tile of `group` neighbouring query blocks over the union of "
        "their kept key blocks, per load of one-block programs (1 = no saving, 1/group = identical "
        "selections);\n"
        "- `tile_inflation`: tile products computed per member, over its own kept blocks (1 = none "
        "wasted, group = disjoint selections);\n"
        "- `gqa_*`: the same for the query heads of one kv head at one query block (group column does "
        "not apply).\n\n"
    )
    (out / "block_overlap.md").write_text(head + summary.to_markdown(index=False) + "\n")
    print(summary.to_string(index=False))


if __name__ == "__main__":
    main()
