# Sourced by scripts/example and scripts/test: make .venv (Python >= 3.11) and install dqflow into it.
# Usage: install_project [EXTRAS]   e.g. install_project dev
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DQFLOW_VENV:-$ROOT/.venv}"

find_python() {
    for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    echo "error: dqflow needs Python 3.11 or newer (set PYTHON=/path/to/python3.11)" >&2
    return 1
}

install_project() {
    local extras="${1:-}"
    if [ ! -x "$VENV/bin/python" ]; then
        local python
        python="$(find_python)"
        echo "==> creating $VENV with $("$python" --version)"
        "$python" -m venv "$VENV"
    fi
    local target="$ROOT"
    [ -n "$extras" ] && target="$ROOT[$extras]"
    echo "==> installing dqflow${extras:+ [$extras]} into $VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
    local log
    log="$(mktemp)"
    if ! "$VENV/bin/python" -m pip install --quiet -e "$target" >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        echo "error: pip could not install dqflow into $VENV (output above)" >&2
        return 1
    fi
    rm -f "$log"
}
