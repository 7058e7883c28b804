"""Turn a validated config (named tables + experiments) into the list of runs it asks for.

The config's defaults and types are checked by Snakemake against ``workflow/schemas/config.schema.yaml``
before it reaches this module; here we resolve names, let each task and method validate and complete
its own parameters, and build the :class:`~sparse_frontier.paths.RunKey` of every job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from sparse_frontier import paths

EMBEDDED_PREFIX = "embedded:"
#: Engine settings that decide how runs are scheduled into jobs, not what they compute: they stay out
#: of each run (its rule params and provenance), so changing them never invalidates a finished result.
SCHEDULING_KEYS = ("methods_per_job",)
#: The config schema lives with the workflow; the package reads it from the repository checkout.
SCHEMA_PATH = Path(__file__).resolve().parent.parent / "workflow" / "schemas" / "config.schema.yaml"


def load_config(path: str | Path) -> dict[str, Any]:
    """Read and validate a config outside Snakemake (the CLI), filling defaults like ``validate``."""
    import jsonschema
    import yaml

    if not SCHEMA_PATH.exists():
        raise FileNotFoundError(f"config schema {SCHEMA_PATH} not found: run from a repository checkout")
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    config = yaml.safe_load(Path(path).read_text())
    base = jsonschema.Draft202012Validator
    check_properties = base.VALIDATORS["properties"]

    def fill_defaults(validator, properties, instance, subschema):
        if isinstance(instance, dict):
            for name, prop in properties.items():
                if "default" in prop:
                    instance.setdefault(name, prop["default"])
        yield from check_properties(validator, properties, instance, subschema)

    validator = jsonschema.validators.extend(base, {"properties": fill_defaults})(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.path))
    if errors:
        where = "/".join(str(p) for p in errors[0].path) or "(top level)"
        raise ValueError(f"{path}: invalid config at {where}: {errors[0].message}")
    return config


@dataclass(frozen=True)
class Run:
    """One prediction job with everything needed to execute it."""

    key: paths.RunKey
    model: Mapping[str, Any]
    task_params: Mapping[str, Any]
    method_params: Mapping[str, Any]
    engine: Mapping[str, Any]
    experiments: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        """Plain-data view (what rules hand to scripts and what provenance records)."""
        return {
            "key": self.key.wildcards(),
            "model": dict(self.model),
            "task_params": dict(self.task_params),
            "method_params": dict(self.method_params),
            "engine": dict(self.engine),
            "experiments": list(self.experiments),
        }

    @property
    def gpus(self) -> int:
        return int(self.model["tensor_parallel_size"]) if self.engine["device"] == "cuda" else 0


def _lookup(table: Mapping[str, Any], name: str, what: str, where: str) -> Any:
    if name not in table:
        valid = ", ".join(sorted(table)) or "(none defined)"
        raise ValueError(f"{where}: unknown {what} {name!r}; the config defines: {valid}")
    return table[name]


def resolve_task(entry: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    from sparse_frontier.tasks import get_task_class

    cls = get_task_class(entry["task"])
    return entry["task"], cls.resolve_params(entry.get("params", {}))


def resolve_method(entry: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """One method setting (scalar parameters; :func:`method_settings` expands list-valued ones)."""
    from sparse_frontier.attention import get_method_class

    cls = get_method_class(entry["method"])
    return entry["method"], cls.resolve_params(entry.get("params", {}))


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool))


def _check_scalars(params: Mapping[str, Any], where: str) -> None:
    for name, value in params.items():
        if isinstance(value, (list, tuple)):
            raise ValueError(
                f"{where}: parameter {name!r} is a list ({list(value)!r}) but cannot take several values "
                "here; only the params of a methods entry expand into one setting per value"
            )
        if not _is_scalar(value):
            raise ValueError(f"{where}: parameter {name!r} must be a number, string or boolean, got {value!r}")


def method_settings(name: str, entry: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The raw parameter sets of methods entry ``name``: list-valued parameters expand into one
    setting per value (the product, in the order given, if several are lists); scalars are kept."""
    import itertools

    where = f"methods entry {name!r}"
    params = dict(entry.get("params") or {})
    axes: list[tuple[str, list[Any]]] = []
    for key, value in params.items():
        if not isinstance(value, (list, tuple)):
            _check_scalars({key: value}, where)
            continue
        values = list(value)
        if not values:
            raise ValueError(f"{where}: parameter {key!r} is an empty list; give at least one value")
        for v in values:
            if not _is_scalar(v):
                raise ValueError(
                    f"{where}: parameter {key!r} lists {v!r}; each value must be a number, string or boolean"
                )
        repeated = sorted({repr(v) for v in values if values.count(v) > 1})
        if repeated:
            raise ValueError(f"{where}: parameter {key!r} lists {', '.join(repeated)} more than once")
        axes.append((key, values))
    if not axes:
        return [params]
    keys = [k for k, _ in axes]
    return [dict(params, **dict(zip(keys, combo))) for combo in itertools.product(*(v for _, v in axes))]


