"""Check an ONNX graph against what the ONNX-TensorRT parser can import, before a GPU is involved.

A TensorRT build fails late (on the device) and some problems do not fail at all (GridSample-20
silently samples with nearest). This lint reads the support table in
``ingan/export/data/onnx_trt_support.json`` (facts from onnx-tensorrt's ``docs/operators.md`` and
importer source; the table records its sources) and reports per node.

Table entry per op type: ``supported`` (bool), ``dtypes`` (TensorRT names: FP32, FP16, BF16, INT32,
INT64, INT8, UINT8, BOOL, FP8, FP4, INT4), ``notes``, ``constraints`` (rules below), and optionally
``deprecated`` (true: warn) and ``dtype_of`` (which tensor ``dtypes`` describes: ``"input:K"``
(default ``"input:0"``), ``"output:K"`` or ``"none"``).

Rule vocabulary (one JSON object per rule; anything else is rejected when the table loads).
Exactly one target key:

- ``{"attribute": NAME, ...}`` -- the node attribute; when unset, the ONNX schema default for the
  node's opset is checked (so GridSample-20's default mode "linear" is caught).
- ``{"input": K, ...}`` -- input K, only when the node has it (non-empty name).
- ``{"max_outputs": N}`` -- at most N outputs may be named (e.g. MaxPool without ``Indices``).
- ``{"max_opset": N}`` -- the node's domain opset must be <= N.
- ``{"same_dtype": [K, ...]}`` -- those inputs must share one dtype (when types are known).

Checks on an attribute or input target:

- ``"allowed": [...]`` -- the value (each element of a list or tensor) must be one of these;
  for an input only checked when the input is constant.
- ``"forbidden": [...]`` -- no value (element) may be one of these; inputs as for ``allowed``.
- ``"max": number`` -- the value (each element) must be <= number; inputs as for ``allowed``.
- ``"absent": true`` -- (attribute) must not be set.
- ``"as": "dtype"`` -- (attribute) compare an int dtype by its TensorProto name ("FLOAT", ...).
- ``"constant": true`` -- (input) must be an initializer or a ``Constant`` node output, in this
  graph or an enclosing one.
- ``"rank": [R, ...]`` -- (input) rank must be one of these; checked when shape inference knows it.

Common optional keys: ``"severity"`` (``"error"``, the default, or ``"warning"``), ``"message"``
(why, appended to the finding) and ``"link"`` (an issue URL, appended).

Beyond the rules: op types missing from the table and ops of non-default domains are errors
(model-local functions are expanded and their bodies linted instead), ``If``/``Loop``/``Scan``
subgraphs are linted recursively, the model opset is compared with the table's ``opset_range``
(warning), and a dtype not in ``dtypes`` is a warning (the docs' dtype lists are not exhaustive
enough to fail a build on).
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import onnx

ERROR = "error"
WARNING = "warning"

_TABLE_FILE = "onnx_trt_support.json"
_OP_KEYS = {"supported", "dtypes", "notes", "constraints"}
_OPTIONAL_OP_KEYS = {"deprecated", "dtype_of"}
_TARGETS = {"attribute", "input", "max_outputs", "max_opset", "same_dtype"}
_COMMON = {"severity", "message", "link"}
_CHECKS = {
    "attribute": {"allowed", "forbidden", "max", "absent", "as"},
    "input": {"allowed", "forbidden", "max", "constant", "rank"},
    "max_outputs": set(),
    "max_opset": set(),
    "same_dtype": set(),
}
_VALUE_CHECKS = {"allowed", "forbidden", "max"}
_DEFAULT_DOMAINS = {"", "ai.onnx"}
_MODEL_NODE = "<model>"

# ONNX TensorProto names -> the names the operators.md table uses.
_TRT_DTYPE = {
    "FLOAT": "FP32",
    "FLOAT16": "FP16",
    "BFLOAT16": "BF16",
    "DOUBLE": "DOUBLE",
    "FLOAT8E4M3FN": "FP8",
    "FLOAT4E2M1": "FP4",
}

_MISSING = object()

# Tensor name -> (TensorProto elem_type, rank or None when unknown).
_Types = dict[str, tuple[int, int | None]]


@dataclass(frozen=True)
class LintFinding:
    """One problem: an error means the parser rejects the node or computes something else."""

    severity: str
    node: str
    op_type: str
    message: str

    def __str__(self) -> str:
        where = f"{self.node} ({self.op_type})" if self.op_type else self.node
        return f"{self.severity}: {where}: {self.message}"


@dataclass(frozen=True)
class LintReport:
    """All findings for a model plus what it contains, for logs and the export sidecar."""

    findings: tuple[LintFinding, ...]
    op_counts: dict[str, int]
    opset: int

    @property
    def errors(self) -> tuple[LintFinding, ...]:
        return tuple(f for f in self.findings if f.severity == ERROR)

    @property
    def warnings(self) -> tuple[LintFinding, ...]:
        return tuple(f for f in self.findings if f.severity == WARNING)

    @property
    def ok(self) -> bool:
        """True when nothing would stop (or silently change) the TensorRT import."""
        return not self.errors

    def summary(self) -> str:
        """One line, e.g. 'TensorRT lint: 19 op types, 112 nodes, 0 errors, 1 warning'."""
        types, nodes = len(self.op_counts), sum(self.op_counts.values())
        return (
            f"TensorRT lint: {_plural(types, 'op type')}, {_plural(nodes, 'node')}, "
            f"{_plural(len(self.errors), 'error')}, {_plural(len(self.warnings), 'warning')}"
        )


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


@functools.lru_cache(maxsize=1)
def load_support_table() -> dict[str, Any]:
    """The table shipped as package data, validated once (a bad rule is a bug, not user input)."""
    text = resources.files("ingan.export").joinpath("data", _TABLE_FILE).read_text(encoding="utf-8")
    table = json.loads(text)
    validate_support_table(table)
    return table


def validate_support_table(table: dict[str, Any]) -> None:
    """Raise ValueError naming the first entry that the lint could not interpret."""
    for key in ("source", "tensorrt_versions", "retrieved", "opset_range", "ops"):
        if key not in table:
            raise ValueError(f"support table: missing top-level key {key!r}")
    if not table["source"]:
        raise ValueError("support table: 'source' must list where the facts come from")
    for op_type, entry in table["ops"].items():
        missing = _OP_KEYS - entry.keys()
        unknown = entry.keys() - _OP_KEYS - _OPTIONAL_OP_KEYS
        if missing or unknown:
            raise ValueError(
                f"support table: {op_type}: missing {sorted(missing)}, unknown {sorted(unknown)}"
            )
        for rule in entry["constraints"]:
            _validate_rule(op_type, rule)


def _validate_rule(op_type: str, rule: dict[str, Any]) -> None:
    targets = _TARGETS & rule.keys()
    if len(targets) != 1:
        raise ValueError(
            f"support table: {op_type}: rule {rule} needs exactly one of {sorted(_TARGETS)}"
        )
    (target,) = targets
    unknown = rule.keys() - {target} - _CHECKS[target] - _COMMON
    if unknown:
        raise ValueError(
            f"support table: {op_type}: rule {rule} has unknown keys {sorted(unknown)}"
        )
    if rule.get("severity", ERROR) not in (ERROR, WARNING):
        raise ValueError(f"support table: {op_type}: rule {rule} has a bad severity")
    if target in ("attribute", "input") and not _CHECKS[target] & rule.keys():
        raise ValueError(f"support table: {op_type}: rule {rule} checks nothing")


def lint_model(model: onnx.ModelProto) -> LintReport:
    """Lint every node (subgraphs and local functions included) against the support table."""
    table = load_support_table()
    findings: list[LintFinding] = []
    opsets = {_domain(o.domain): o.version for o in model.opset_import}
    opset = opsets.get("", 0)
    lo, hi = table["opset_range"]["min"], table["opset_range"]["max"]
    if not lo <= opset <= hi:
        findings.append(
            LintFinding(
                WARNING,
                _MODEL_NODE,
                "",
                f"model opset {opset} is outside the range the ONNX-TensorRT docs list "
                f"({lo}..{hi})",
            )
        )
    linter = _Linter(table, findings, {(f.domain, f.name): f for f in model.functions})
    types = _collect_types(model, findings)
    linter.graph(model.graph, opsets, _Scope.root(), types, prefix="")
    return LintReport(tuple(findings), dict(sorted(linter.counts.items())), opset)


def _domain(domain: str) -> str:
    return "" if domain in _DEFAULT_DOMAINS else domain


def _collect_types(model: onnx.ModelProto, findings: list[LintFinding]) -> _Types:
    """Types and ranks from shape inference, or the declared ones when inference fails."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False)
    except Exception as exc:  # noqa: BLE001 - any inference failure just limits the checks
        findings.append(
            LintFinding(
                WARNING,
                _MODEL_NODE,
                "",
                f"ONNX shape inference failed ({type(exc).__name__}); "
                "dtype and rank checks use declared types only",
            )
        )
        inferred = model
    types: _Types = {}
    _graph_types(inferred.graph, types)
    return types


