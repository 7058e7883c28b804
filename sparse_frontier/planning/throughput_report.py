"""The throughput table as issue #18 asks for it: method x length, per card and engine, with the targets.

Reads only the throughput table (``throughput_table``). A **group** is one engine setting: (card, model,
TP, CUDA graphs, output tokens, the handler's decode graphs). Handler rows belong to the group of their
``handler_graphs`` (blank: ``off``, :func:`throughput_table.graphs_of`); stock vLLM rows (``handler``
off) belong to every group of their card, model, TP, CUDA graphs and output tokens, as its ``stock
vLLM`` line; stock rows with ``cuda_graphs`` ``full`` (vLLM's default ``FULL_AND_PIECEWISE``, which only
stock vLLM can run: the strongest baseline a user has) to every ``piecewise`` group of theirs, as its
``stock vLLM, full graphs`` line. Rows of a calibrated method measured without a calibration table are
left out (as the GPU-hours estimate leaves them out: ``estimate.representative``).

Per group and length, the column's **at once** is the concurrency of the latest row marked "as many as
fit" (``--concurrency max``; dense through the handler first), else the largest concurrency measured
at that length; each cell is the latest row of its method at that concurrency, else its latest "as
many as fit" row, else its row of the largest concurrency (the cell then says its own ``xN``).
Speed-ups (over dense through the handler, over stock vLLM, and where the group has it over stock vLLM
with full graphs) compare a cell with the other setting's row at the cell's concurrency where there is
one, else with its cell (marked ``*``; a target is then not evaluated: different concurrencies are not
comparable).

Where the table also has the same settings with 1 output token (``throughput.py --output-tokens 1 N``),
a group of N > 1 output tokens shows **decode alone**: a wave's wall seconds minus those of its
1-token twin at the same concurrency (the prefill and one step), so a decode-side method's speed-up
over dense shows apart from the dense prefill every method shares.

Targets (issue #18, item 3; groups of 256 output tokens): Quest and SnapKV at 0.9 >= 1.5x dense at 64k and 128k, Vertical-Slash
at 0.9 >= 2x dense at 128k, dense through the handler >= 0.95x stock vLLM at every length measured
(16k-128k), stock vLLM at the same CUDA graphs (piecewise: apples to apples). A target whose rows are
missing is listed as not evaluated, with the missing rows. Dense through the handler against stock vLLM
with full graphs is stated beside the targets, for information (no target: the handler cannot run
inside vLLM's full graphs).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparse_frontier.analysis.figures.common import length_label
from sparse_frontier.planning.throughput_table import MAX_CONCURRENCY_SOURCE, graphs_of, read_answers, read_table

K64, K128 = 65536, 128000
#: (method, sparsity, length, least speed-up over dense through the handler)
SPEEDUP_TARGETS = [
    ("quest", 0.9, K64, 1.5),
    ("quest", 0.9, K128, 1.5),
    ("snapkv", 0.9, K64, 1.5),
    ("snapkv", 0.9, K128, 1.5),
    ("vertical_slash", 0.9, K128, 2.0),
]
#: the answers' length the targets are stated for
TARGET_OUTPUT_TOKENS = 256
#: dense through the handler at least this fraction of stock vLLM's samples/h ("within 5%")
STOCK_TARGET = 0.95
STOCK = "stock vLLM"
#: stock vLLM with vLLM's full CUDA graphs (``cuda_graphs`` full), shown in the piecewise groups
STOCK_FULL = "stock vLLM, full graphs"
DENSE = "dense@0"


@dataclass(frozen=True)
class Group:
    card: str
    model: str
    tensor_parallel_size: int
    cuda_graphs: str
    output_tokens: int
    handler_graphs: str

    @property
    def title(self) -> str:
        return (
            f"{self.card} · {self.model} · TP{self.tensor_parallel_size} · vLLM graphs {self.cuda_graphs} · "
            f"{self.output_tokens} output tokens · handler graphs {self.handler_graphs}"
        )


def setting_name(row: Mapping[str, Any]) -> str:
    """A table line: ``stock vLLM`` (``stock vLLM, full graphs``), or ``method@sparsity`` through the handler."""
    if row["handler"] == "off":
        return STOCK_FULL if row["cuda_graphs"] == "full" else STOCK
    return f"{row['method']}@{row['sparsity']:g}"


def _is_max(row: Mapping[str, Any]) -> bool:
    return MAX_CONCURRENCY_SOURCE in str(row["source"])


def label(name: str) -> str:
    """A setting as the tables and the plot name it."""
    names = {
        STOCK: "stock vLLM (dense)",
        STOCK_FULL: "stock vLLM, full graphs (vLLM's default)",
        DENSE: "dense (handler)",
    }
    return names.get(name, name.replace("@", " "))


def groups_of(rows: list[dict[str, Any]]) -> dict[Group, list[dict[str, Any]]]:
    """Rows per group, stock rows copied into every group they compare with (module doc)."""

    def base(r):  # a full-graph stock row compares with the piecewise groups
        graphs = "piecewise" if r["cuda_graphs"] == "full" else r["cuda_graphs"]
        return r["card"], r["model"], r["tensor_parallel_size"], graphs, r["output_tokens"]

    groups: dict[Group, list[dict[str, Any]]] = {}
    for r in rows:
        if r["handler"] == "on":
            groups.setdefault(Group(*base(r), graphs_of(r)), []).append(r)
    for r in rows:
        if r["handler"] == "off":
            for g in [
                g
                for g in groups
                if (g.card, g.model, g.tensor_parallel_size, g.cuda_graphs, g.output_tokens) == base(r)
            ]:
                groups[g].append(r)
    return dict(sorted(groups.items(), key=lambda kv: tuple(map(str, kv[0].__dict__.values()))))


def pick_cells(rows: list[dict[str, Any]]) -> tuple[dict[int, int], dict[tuple[str, int], dict[str, Any]]]:
    """(at once per length, the row of each (setting, length)) of one group (module doc)."""
    at_once: dict[int, int] = {}
    for length in sorted({r["length"] for r in rows}):
        here = [r for r in rows if r["length"] == length]
        marked = [r for r in here if _is_max(r)]
        dense = [r for r in marked if setting_name(r) == DENSE]
        at_once[length] = (dense or marked)[-1]["concurrency"] if marked else max(r["concurrency"] for r in here)
    cells: dict[tuple[str, int], dict[str, Any]] = {}
    for name in dict.fromkeys(setting_name(r) for r in rows):
        for length, conc in at_once.items():
            mine = [r for r in rows if setting_name(r) == name and r["length"] == length]
            if not mine:
                continue
            same = [r for r in mine if r["concurrency"] == conc]
            marked = [r for r in mine if _is_max(r)]
            cells[name, length] = (same or marked or [max(mine, key=lambda r: r["concurrency"])])[-1]
    return at_once, cells


def _order(names) -> list[str]:
    first = [n for n in (STOCK, STOCK_FULL, DENSE) if n in names]
    return first + sorted(n for n in names if n not in first)


def base_row(rows: list[dict[str, Any]], cells: dict, other: str, length: int, conc: int) -> dict[str, Any] | None:
    """What a cell at ``conc`` is compared with: ``other``'s latest row at that length and concurrency,
    else ``other``'s cell (another concurrency: not comparable)."""
    same = [r for r in rows if setting_name(r) == other and r["length"] == length and r["concurrency"] == conc]
    return same[-1] if same else cells.get((other, length))


