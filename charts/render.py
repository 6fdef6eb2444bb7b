#!/usr/bin/env python3
"""Renders a Helm chart offline with Helm's own engine and prints JSON.

Helm is not packaged in Debian 12 and no Go toolchain is available on the
development machines, so this uses helm-python-sdk (PyPI), which embeds
Helm v4's Go library (chart loading, values coalescing, values.schema.json
validation, the template engine with sprig, lint) as a shared library.
hack/install-deps.sh installs it into /opt/crius-tools/helm-venv.

    render.py CHART [VALUES_JSON] [--name N] [--namespace NS]

Output: {"manifests": {template: [parsed YAML documents]}, "notes": str,
"lint": [messages]}. A schema violation or a template error exits with 2
and Helm's message on stderr.
"""

import argparse
import json
import sys

import helm_python
import yaml


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("chart")
    p.add_argument("values", nargs="?", help="JSON object of values overriding values.yaml")
    p.add_argument("--name", default="crius")
    p.add_argument("--namespace", default="kube-system")
    a = p.parse_args()
    values = json.loads(a.values) if a.values else None

    chart = helm_python.Chart.load(a.chart)
    try:
        rendered = chart.render(values, name=a.name, namespace=a.namespace, is_install=True)
    except helm_python.HelmError as e:
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 2
    manifests, notes = {}, ""
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
        if docs:
            manifests[path] = docs
    report = helm_python.lint(a.chart, values, strict=True, namespace=a.namespace)
    lint = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2]
    lint += report.get("errors") or []
    json.dump({"manifests": manifests, "notes": notes, "lint": lint}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