def _graph_types(graph: onnx.GraphProto, types: _Types) -> None:
    import onnx

    for init in graph.initializer:
        types[init.name] = (init.data_type, len(init.dims))
    for info in (*graph.input, *graph.output, *graph.value_info):
        tensor = info.type.tensor_type if info.type.HasField("tensor_type") else None
        if tensor is None or not tensor.elem_type:
            continue
        rank = len(tensor.shape.dim) if tensor.HasField("shape") else None
        types[info.name] = (tensor.elem_type, rank)
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                _graph_types(attr.g, types)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    _graph_types(sub, types)


@dataclass
class _Scope:
    """Names known at parse time: initializers and Constant outputs, outer scopes included."""

    sources: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def root(cls) -> _Scope:
        return cls()

    def child(self, graph: onnx.GraphProto | None, nodes: Any) -> _Scope:
        sources = dict(self.sources)
        if graph is not None:
            for init in graph.initializer:
                sources[init.name] = init
            for sparse in graph.sparse_initializer:
                sources[sparse.values.name] = None
        for node in nodes:
            if node.op_type == "Constant" and _domain(node.domain) == "" and node.output:
                sources[node.output[0]] = node
        return _Scope(sources)

    def is_constant(self, name: str) -> bool:
        return name in self.sources

    def values(self, name: str) -> list[Any] | None:
        """Flat list of the constant's values, or None when not readable (external data, sparse)."""
        import onnx
        from onnx import numpy_helper

        source = self.sources.get(name)
        try:
            if isinstance(source, onnx.TensorProto):
                return numpy_helper.to_array(source).ravel().tolist()
            if isinstance(source, onnx.NodeProto):
                for attr in source.attribute:
                    value = onnx.helper.get_attribute_value(attr)
                    if isinstance(value, onnx.TensorProto):
                        return numpy_helper.to_array(value).ravel().tolist()
                    if attr.name in ("value_int", "value_float"):
                        return [value]
                    if attr.name in ("value_ints", "value_floats"):
                        return list(value)
        except Exception:  # noqa: BLE001 - unreadable value: the value check is skipped
            return None
        return None