def _targets(rows: list[dict[str, Any]], cells: dict, lengths: list[int]) -> list[dict[str, Any]]:
    """Each target: what it asks, the measured ratio (or None), pass / miss / not evaluated, why."""
    out = []
    for method, sparsity, length, least in SPEEDUP_TARGETS:
        name = f"{method}@{sparsity:g}"
        what = f"{label(name)} >= {least:g}x dense (handler) at {length_label(length)}"
        need = [(n, length) for n in (name, DENSE) if (n, length) not in cells]
        if need:
            out.append(dict(target=what, ratio=None, status="not evaluated", why=_missing(need)))
            continue
        row = cells[name, length]
        out.append(_judge(what, row, base_row(rows, cells, DENSE, length, row["concurrency"]), least))
    for length in lengths or [None]:
        what = f"dense (handler) >= {STOCK_TARGET:g}x stock vLLM at {length_label(length) if length else 'any length'}"
        need = [(n, length) for n in (DENSE, STOCK) if length is None or (n, length) not in cells]
        if need:
            out.append(dict(target=what, ratio=None, status="not evaluated", why=_missing(need)))
            continue
        row = cells[DENSE, length]
        out.append(_judge(what, row, base_row(rows, cells, STOCK, length, row["concurrency"]), STOCK_TARGET))
    return out