def task_method_defaults(name: str, entry: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The checked ``method_defaults`` of tasks entry ``name``: {method name: {parameter: value}}."""
    from sparse_frontier.attention import get_method_class
    from sparse_frontier.attention.base import METHODS

    where = f"tasks entry {name!r}"
    defaults = entry.get("method_defaults") or {}
    out = {}
    for method, params in defaults.items():
        try:
            cls = get_method_class(method)
        except ValueError:
            raise ValueError(
                f"{where}: method_defaults names unknown method {method!r}; valid: {', '.join(METHODS.names())} "
                "(or a combination such as vertical_slash+quest)"
            ) from None
        params = dict(params or {})
        _check_scalars(params, f"{where}: method_defaults.{method}")
        try:
            cls.from_params(params)  # unknown names and bad values, before any run uses them
        except ValueError as err:
            raise ValueError(f"{where}: method_defaults.{method}: {err}") from None
        out[method] = params
    return out


def _defaults_for(method: str, defaults: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The parameters ``defaults`` (a task's method_defaults) give to a run of ``method``: those of
    ``method`` itself, else of the combination's component of that name (under the combination's
    field name, e.g. a prefix where names clash)."""
    from sparse_frontier.attention import get_method_class

    out: dict[str, Any] = {}
    parts = method.split("+")
    if len(parts) > 1:
        fields = getattr(get_method_class(method), "parts", ())
        for component, names in fields:
            outer_of = {inner: outer for outer, inner in names.items()}
            for key, value in defaults.get(component.name, {}).items():
                out[outer_of[key]] = value
    out.update(defaults.get(method, {}))
    return out


def model_location(model: Mapping[str, Any]) -> str:
    """Where vLLM and the tokenizer load the model from: a local folder or a Hugging Face id."""
    source = model["source"]
    if source.startswith(EMBEDDED_PREFIX):
        return paths.EMBEDDED_MODEL_DIR.format(name=source[len(EMBEDDED_PREFIX) :])
    return source


def _check_fits(limit: Any, lengths: list[int], max_tokens: int, where: str) -> None:
    """Refuse lengths whose prompt + output the model cannot hold (``limit``: the model's
    :class:`~sparse_frontier.models.ContextLimit`, from :func:`~sparse_frontier.models.check_model`:
    the checkpoint's config.json when readable here, else the config's max_position_embeddings, with
    YaRN's stretch where the config asks for it; unknown here, it is checked when the dataset is made)."""
    for length in lengths:
        limit.check(length, max_tokens, where, lengths)


def expand_runs(config: Mapping[str, Any]) -> list[Run]:
    """Every run of every experiment, de-duplicated (a run shared by experiments appears once).

    A methods entry with list-valued parameters gives one setting per value (:func:`method_settings`);
    a tasks entry's ``method_defaults`` fill a run's method parameters that its methods entry leaves
    unset (:func:`task_method_defaults`)."""
    from sparse_frontier.attention import get_method_class
    from sparse_frontier.models import check_model

    runs: dict[paths.RunKey, Run] = {}
    resolved_tasks = {}
    task_defaults = {}
    for n, e in config["tasks"].items():
        _check_scalars(e.get("params") or {}, f"tasks entry {n!r}")
        resolved_tasks[n] = resolve_task(e)
        task_defaults[n] = task_method_defaults(n, e)
    raw_methods = {n: (e["method"], method_settings(n, e)) for n, e in config["methods"].items()}
    resolved: dict[tuple, tuple[str, dict[str, Any]]] = {}
    memo: dict[tuple, list[tuple[str, dict[str, Any]]]] = {}

    def settings(method_name: str, task_name: str | None) -> list[tuple[str, dict[str, Any]]]:
        if (method_name, task_name) not in memo:
            memo[method_name, task_name] = _settings(method_name, task_name)
        return memo[method_name, task_name]

    def _settings(method_name: str, task_name: str | None) -> list[tuple[str, dict[str, Any]]]:
        method, variants = raw_methods[method_name]
        extra = _defaults_for(method, task_defaults[task_name]) if task_name else {}
        out = []
        for i, raw in enumerate(variants):
            params = {**{k: v for k, v in extra.items() if k not in raw}, **raw}
            ident = (method_name, i, tuple(sorted(params.items())))
            if ident not in resolved:
                try:
                    resolved[ident] = (method, get_method_class(method).resolve_params(params))
                except ValueError as err:
                    raise ValueError(f"methods entry {method_name!r}: {err}") from None
            out.append(resolved[ident])
        return out

    for method_name in raw_methods:  # every entry is checked, used or not
        settings(method_name, None)
    engine = {k: v for k, v in config["engine"].items() if k not in SCHEDULING_KEYS}
    limits: dict[str, Any] = {}
    for exp_name, exp in config["experiments"].items():
        where = f"experiment {exp_name!r}"
        for model_name in exp["models"]:
            model = dict(_lookup(config["models"], model_name, "model", where), name=model_name)
            if model_name not in limits:  # each model's checkpoint is read once (file caches across calls)
                limits[model_name] = check_model(model_name, model)
            lengths = [int(n) for n in exp["lengths"]]
            _check_fits(limits[model_name], lengths, int(exp["max_output_tokens"]), where)
            for task_name in exp["tasks"]:
                task, task_params = _lookup(resolved_tasks, task_name, "task", where)
                for method_name in exp["methods"]:
                    _lookup(raw_methods, method_name, "method", where)
                    for method, method_params in settings(method_name, task_name):
                        for length in exp["lengths"]:
                            for seed in exp["seeds"]:
                                key = paths.RunKey(
                                    task=task,
                                    task_args=paths.format_args(task_params),
                                    length=int(length),
                                    model=model_name,
                                    samples=int(exp["samples"]),
                                    seed=int(seed),
                                    method=method,
                                    method_args=paths.format_args(method_params),
                                    max_tokens=int(exp["max_output_tokens"]),
                                )
                                previous = runs.get(key)
                                if previous and exp_name in previous.experiments:
                                    continue  # the same setting listed twice in one experiment
                                names = (previous.experiments if previous else ()) + (exp_name,)
                                runs[key] = Run(
                                    key=key,
                                    model=model,
                                    task_params=task_params,
                                    method_params=method_params,
                                    engine=engine,
                                    experiments=names,
                                )
    return list(runs.values())


class RunIndex:
    """Look up a run by the wildcards of any of its paths (what Snakemake input functions get)."""

    def __init__(self, runs: list[Run]):
        self.runs = runs
        self._by_key = {r.key: r for r in runs}
        self._by_dataset: dict[tuple, Run] = {}
        for r in runs:
            self._by_dataset.setdefault(self._dataset_id(r.key.wildcards()), r)

    @staticmethod
    def _dataset_id(w: Mapping[str, Any]) -> tuple:
        return (w["task"], w["task_args"], int(w["length"]), w["model"], int(w["samples"]), int(w["seed"]))

    def run(self, wildcards: Mapping[str, Any]) -> Run:
        w = dict(wildcards)
        for name in ("length", "samples", "seed", "max_tokens"):
            w[name] = int(w[name])
        key = paths.RunKey(**{k: w[k] for k in paths.RunKey.__dataclass_fields__})
        if key not in self._by_key:
            raise ValueError(f"no experiment in the config asks for the run {key}")
        return self._by_key[key]

    def dataset_run(self, wildcards: Mapping[str, Any]) -> Run:
        """Any run using this dataset (they all share task, model, length, samples and seed)."""
        ident = self._dataset_id(wildcards)
        if ident not in self._by_dataset:
            raise ValueError(f"no experiment in the config asks for the dataset {ident}")
        return self._by_dataset[ident]
