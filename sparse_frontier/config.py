"""Turn a validated config (named tables + experiments) into the list of runs it asks for.

Config files are read strictly (:func:`read_config_file`: file:line errors, no key given twice) and
checked against ``workflow/schemas/config.schema.yaml`` (:func:`validate_config`, defaults filled, a few
lines per error) by the CLI and by ``rules/common.smk`` alike; here we also resolve names, let each task and method validate and complete
its own parameters, and build the :class:`~sparse_frontier.paths.RunKey` of every job.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparse_frontier import paths
from sparse_frontier.models import EMBEDDED_PREFIX, check_model, model_location  # noqa: F401  (re-exported)

#: Engine settings that decide how runs are scheduled into jobs, not what they compute: they stay out
#: of each run (its rule params and provenance), so changing them never invalidates a finished result.
SCHEDULING_KEYS = ("methods_per_job",)
#: The config schema lives with the workflow; the package reads it from the repository checkout.
SCHEMA_PATH = Path(__file__).resolve().parent.parent / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """A config file that cannot be read or breaks the schema; the message says where and why."""


def load_config(path: str | Path) -> dict[str, Any]:
    """Read (:func:`read_config_file`) and validate (:func:`validate_config`) a config outside
    Snakemake (the CLI), filling defaults as the workflow does."""
    return validate_config(read_config_file(path), [path])


@functools.cache
def _strict_loader() -> type:
    import yaml

    class StrictLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
        """SafeLoader refusing a key given twice in one mapping (YAML would keep the last, silently:
        a second ``dense:`` entry would turn every run named dense into the other method)."""

        def construct_mapping(self, node, deep=False):
            if isinstance(node, yaml.MappingNode):
                first: dict[Any, Any] = {}
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue  # `<<: *anchor` keys may be overridden: that is their purpose
                    key = self.construct_object(key_node, deep=True)
                    if not isinstance(key, Hashable):
                        continue  # the base class names an unhashable key
                    if key in first:
                        raise DuplicateKeyError(key, first[key], key_node.start_mark)
                    first[key] = key_node.start_mark
            return super().construct_mapping(node, deep)

    return StrictLoader


class DuplicateKeyError(Exception):
    """A key given twice in one mapping (raised by the strict loader, named by read_config_file)."""

    def __init__(self, key: Any, first_mark: Any, mark: Any):
        super().__init__(key)
        self.key, self.first_mark, self.mark = key, first_mark, mark


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A config file (YAML or JSON) as a dict; a syntax error or a key given twice is a
    :class:`ConfigError` naming ``file:line:column`` and showing the line."""
    import json

    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"config file {str(path)!r} cannot be read: {err.strerror or err}") from None
    try:
        if path.suffix == ".json":
            config = json.loads(text, object_pairs_hook=_json_object)
        else:
            config = yaml.load(text, Loader=_strict_loader())
    except ConfigError as err:  # a key given twice in a JSON object
        raise ConfigError(f"{path}: {err}") from None
    except json.JSONDecodeError as err:
        raise ConfigError(_where(path, text, err.lineno - 1, err.colno - 1, f"not valid JSON: {err.msg}")) from None
    except DuplicateKeyError as err:
        problem = (
            f"key {err.key!r} is given twice in one mapping (first at line {err.first_mark.line + 1}); "
            "YAML would silently keep only the last: remove or rename one"
        )
        raise ConfigError(_where(path, text, err.mark.line, err.mark.column, problem)) from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        problem = f"not valid YAML: {err.problem}"
        if err.context and err.context_mark and err.context_mark.line != mark.line:
            problem += f" ({err.context} from line {err.context_mark.line + 1})"
        bad_line = (text.splitlines()[mark.line : mark.line + 1] or [""])[0]
        if "\t" in bad_line[: mark.column + 1]:
            problem += "; it is a tab: indent with spaces (YAML does not allow tabs)"
        raise ConfigError(_where(path, text, mark.line, mark.column, problem)) from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(config, dict):
        raise ConfigError(
            f"{path}: a config is a mapping with the keys name, models, tasks, methods, experiments; "
            f"this file holds {type(config).__name__ if config is not None else 'nothing'}"
        )
    return config


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ConfigError(f"key {key!r} is given twice in one JSON object; JSON readers keep only the last")
        out[key] = value
    return out


def _where(path: Path, text: str, line: int, column: int, problem: str) -> str:
    """``file:line:column: problem`` and the line itself with a caret under the column."""
    lines = text.splitlines()
    shown = lines[line] if 0 <= line < len(lines) else ""
    visible = shown.replace("\t", "\\t")  # a tab shown as \t, the caret still under the column
    caret = f"\n    {visible}\n    {' ' * len(shown[:column].replace(chr(9), '  '))}^" if shown.strip() else ""
    return f"{path}:{line + 1}:{column + 1}: {problem}{caret}"