def _judge(what: str, row: Mapping[str, Any], base: Mapping[str, Any], least: float) -> dict[str, Any]:
    """A target on two rows: evaluated only at the same concurrency (else not comparable)."""
    ratio = row["samples_per_hour"] / base["samples_per_hour"]
    if row["concurrency"] != base["concurrency"]:
        why = f"x{row['concurrency']} against x{base['concurrency']}: not comparable"
        return dict(target=what, ratio=ratio, status="not evaluated", why=why)
    return dict(target=what, ratio=ratio, status="pass" if ratio >= least else "miss", why="")


def _missing(need) -> str:
    return "no row: " + ", ".join(
        f"{label(n)} at {length_label(length) if length else 'any length'}" for n, length in need
    )


def _cell(row: Mapping[str, Any] | None, conc: int) -> str:
    if row is None:
        return "-"
    text = f"{row['samples_per_hour']:,.0f}"
    return text + (f" (x{row['concurrency']})" if row["concurrency"] != conc else "")


def _ratio(rows, cells, name, other, length) -> str:
    """``1.24x``; ``0.30x*`` where the two cells ran at different concurrencies."""
    if (name, length) not in cells or (other, length) not in cells:
        return "-"
    row = cells[name, length]
    base = base_row(rows, cells, other, length, row["concurrency"])
    star = "*" if row["concurrency"] != base["concurrency"] else ""
    return f"{row['samples_per_hour'] / base['samples_per_hour']:.2f}x{star}"


def identity(group: Group, answers: Iterable[dict[str, Any]]) -> str | None:
    """Dense through the handler against stock vLLM at the group's CUDA graphs: per (length, concurrency)
    both were measured at, whether their answers' digests are equal (the latest record of each)."""

    engine = (group.card, group.model, group.tensor_parallel_size, group.cuda_graphs, group.output_tokens)

    def at(a):
        return a["length"], a["concurrency"], a["samples"]

    mine = [
        a
        for a in answers
        if (a["card"], a["model"], a["tensor_parallel_size"], a["cuda_graphs"], a["output_tokens"]) == engine
    ]
    stock = {at(a): a for a in mine if a["handler"] == "off"}
    dense = {
        at(a): a
        for a in mine
        if a["handler"] == "on" and a["method"] == "dense" and graphs_of(a) == group.handler_graphs
    }
    shared = sorted(set(stock) & set(dense))
    if not shared:
        return None
    cells = [
        f"{length_label(n)} x{c}: "
        + ("identical" if stock[n, c, m]["answers_sha256"] == dense[n, c, m]["answers_sha256"] else "DIFFERENT")
        + f" ({m} answers)"
        for n, c, m in shared
    ]
    return (
        "Token identity, dense through the handler against stock vLLM (the same prompts, greedy; a digest of "
        "every answer's token ids, `throughput_answers.jsonl` beside the table): " + "; ".join(cells) + "."
    )


def wave_seconds(row: Mapping[str, Any]) -> float | None:
    """Wall seconds of one wave (``concurrency`` sequences) of a row; None where it has no wall time."""
    if not row.get("wall_s") or not row.get("samples"):
        return None
    return row["wall_s"] * row["concurrency"] / row["samples"]


