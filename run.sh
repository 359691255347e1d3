#!/usr/bin/env bash
# reconet's two entry points. Both create (or refresh) the local virtual environment .venv with plain pip.
#   bash run.sh tutorial   executes notebooks 00-08 headless, top to bottom (CPU quick mode without a GPU);
#                          executed copies go to data/executed/, generated files to data/
#   bash run.sh test       library tests, then nbval over every notebook (as an AVX2-only CPU would run them)
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
VENV=.venv
# No per-cell time limit for the tutorial: a slow or busy laptop must not lose a learner's run (the test
# command keeps one, RECONET_TEST_CELL_TIMEOUT, so that a hung notebook fails CI instead of stalling it).
CELL_TIMEOUT=${RECONET_CELL_TIMEOUT:--1}

ensure_venv() {
    if [ ! -x "$VENV/bin/python" ]; then
        echo "== creating $VENV"
        "$PYTHON" -m venv "$VENV"
    fi
    local stamp="$VENV/.reconet-installed"
    local want
    local extras="test,export,openvino"  # openvino: the torch-free backend and its tests (tests/test_openvino_backend.py)
    want=$( { cat pyproject.toml; echo "$extras"; } | sha256sum | cut -d' ' -f1)
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        echo "== installing reconet_lib and its dependencies into $VENV (plain pip)"
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[$extras]"
        echo "$want" > "$stamp"
    fi
}

passive_wait() {
    # OpenMP threads that sleep instead of spinning while they wait: shared cores stay usable (reconet_lib.cpu_threads)
    local line
    line=$("$VENV/bin/python" -c 'from reconet_lib.cpu_threads import PASSIVE_WAIT_ENV as e; print(" ".join(f"{k}={v}" for k, v in e.items()))')
    local pair name
    for pair in $line; do
        name=${pair%%=*}
        [ -n "${!name:-}" ] || export "$pair"   # a policy the user set already is kept
    done
}

run_tutorial() {
    local out=data/executed
    mkdir -p "$out"
    for nb in notebooks/[0-9][0-9]_*.ipynb; do
        echo "== executing $nb"
        local start=$SECONDS
        "$VENV/bin/jupyter" nbconvert --to notebook --execute --log-level=WARN \
            --ExecutePreprocessor.timeout="$CELL_TIMEOUT" \
            '--ExecutePreprocessor.extra_arguments=["--IPKernelApp.log_level=ERROR"]' \
            --output-dir "$out" "$nb"
        echo "   done in $((SECONDS - start)) s"
    done
    echo
    echo "Executed notebooks: $out/"
    echo "Generated data, checkpoints and videos: data/ (synthetic/, checkpoints/, videos/, ...)"
}

run_tests() {
    # Library tests, then every notebook executed and checked by nbval. The stored outputs are quick-mode outputs,
    # so the notebooks are checked in quick mode even on a GPU machine. They run as an AVX2-only CPU would run them
    # (torch, oneDNN and MKL capped at AVX2: no native bfloat16; see reconet_lib.precision.AVX2_ONLY_ENV), so that
    # a notebook that is only fast on a CPU with native bfloat16 fails here, whatever CPU CI has.
    # RECONET_NOTEBOOK_CPU=native checks them at this machine's own speed instead.
    local emulate=()
    if [ "${RECONET_NOTEBOOK_CPU:-avx2}" = avx2 ]; then
        read -r -a emulate < <("$VENV/bin/python" -c \
            'from reconet_lib.precision import AVX2_ONLY_ENV as e; print(" ".join(f"{k}={v}" for k, v in e.items()))')
    fi
    # The tests marked slow (tests/*.py, pytest.mark.slow) run after the others, so that a quick failure shows first.
    echo "== library tests"
    RECONET_QUICK=1 "$VENV/bin/python" -m pytest -q -m "not slow" tests
    echo "== library tests marked slow"
    RECONET_QUICK=1 "$VENV/bin/python" -m pytest -q -m slow tests
    echo "== notebooks (nbval, quick mode${emulate:+, as an AVX2-only CPU: ${emulate[*]}})"
    env "${emulate[@]}" RECONET_QUICK=1 "$VENV/bin/python" -m pytest -q -p no:cacheprovider --nbval-lax \
        --nbval-current-env --nbval-cell-timeout="${RECONET_TEST_CELL_TIMEOUT:-180}" notebooks
}

case "${1:-}" in
    tutorial) ensure_venv; passive_wait; run_tutorial ;;
    test) ensure_venv; passive_wait; run_tests ;;
    *) echo "usage: bash run.sh tutorial | test" >&2; exit 64 ;;
esac