def check_config(config: dict[str, Any], files: Sequence[str | Path]) -> dict[str, Any]:
    """The workflow's check (rules/common.smk): Snakemake merged ``files`` (and any --config values)
    into ``config`` with a reader that keeps the last of a key given twice, so each file is read
    again strictly; then the merged config is validated and its defaults filled."""
    for f in files:
        read_config_file(f)
    return validate_config(config, files)


def validate_config(config: dict[str, Any], files: Sequence[str | Path] = ()) -> dict[str, Any]:
    """Check ``config`` against the schema and fill its defaults in place (as Snakemake's
    ``validate(config, schema, set_default=True)``); a violation is a :class:`ConfigError` of a few
    lines naming the file and line, the key path, the bad value and what is allowed there.

    ``files`` are the config files ``config`` was read from (later ones override earlier ones)."""
    import jsonschema
    import yaml

    if not SCHEMA_PATH.exists():
        raise FileNotFoundError(f"config schema {SCHEMA_PATH} not found: run from a repository checkout")
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    base = jsonschema.Draft202012Validator
    check_properties = base.VALIDATORS["properties"]

    def fill_defaults(validator, properties, instance, subschema):
        if isinstance(instance, dict):
            for name, prop in properties.items():
                if "default" in prop:
                    instance.setdefault(name, copy.deepcopy(prop["default"]))
        yield from check_properties(validator, properties, instance, subschema)

    validator = jsonschema.validators.extend(base, {"properties": fill_defaults})(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        shown = [_describe(e, files) for e in errors[:3]]
        more = f"\n({len(errors) - 3} more errors)" if len(errors) > 3 else ""
        raise ConfigError("invalid config: " + "\n".join(shown) + more)
    return config


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + " ..."


def _describe(error, files: Sequence[str | Path]) -> str:
    """One schema violation in two lines: where (file:line and key path), what, and what is allowed."""
    import difflib

    keys = list(error.absolute_path)
    schema = error.schema
    if error.validator == "additionalProperties" and schema.get("additionalProperties") is False:
        allowed = list(schema.get("properties", {}))
        extra = [k for k in error.instance if k not in allowed]
        keys = keys + extra[:1]
        guesses = difflib.get_close_matches(str(extra[0]), allowed, n=1) if extra else []
        hint = f" (did you mean {guesses[0]!r}?)" if guesses else ""
        what = f"unknown key {', '.join(map(repr, extra))}{hint}\n  allowed keys there: {', '.join(allowed)}"
        where_keys = keys[:-1]
    elif error.validator == "enum":
        what = (
            f"{_short(error.instance)} is not allowed\n  allowed values: {', '.join(map(str, error.validator_value))}"
        )
        where_keys = keys
    elif error.validator == "type":
        wanted = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        what = (
            f"{_short(error.instance)} is {_json_type(error.instance)}; it must be "
            f"{' or '.join(_SCHEMA_TYPES.get(t, t) for t in wanted)}"
        )
        where_keys = keys
    elif error.validator in ("oneOf", "anyOf"):
        described = [o.get("description", str(o.get("type"))).rstrip(".") for o in error.validator_value]
        options = "; or ".join(d[:1].lower() + d[1:] for d in described)
        what = f"{_short(error.instance)} is {_json_type(error.instance)}; it must be {options}"
        where_keys = keys
    else:
        message = error.message
        if len(message) > 200:
            message = f"{_short(error.instance)} fails {error.validator} {_short(error.validator_value, 60)}"
        what = message
        where_keys = keys
    path = ".".join(map(str, where_keys)) or "(top level)"
    return f"{_locate(files, keys)}{path}: {what}"


_SCHEMA_TYPES = {
    "object": "a mapping",
    "array": "a list",
    "integer": "a whole number",
    "number": "a number",
    "string": "a string",
    "boolean": "true or false",
    "null": "null",
}


def _json_type(value: Any) -> str:
    for name, kind in (
        ("a boolean", bool),
        ("a number", (int, float)),
        ("a string", str),
        ("a list", list),
        ("a mapping", dict),
    ):
        if isinstance(value, kind):
            return name
    return "null" if value is None else type(value).__name__


def _locate(files: Sequence[str | Path], keys: list) -> str:
    """``file:line: `` of the deepest part of ``keys`` written in one of ``files`` (the last file
    wins, as it overrides the others), or the files' names when no line is known."""
    best: tuple[int, str] = (0, "")
    for f in files:
        lines = _key_lines(str(f))
        for depth in range(len(keys), 0, -1):
            line = lines.get(tuple(str(k) for k in keys[:depth]))
            if line is not None:
                if depth >= best[0]:
                    best = (depth, f"{f}:{line}: ")
                break
    if best[1]:
        return best[1]
    return f"{', '.join(map(str, files))}: " if files else ""


def _key_lines(path: str) -> dict[tuple[str, ...], int]:
    """Key path -> line (1-based) of every key and list item of a YAML or JSON file ({} if unreadable)."""
    import yaml

    try:
        root = yaml.compose(Path(path).read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except (OSError, yaml.YAMLError):
        return {}
    out: dict[tuple[str, ...], int] = {}

    def walk(node, prefix: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                here = prefix + (str(key.value),)
                out.setdefault(here, key.start_mark.line + 1)
                walk(value, here)
        elif isinstance(node, yaml.SequenceNode):
            for i, value in enumerate(node.value):
                out.setdefault(prefix + (str(i),), value.start_mark.line + 1)
                walk(value, prefix + (str(i),))

    walk(root, ())
    return out


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


def check_model_name(name: str) -> None:
    """A model's name is a folder of every result path: refuse ``../x``, ``a/b``, spaces and the like
    here, rather than as files Snakemake cannot find."""
    import re

    pattern = paths.WILDCARD_PATTERNS["model"]
    if not isinstance(name, str) or not re.fullmatch(pattern, name):
        raise ConfigError(
            f"models entry {name!r}: a model's name is a folder of its result paths, so it may hold only "
            f"letters, digits, '.', '_' and '-', starting with a letter or digit (pattern {pattern}); "
            "the checkpoint's location goes in its source"
        )


def resolve_task(entry: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    from sparse_frontier.tasks import get_task_class

    cls = get_task_class(entry["task"])
    return entry["task"], cls.resolve_params(entry.get("params", {}))


def task_entry_names(config: Mapping[str, Any]) -> dict[tuple[str, str], str]:
    """(registered task, task_args as in the run paths) -> the config's name for that tasks entry,
    e.g. ``("ruler_niah", "...num_queries~2...") -> "niah_2q"``: what tells two entries of one task apart."""
    names = {}
    for name, entry in config.get("tasks", {}).items():
        task, params = resolve_task(entry)
        names.setdefault((task, paths.format_args(params)), name)
    return names


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
    from sparse_frontier.attention import METHODS, get_method_class

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

    for model_name in config["models"]:
        check_model_name(model_name)
    runs: dict[paths.RunKey, Run] = {}
    resolved_tasks = {}
    task_defaults = {}
    for n, e in config["tasks"].items():
        _check_scalars(e.get("params") or {}, f"tasks entry {n!r}")
        try:
            resolved_tasks[n] = resolve_task(e)
        except ValueError as err:
            raise ValueError(f"tasks entry {n!r}: {err}") from None
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
        self._by_dataset: dict[tuple, Run] = {}  # RunKey.dataset_key() -> the first run of that dataset
        for r in runs:
            self._by_dataset.setdefault(r.key.dataset_key(), r)

    def run(self, wildcards: Mapping[str, Any]) -> Run:
        key = paths.RunKey.from_wildcards(wildcards)
        if key not in self._by_key:
            raise ConfigError(
                f"no experiment in the config asks for the run {key.predictions}"
                + self._nearest(key.wildcards(), [(r.key.predictions, r.key.wildcards()) for r in self.runs])
            )
        return self._by_key[key]

    @staticmethod
    def _nearest(wanted: Mapping[str, Any], known: list[tuple[str, Mapping[str, Any]]], n: int = 3) -> str:
        """Lines naming the ``n`` known (path, wildcards) closest to ``wanted``: fewest fields
        differing, then the most similar values; each with what differs."""
        import difflib
        import heapq

        if not known:
            return "\n  (the config asks for none)"

        def differing(have: Mapping[str, Any]) -> list[str]:
            return [k for k in wanted if str(have[k]) != str(wanted[k])]

        @functools.cache  # per distinct value: a grid has few of each
        def similarity(k: str, have: str) -> float:
            return difflib.SequenceMatcher(None, str(wanted[k]), have).ratio()

        def distance(item: tuple[str, Mapping[str, Any]]) -> tuple[int, float]:
            diff = differing(item[1])
            return len(diff), -sum(similarity(k, str(item[1][k])) for k in diff)

        def change(k: str, have: Any) -> str:
            if k.endswith("_args"):  # only the arguments that differ
                mine, theirs = set(str(wanted[k]).split("+")), set(str(have).split("+"))
                return f"{k} {'+'.join(sorted(theirs - mine)) or '-'}, not {'+'.join(sorted(mine - theirs)) or '-'}"
            return f"{k} {have}, not {wanted[k]}"

        lines = [
            f"\n  {path}\n    ({'; '.join(change(k, have[k]) for k in differing(have))})"
            for path, have in heapq.nsmallest(n, known, key=distance)
        ]
        return "; the nearest it asks for:" + "".join(lines)

    def dataset_run(self, wildcards: Mapping[str, Any]) -> Run:
        """Any run using this dataset (they all share ``RunKey.DATASET_FIELDS``: the wildcards of
        ``paths.DATASET``)."""
        ident = paths.RunKey.select(wildcards, paths.RunKey.DATASET_FIELDS)
        if ident not in self._by_dataset:
            wanted = dict(zip(paths.RunKey.DATASET_FIELDS, ident))
            known = [(r.key.dataset, r.key.dataset_wildcards()) for r in self._by_dataset.values()]
            raise ConfigError(
                f"no experiment in the config asks for the dataset {paths.DATASET.format(**wanted)}"
                + self._nearest(wanted, known)
            )
        return self._by_dataset[ident]