def decode_lines(cells: dict, first: dict, lengths: list[int], out: int) -> list[str]:
    """Decode alone: per (setting, length) cell of a group (``pick_cells``), a wave's seconds minus those
    of its cell in the group of 1 output token (``first``) at the same concurrency (the prefill and one
    step), and the speed-up over dense's decode."""
    decode: dict[tuple[str, int], tuple[float, int]] = {}
    for (name, length), row in cells.items():
        one = first.get((name, length))
        if one is None or one["concurrency"] != row["concurrency"]:
            continue
        whole, prefill = wave_seconds(row), wave_seconds(one)
        if whole is not None and prefill is not None:
            decode[name, length] = (whole - prefill, row["concurrency"])
    if not decode:
        return []
    lines = [
        "",
        f"Decode alone: seconds of a wave of {out} output tokens minus the same setting's with 1 output token "
        "(the prefill and one step), at equal concurrency; in brackets the speed-up over dense through the handler's:",
        "",
        "| setting | " + " | ".join(length_label(n) for n in lengths) + " |",
        "|---|" + "---|" * len(lengths),
    ]
    for name in _order({n for n, _ in decode}):
        texts = []
        for length in lengths:
            if (name, length) not in decode:
                texts.append("-")
                continue
            seconds, conc = decode[name, length]
            dense = decode.get((DENSE, length))
            same = dense is not None and dense[1] == conc and name != DENSE and seconds > 0
            texts.append(f"{seconds:.1f} s (x{conc})" + (f" ({dense[0] / seconds:.2f}x)" if same else ""))
        lines.append(f"| {label(name)} | " + " | ".join(texts) + " |")
    return lines


def markdown(
    table_path,
    groups: dict[Group, list[dict[str, Any]]],
    left_out: list[dict[str, Any]],
    answers: Iterable[dict[str, Any]] = (),
) -> str:
    lines = [
        "# End-to-end throughput: samples/h per method and length",
        "",
        f"From `{table_path}` (written by `benchmarks/throughput.py`; this report: `benchmarks/throughput_report.py`, "
        "`sparse_frontier/planning/throughput_report.py`). Random-token prompts of exactly the length, every answer "
        "exactly the output tokens (ignore_eos); 'at once': sequences in vLLM at a time ('as many as fit': the "
        "engine's KV cache, capped). A cell at another concurrency than its column says `(xN)`. Targets (issue #18): "
        "Quest and SnapKV >= 1.5x dense at 64k and 128k, Vertical-Slash >= 2x dense at 128k, dense through the "
        f"handler within 5% of stock vLLM (>= {STOCK_TARGET:g}x).",
        "",
    ]
    if not groups:
        lines += ["No handler rows in the table: nothing to report.", ""]
    for group, rows in groups.items():
        at_once, cells = pick_cells(rows)
        lengths = list(at_once)
        names = _order({n for n, _ in cells})
        head = "| setting | " + " | ".join(length_label(n) for n in lengths) + " |"
        rule = "|---|" + "---|" * len(lengths)
        lines += [f"## {group.title}", "", "samples/h:", "", head, rule]
        lines.append("| at once | " + " | ".join(str(at_once[n]) for n in lengths) + " |")
        for name in names:
            cells_text = " | ".join(_cell(cells.get((name, n)), at_once[n]) for n in lengths)
            lines.append(f"| {label(name)} | {cells_text} |")
        bases = [DENSE, STOCK] + ([STOCK_FULL] if STOCK_FULL in names else [])
        lines += [
            "",
            "Speed-up over dense through the handler / over stock vLLM"
            + (" / over stock vLLM with full graphs" if STOCK_FULL in names else "")
            + " (`*`: the two ran at different concurrencies):",
            "",
            head,
            rule,
        ]
        for name in names:
            if name in (STOCK, STOCK_FULL):
                continue
            ratios = [" / ".join(_ratio(rows, cells, name, b, n) for b in bases) for n in lengths]
            lines.append(f"| {label(name)} | " + " | ".join(ratios) + " |")
        prefill = Group(group.card, group.model, group.tensor_parallel_size, group.cuda_graphs, 1, group.handler_graphs)
        if group.output_tokens > 1 and prefill in groups:
            lines += decode_lines(cells, pick_cells(groups[prefill])[1], lengths, group.output_tokens)
        if group.output_tokens == TARGET_OUTPUT_TOKENS:
            lines += ["", "Targets:", "", "| target | measured | result |", "|---|---|---|"]
            for t in _targets(rows, cells, [n for n in lengths if (DENSE, n) in cells or (STOCK, n) in cells]):
                measured = f"{t['ratio']:.2f}x" if t["ratio"] is not None else "-"
                result = t["status"] if not t["why"] else f"{t['status']} ({t['why']})"
                lines.append(f"| {t['target']} | {measured} | {result} |")
        else:
            lines += ["", f"(Issue #18's targets are for {TARGET_OUTPUT_TOKENS} output tokens: not evaluated here.)"]
        same = identity(group, answers)
        if same:
            lines += ["", same]
        if STOCK_FULL in names:
            distance = ", ".join(f"{_ratio(rows, cells, DENSE, STOCK_FULL, n)} at {length_label(n)}" for n in lengths)
            lines += [
                "",
                "Dense through the handler against stock vLLM with full graphs (vLLM's default; for information, "
                f"no target: the handler cannot run inside vLLM's full graphs): {distance}.",
            ]
        lines.append("")
    if left_out:
        lines += [
            "Left out (calibrated methods measured without a calibration table, which no grid run is): "
            + "; ".join(
                f"{r['card']} {setting_name(r)} {length_label(r['length'])} x{r['concurrency']}" for r in left_out
            ),
            "",
        ]
    return "\n".join(lines)


