#!/usr/bin/env bash
# Check the import-linter contracts in pyproject.toml ([tool.importlinter]).
#
# kuberec maps top-level folders under one namespace (pyproject's package-dir: operator/ is
# kuberec.operator), which grimp, import-linter's graph builder, cannot see: it walks the folder of
# the root package only. So the layout is staged as one ordinary package of symlinks (grimp follows
# them) in a temporary directory, and only that directory is on the path. lint-imports also puts
# its working directory on the path, so it runs in the staging directory, never in the repository
# root: there the top-level operator/ folder would shadow the standard library's operator module
# and kuberec/ would be found without its subpackages.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir "$stage/kuberec"
for entry in "$root"/kuberec/*; do
  [[ "$entry" == *.py || -f "$entry/__init__.py" ]] && ln -s "$entry" "$stage/kuberec/"
done
for folder in components operator pipelines serving feature_repo; do
  ln -s "$root/$folder" "$stage/kuberec/$folder"
done
cd "$stage"
PYTHONPATH="$stage" "${LINT_IMPORTS:-$root/.venv/bin/lint-imports}" --no-cache \
  "$root/pyproject.toml" "$@"
