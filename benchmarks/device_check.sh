#!/usr/bin/env bash
# A GPU (or any accelerator) check of metaplastic, ready to run on a machine WITHOUT network.
#
#   WHEELS=/path/to/wheels bash benchmarks/device_check.sh [OUTDIR]      (from the repo root)
#
# Assumes a Python (python3, or $PYTHON) that already has JAX for the accelerator, optax,
# flax, numpy, matplotlib, rich and scikit-learn. Whatever of evosax, gymnax, mnist1d,
# mlxtend and tomli-w it lacks is installed from $WHEELS (default .whl; pip --no-index,
# into a scratch folder, nothing else touched). Make that folder on a machine with network:
#   pip download --no-deps -d wheels evosax gymnax mnist1d mlxtend tomli-w dotmap \
#       gymnasium farama-notifications
# The library runs from the source tree (PYTHONPATH=src). Stages, each with its own time
# limit so the whole check ends within about 6 minutes:
#   1. oja end to end (meta-training 300 steps, held-out evaluation, plots);
#   2. bench_hml_cartpole.py (Najarro & Risi's Hebbian CartPole generation; 3 repeats);
#   3. bench_mlpp.py (Shervani-Tabar & Rosenbaum's meta-episode; 3 repeats, the library's
#      forward- and reverse-mode programs and the plain forward-mode one);
#   4. bench_scale.py --parts seeds (2 seeds of 50 oja meta-steps in one program, in turn
#      and side by side, against 2 separate runs).
# On the 2-core CPU of the development machine the four stages took 24, 37, 26 and ~65 s
# (limits 120, 70, 60, 110: at most 6 minutes).
# Writes OUTDIR/device_check.json (devices, versions, each stage's exit status and
# seconds) beside each stage's own JSON and log. OUTDIR defaults to $OUT or device-check.
#
# Memory: JAX takes 75% of a GPU's memory at its first use unless told otherwise; the
# metaplastic command line sets XLA_PYTHON_CLIENT_PREALLOCATE=false itself, and this script
# exports it for the benchmarks too, so several processes can share one GPU.
set -uo pipefail

OUTDIR=${1:-${OUT:-device-check}}
WHEELS=${WHEELS:-.whl}
PY=${PYTHON:-python3}
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
export XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
export METAPLASTIC_CACHE_DIR="$OUTDIR/jax-cache"

missing=$("$PY" - <<'EOF'
import importlib.util
mods = {"evosax": "evosax", "gymnax": "gymnax", "mnist1d": "mnist1d",
        "mlxtend": "mlxtend", "tomli_w": "tomli-w"}
print(" ".join(p for m, p in mods.items() if importlib.util.find_spec(m) is None))
EOF
)
SITE=""
if [ -n "$missing" ]; then
    SITE=$(mktemp -d)
    echo "installing from $WHEELS (no network): $missing"
    if ! ls "$WHEELS"/*.whl >/dev/null 2>&1; then
        echo "error: $missing missing and no wheels in $WHEELS (set WHEELS=...)" >&2
        exit 2
    fi
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --target "$SITE" "$WHEELS"/*.whl || { echo "error: pip install failed" >&2; exit 2; }
fi
export PYTHONPATH="${SITE:+$SITE:}$PWD/src${PYTHONPATH:+:$PYTHONPATH}"

STAGES=()
FAILED=0
stage() {  # stage NAME LIMIT_S COMMAND...
    local name=$1 limit=$2; shift 2
    local start=$(date +%s%N)
    echo "== $name (limit ${limit}s): $*"
    timeout "$limit" "$@" >"$OUTDIR/$name.log" 2>&1
    local rc=$?
    local ms=$(( ($(date +%s%N) - start) / 1000000 ))
    tail -n 3 "$OUTDIR/$name.log"
    [ "$rc" -ne 0 ] && FAILED=$((FAILED + 1))
    STAGES+=("{\"stage\": \"$name\", \"exit\": $rc, \"seconds\": $((ms / 1000)).$(printf %03d $((ms % 1000)))}")
}

stage oja 120 "$PY" -m metaplastic.cli run oja --set meta.steps=300 --out "$OUTDIR/runs"
stage hml_cartpole 70 "$PY" benchmarks/bench_hml_cartpole.py --repeats 3 \
    --out "$OUTDIR/hml_cartpole.json"
stage mlpp 60 "$PY" benchmarks/bench_mlpp.py --repeats 3 \
    --programs library_forward plain_forward library_reverse --out "$OUTDIR/mlpp.json"
stage seeds 110 "$PY" benchmarks/bench_scale.py --parts seeds --steps 50 --seeds 2 \
    --out "$OUTDIR/scale.json"

joined=$(IFS=,; echo "${STAGES[*]}")
"$PY" - "$OUTDIR" "[$joined]" <<'EOF'
import json, sys
import jax
out, stages = sys.argv[1], json.loads(sys.argv[2])
info = {"backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
        "device_kind": jax.devices()[0].device_kind, "jax": jax.__version__,
        "stages": stages}
for name in ("hml_cartpole", "mlpp", "scale"):
    try:
        info[name] = json.load(open(f"{out}/{name}.json"))
    except (OSError, ValueError):
        pass
json.dump(info, open(f"{out}/device_check.json", "w"), indent=2)
print(json.dumps({"backend": info["backend"], "stages": stages}, indent=2))
EOF
[ -n "$SITE" ] && rm -rf "$SITE"
[ "$FAILED" -eq 0 ] || { echo "$FAILED stage(s) failed or ran out of time: see $OUTDIR/*.log"; exit 1; }