def plot(groups: dict[Group, list[dict[str, Any]]], path: str | os.PathLike) -> None:
    """samples/h vs length, one line per setting (dense and stock included), one panel per group; log axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator

    n = max(1, len(groups))
    cols = min(2, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.5 * cols, 4.2 * rows), squeeze=False)
    for ax, (group, members) in zip(axes.flat, groups.items()):
        at_once, cells = pick_cells(members)
        for name in _order({n for n, _ in cells}):
            points = sorted((length, cells[name, length]["samples_per_hour"]) for nm, length in cells if nm == name)
            style = {
                STOCK: dict(color="black", linestyle="--"),
                STOCK_FULL: dict(color="black", linestyle=":", marker="s"),
                DENSE: dict(color="grey"),
            }.get(name, {})
            ax.plot([p[0] for p in points], [p[1] for p in points], label=label(name), **{"marker": "o", **style})
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(list(at_once), [f"{length_label(k)}\nx{c}" for k, c in at_once.items()])
        ax.minorticks_off()
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.set_xlabel("prompt length (sequences at once)")
        ax.set_ylabel("samples / hour")
        ax.set_title(group.title.replace(" · vLLM", "\nvLLM"), fontsize=8)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(groups) :]:
        ax.axis("off")
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png", dpi=110)  # atomically: a killed run leaves no half image
    plt.close(fig)
    os.replace(tmp, path)


def write_report(
    table_path: str | os.PathLike, out_dir: str | os.PathLike, card: str | None = None, shown: str | None = None
) -> Path:
    """``out_dir``/throughput.md and throughput.png from the table (only rows of ``card``, a
    case-insensitive part of the card column, if given; ``shown``: how the report names the table,
    default its path); returns the Markdown's path."""
    from sparse_frontier.io import write_text_atomic
    from sparse_frontier.planning.estimate import representative, rows_of_card

    rows, left_out = representative(rows_of_card(read_table(table_path), card))
    groups = groups_of(rows)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    answers = read_answers(table_path)
    write_text_atomic(out / "throughput.md", markdown(shown or table_path, groups, left_out, answers))
    plot(groups, out / "throughput.png")
    return out / "throughput.md"
