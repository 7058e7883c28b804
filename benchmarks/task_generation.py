"""Time dataset preparation: samples x length per task with the SmolLM2 tokenizer.

    python benchmarks/task_generation.py --samples 100 --length 131072 --tasks ruler_vt story_multihop
Prints a Markdown table (seconds, full tokenisations per sample, mean prompt tokens).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

from sparse_frontier.tasks import get_task_class
from sparse_frontier.tasks.generate import generate_samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--length", type=int, default=131072)
    parser.add_argument(
        "--tasks",
        nargs="+",
        default=["ruler_niah", "ruler_vt", "ruler_cwe", "story_retrieval", "story_multihop", "story_filtering"],
    )
    args = parser.parse_args()
    from transformers import AutoTokenizer

    from sparse_frontier.models import embedded_gguf

    gguf = embedded_gguf("smollm2-135m-instruct")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    calls = 0
    original = tokenizer.apply_chat_template

    def counting(*a, **k):
        nonlocal calls
        calls += 1
        return original(*a, **k)

    tokenizer.apply_chat_template = counting
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print("\n| task | samples | length | seconds | tokenisations/sample | mean prompt tokens |")
    print("|---|---|---|---|---|---|")
    for name in args.tasks:
        task = get_task_class(name).from_params({})
        calls, start = 0, time.perf_counter()
        rows = list(generate_samples(task, tokenizer, args.length, args.samples, seed=43))
        seconds = time.perf_counter() - start
        mean = sum(r["prompt_tokens"] for r in rows) / len(rows)
        print(
            f"| {name} | {args.samples} | {args.length} | {seconds:.1f} | {calls / args.samples:.2f} | {mean:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
