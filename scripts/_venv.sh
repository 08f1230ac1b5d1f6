# Sourced by scripts/serve and scripts/test: make the virtualenv $VENV with
# $PYTHON and install amp-dispatch (editable) with the extras in $EXTRAS,
# again only when the project files changed.
set -euo pipefail
: "${PYTHON:=python3}" "${VENV:=.venv}" "${EXTRAS:=}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.amp-dispatch-installed"
want="$(cat pyproject.toml commands/pyproject.toml | cksum) $EXTRAS"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
    -e ./commands -e ".${EXTRAS:+[$EXTRAS]}"
  echo "$want" > "$stamp"
fi
