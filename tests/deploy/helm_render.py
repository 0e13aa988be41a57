"""Render the ffleet Helm chart without `helm`, for the subset of Go templates the chart uses.

`helm` cannot be installed here, so the chart keeps to: `{{ .Values.a.b }}`, `{{ .Release.Name }}`,
`{{ .Chart.Name }}`, `| quote`, `{{- if X }}`, `{{- range $k, $v := X }}` (sorted keys, as Go
does) and `{{- end }}`, with Go's whitespace trimming. Anything else is an error, so a template
that strays outside the subset fails the tests instead of rendering wrongly.

Regenerate the rendered copy after changing the chart:

    python -m tests.deploy.helm_render > deploy/kubernetes/ffleet.yaml
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "ffleet"
RELEASE_NAME = "ffleet"
HEADER = (
    "# The ffleet chart (deploy/helm/ffleet) rendered with its default values, release name\n"
    '# "ffleet". Generated: python -m tests.deploy.helm_render > deploy/kubernetes/ffleet.yaml\n'
    "# tests/deploy/test_helm.py fails when this file and the chart drift apart.\n"
)

_ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.DOTALL)
_RANGE = re.compile(r"(\$\w+)\s*,\s*(\$\w+)\s*:=\s*(\S+)")


class TemplateError(ValueError):
    """A template outside the supported subset, or a value it names that does not exist."""


@dataclass
class _Block:
    kind: str  # "root", "if", "range", "output" (or "action" while parsing)
    argument: str = ""
    body: list[str | _Block] = field(default_factory=list)


def _parse(source: str) -> _Block:
    pieces: list[str | _Block] = []  # text, and actions as childless blocks
    position = 0
    trim_next = False
    for match in _ACTION.finditer(source):
        text = source[position : match.start()]
        if trim_next:
            text = text.lstrip()
        if match.group(1):  # `{{-` trims the white space before it, `-}}` the one after
            text = text.rstrip()
        pieces += [text, _Block("action", match.group(2).strip())]
        trim_next = bool(match.group(3))
        position = match.end()
    tail = source[position:]
    pieces.append(tail.lstrip() if trim_next else tail)

    stack = [_Block("root")]
    for piece in pieces:
        if isinstance(piece, str):
            stack[-1].body.append(piece)
            continue
        keyword, _, argument = piece.argument.partition(" ")
        if keyword in ("if", "range"):
            block = _Block(keyword, argument.strip())
            stack[-1].body.append(block)
            stack.append(block)
        elif keyword == "end":
            if len(stack) == 1:
                raise TemplateError("{{ end }} without a block")
            stack.pop()
        else:
            stack[-1].body.append(_Block("output", piece.argument))
    if len(stack) != 1:
        raise TemplateError(f"unclosed {{{{ {stack[-1].kind} }}}}")
    return stack[0]


def _lookup(term: str, dot: Any, variables: dict[str, Any]) -> Any:
    if term.startswith("$"):
        name, _, rest = term.partition(".")
        if name not in variables:
            raise TemplateError(f"undefined variable {name}")
        value = variables[name]
        path = rest.split(".") if rest else []
    elif term.startswith("."):
        value = dot
        path = term[1:].split(".") if term != "." else []
    elif term.startswith('"'):
        return json.loads(term)
    else:
        raise TemplateError(f"unsupported term {term!r}")
    for key in path:
        if not isinstance(value, dict) or key not in value:
            raise TemplateError(f"{term}: no {key!r}")
        value = value[key]
    return value


def _evaluate(pipeline: str, dot: Any, variables: dict[str, Any]) -> Any:
    term, *functions = (part.strip() for part in pipeline.split("|"))
    value = _lookup(term, dot, variables)
    for function in functions:
        if function != "quote":
            raise TemplateError(f"unsupported function {function!r}")
        value = json.dumps(_text(value))
    return value


def _text(value: Any) -> str:
    """What Go's text/template prints for a scalar."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    raise TemplateError(f"cannot print {type(value).__name__} {value!r}")


def _truthy(value: Any) -> bool:
    return value not in (None, False, 0, "", [], {})


def _execute(block: _Block, dot: Any, variables: dict[str, Any], out: list[str]) -> None:
    for item in block.body:
        if isinstance(item, str):
            out.append(item)
        elif item.kind == "output":
            out.append(_text(_evaluate(item.argument, dot, variables)))
        elif item.kind == "if":
            if _truthy(_evaluate(item.argument, dot, variables)):
                _execute(item, dot, variables, out)
        else:  # range
            match = _RANGE.fullmatch(item.argument)
            if match is None:
                raise TemplateError(f"unsupported range {item.argument!r}")
            key_name, value_name, source = match.groups()
            mapping = _evaluate(source, dot, variables)
            if not isinstance(mapping, dict):
                raise TemplateError(f"range over a non-map {source}")
            for key in sorted(mapping):
                scope = {**variables, key_name: key, value_name: mapping[key]}
                _execute(item, mapping[key], scope, out)


def render_template(source: str, values: dict[str, Any], release_name: str = RELEASE_NAME) -> str:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    top = {
        "Values": values,
        "Release": {"Name": release_name},
        "Chart": {"Name": chart["name"], "Version": chart["version"]},
    }
    out: list[str] = []
    _execute(_parse(source), top, {"$": top}, out)
    return "".join(out)


def render_chart(values: dict[str, Any] | None = None) -> str:
    """Every template, as `helm template` prints them: `---` and a `# Source:` line each."""
    if values is None:
        values = yaml.safe_load((CHART / "values.yaml").read_text())
    parts = []
    for template in sorted((CHART / "templates").glob("*.yaml")):
        rendered = render_template(template.read_text(), values).strip("\n")
        if rendered.strip():
            parts.append(f"---\n# Source: ffleet/templates/{template.name}\n{rendered}\n")
    return "".join(parts)


def main() -> None:
    sys.stdout.write(HEADER + render_chart())


if __name__ == "__main__":
    main()
