# Sourced by scripts/serve, scripts/test and scripts/bench: make the virtualenv
# $VENV with $PYTHON and install amp-dispatch (editable) with the extras in
# $EXTRAS, again only when the project files changed.  CPython's .venv gets one
# set, every extra (dev), whichever script makes it, so switching scripts never
# reinstalls; the PyPy venv gets the test extra.
set -euo pipefail
: "${PYTHON:=python3}" "${VENV:=.venv}" "${EXTRAS:=dev}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.amp-dispatch-installed"
want="$(cat pyproject.toml commands/pyproject.toml | cksum) $EXTRAS"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "${0##*/}: installing amp-dispatch[$EXTRAS] into $VENV (first run, or the project files changed)" >&2
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
    -e ./commands -e ".[$EXTRAS]"
  echo "$want" > "$stamp"
fi