class _Linter:
    """Walks graphs; holds what all levels share (table, findings, counts, local functions)."""

    def __init__(
        self,
        table: dict[str, Any],
        findings: list[LintFinding],
        functions: dict[tuple[str, str], Any],
    ) -> None:
        self.ops: dict[str, Any] = table["ops"]
        self.findings = findings
        self.functions = functions
        self.counts: Counter[str] = Counter()
        self._expanding: set[tuple[str, str]] = set()

    def graph(
        self,
        graph: onnx.GraphProto,
        opsets: dict[str, int],
        outer: _Scope,
        types: _Types,
        prefix: str,
    ) -> None:
        scope = outer.child(graph, graph.node)
        for index, node in enumerate(graph.node):
            self.node(node, index, opsets, scope, types, prefix)

    def node(
        self,
        node: onnx.NodeProto,
        index: int,
        opsets: dict[str, int],
        scope: _Scope,
        types: _Types,
        prefix: str,
    ) -> None:
        import onnx

        name = prefix + (node.name or f"{node.op_type}_{index}")
        domain = _domain(node.domain)
        self.counts[node.op_type if domain == "" else f"{domain}::{node.op_type}"] += 1

        if domain:
            key = (node.domain, node.op_type)
            function = self.functions.get(key)
            if function is not None and key not in self._expanding:
                self._expanding.add(key)
                fn_opsets = {_domain(o.domain): o.version for o in function.opset_import}
                fn_scope = _Scope.root().child(None, function.node)
                for i, inner in enumerate(function.node):
                    # Function-internal names are private: no outer types apply.
                    self.node(inner, i, fn_opsets, fn_scope, {}, f"{name}/")
                self._expanding.discard(key)
                return
            self._report(
                ERROR,
                name,
                node.op_type,
                f"op from non-default domain '{node.domain}' is not an ONNX operator; "
                "TensorRT can only run it through a plugin",
            )
            return

        entry = self.ops.get(node.op_type)
        if entry is None:
            self._report(ERROR, name, node.op_type, "not in the ONNX-TensorRT support table")
            return
        if not entry["supported"]:
            note = f" ({entry['notes']})" if entry["notes"] else ""
            message = f"not supported by the ONNX-TensorRT parser{note}"
            self._report(ERROR, name, node.op_type, message)
            return
        if entry.get("deprecated"):
            self._report(WARNING, name, node.op_type, f"deprecated ONNX op: {entry['notes']}")

        opset = opsets.get("", 0)
        for rule in entry["constraints"]:
            self._rule(rule, node, name, opset, scope, types)
        self._dtype(entry, node, name, types)

        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                self.graph(attr.g, opsets, scope, types, f"{name}/{attr.name}/")
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for i, sub in enumerate(attr.graphs):
                    self.graph(sub, opsets, scope, types, f"{name}/{attr.name}[{i}]/")

    def _report(self, severity: str, node: str, op_type: str, message: str) -> None:
        self.findings.append(LintFinding(severity, node, op_type, message))

    def _fail(self, rule: dict[str, Any], node: str, op_type: str, message: str) -> None:
        if rule.get("message"):
            message += f": {rule['message']}"
        if rule.get("link"):
            message += f" (see {rule['link']})"
        self._report(rule.get("severity", ERROR), node, op_type, message)

    def _rule(
        self,
        rule: dict[str, Any],
        node: onnx.NodeProto,
        name: str,
        opset: int,
        scope: _Scope,
        types: _Types,
    ) -> None:
        op = node.op_type
        if "max_opset" in rule:
            if opset > rule["max_opset"]:
                message = f"{op} at opset {opset} (must be <= {rule['max_opset']})"
                self._fail(rule, name, op, message)
        elif "max_outputs" in rule:
            used = sum(1 for out in node.output if out)
            if used > rule["max_outputs"]:
                message = f"{op} uses {used} outputs (at most {rule['max_outputs']} supported)"
                self._fail(rule, name, op, message)
        elif "same_dtype" in rule:
            dtypes = {
                types[node.input[k]][0]
                for k in rule["same_dtype"]
                if k < len(node.input) and node.input[k] and node.input[k] in types
            }
            if len(dtypes) > 1:
                names = sorted(_dtype_name(t) for t in dtypes)
                self._fail(rule, name, op, f"{op} inputs {rule['same_dtype']} mix dtypes {names}")
        elif "attribute" in rule:
            self._attribute_rule(rule, node, name, opset)
        else:
            self._input_rule(rule, node, name, scope, types)

    def _attribute_rule(
        self, rule: dict[str, Any], node: onnx.NodeProto, name: str, opset: int
    ) -> None:
        import onnx

        attr_name, op = rule["attribute"], node.op_type
        attr = next((a for a in node.attribute if a.name == attr_name), None)
        if rule.get("absent"):
            if attr is not None:
                self._fail(rule, name, op, f"{op} attribute '{attr_name}' is not supported")
            return
        if attr is not None:
            value, how = onnx.helper.get_attribute_value(attr), ""
        else:
            value, how = _schema_default(op, opset, attr_name), " (ONNX default)"
            if value is _MISSING:
                return
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        elif isinstance(value, list):
            value = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in value]
        if rule.get("as") == "dtype":
            if isinstance(value, list):
                value = [_onnx_dtype_name(v) for v in value]
            else:
                value = _onnx_dtype_name(value)
        elements = value if isinstance(value, list) else [value]
        shown = f"{op} attribute {attr_name}={value!r}{how}"
        self._check_values(rule, name, op, shown, elements)

    def _input_rule(
        self,
        rule: dict[str, Any],
        node: onnx.NodeProto,
        name: str,
        scope: _Scope,
        types: _Types,
    ) -> None:
        k, op = rule["input"], node.op_type
        if k >= len(node.input) or not node.input[k]:
            return
        tensor = node.input[k]
        constant = scope.is_constant(tensor)
        if rule.get("constant") and not constant:
            self._fail(
                rule,
                name,
                op,
                f"{op} input {k} ('{tensor}') must be constant "
                "(an initializer or a Constant node output)",
            )
        if "rank" in rule:
            rank = types.get(tensor, (0, None))[1]
            if rank is not None and rank not in rule["rank"]:
                message = f"{op} input {k} ('{tensor}') has rank {rank}, need {rule['rank']}"
                self._fail(rule, name, op, message)
        if constant and _VALUE_CHECKS & rule.keys():
            values = scope.values(tensor)
            if values is not None:
                shown = f"{op} input {k} ('{tensor}') = {values[:8]!r}"
                self._check_values(rule, name, op, shown, values)

    def _check_values(
        self, rule: dict[str, Any], name: str, op: str, shown: str, elements: list[Any]
    ) -> None:
        if rule.get("severity", ERROR) == ERROR:
            verdict = "is not supported by TensorRT"
        else:
            verdict = "needs care in TensorRT"
        if "allowed" in rule and any(v not in rule["allowed"] for v in elements):
            self._fail(rule, name, op, f"{shown} {verdict} (allowed: {rule['allowed']})")
        if "forbidden" in rule and any(v in rule["forbidden"] for v in elements):
            self._fail(rule, name, op, f"{shown} {verdict}")
        numbers = [v for v in elements if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if "max" in rule and any(v > rule["max"] for v in numbers):
            self._fail(rule, name, op, f"{shown} exceeds the TensorRT limit {rule['max']}")

    def _dtype(self, entry: dict[str, Any], node: onnx.NodeProto, name: str, types: _Types) -> None:
        spec = entry.get("dtype_of", "input:0")
        if spec == "none" or not entry["dtypes"]:
            return
        kind, _, index = spec.partition(":")
        names = node.input if kind == "input" else node.output
        k = int(index)
        if k >= len(names) or names[k] not in types:
            return
        dtype = _dtype_name(types[names[k]][0])
        if dtype in entry["dtypes"] or dtype == "UNDEFINED":
            return
        if dtype == "DOUBLE":
            message = "DOUBLE tensor: TensorRT casts it down to FLOAT (clamped to +-FLT_MAX)"
        else:
            message = (
                f"{kind} {k} dtype {dtype} is not listed for {node.op_type} "
                f"(listed: {entry['dtypes']})"
            )
        self._report(WARNING, name, node.op_type, message)


def _onnx_dtype_name(value: Any) -> Any:
    import onnx

    try:
        return onnx.TensorProto.DataType.Name(int(value))
    except (ValueError, TypeError):
        return value


def _dtype_name(elem_type: int) -> str:
    """TensorProto enum -> the table's spelling (FP32, INT64, ...)."""
    name = _onnx_dtype_name(elem_type)
    return _TRT_DTYPE.get(name, name)


def _schema_default(op_type: str, opset: int, attr_name: str) -> Any:
    """The ONNX default of an attribute for this opset, or _MISSING (no schema, no default)."""
    import onnx

    try:
        schema = onnx.defs.get_schema(op_type, opset, "")
    except Exception:  # noqa: BLE001 - unknown op or opset: nothing to default to
        return _MISSING
    attr = schema.attributes.get(attr_name)
    if attr is None or not attr.default_value.type:
        return _MISSING
    return onnx.helper.get_attribute_value(attr.default_value)
