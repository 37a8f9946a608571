#!/usr/bin/env bash
# Run every benchmark (ours vs peer side by side); creates the peer environments when missing.
#   bash benchmarks/run_all.sh         # env: BENCH_EPISODES (512), BENCH_REPS (3), BENCH_RUN (runs/default)
# bench_stages.py measures a pipeline run's own models: run `instructrl pipeline --out runs/default` first
# (without it that benchmark is skipped, and says so).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
make_venv() {  # $1 = venv folder, $2 = requirements file
  if [ ! -x "$1/bin/python" ]; then
    "$PY" -m venv "$1"
    "$1/bin/pip" install -q -c benchmarks/constraints-peer.txt -r "$2"
  fi
}
make_venv benchmarks/.venv-peer benchmarks/requirements-peer.txt
make_venv benchmarks/.venv-peer-rm benchmarks/requirements-peer-rm.txt
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
# What the figures depend on: the CPU, whether it multiplies bf16 natively (pretraining's
# precision "auto", and the speed of any peer left in bf16), the load before the run.
echo "== machine: $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2 | xargs), $(nproc) cores," \
  "native bf16: $("$PY" -c 'from instructrl.precision import native_bf16; print(native_bf16())' 2>/dev/null || echo unknown)," \
  "load: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)"
"$PY" benchmarks/fixtures.py
for b in ppo switches memory headroom rm generation scaling; do
  echo "== $b"
  nice -n 10 "$PY" benchmarks/bench_$b.py
done
RUN=${BENCH_RUN:-runs/default}
echo "== stages"
if [ -f "$RUN/metrics.json" ]; then
  nice -n 10 "$PY" benchmarks/bench_stages.py "$RUN" --json benchmarks/.cache/stages.json
  echo "== stages (the previous defaults: PPO's four speed switches off)"
  nice -n 10 "$PY" benchmarks/bench_stages.py "$RUN" --set trim_padding=false --set fused_adamw=false \
    --set reuse_sample_logprobs=false --set score_chunk=0 --json benchmarks/.cache/stages_before.json
  echo "== stages (the opt-in inverse-CDF draws)"
  nice -n 10 "$PY" benchmarks/bench_stages.py "$RUN" --sampling inverse_cdf --json benchmarks/.cache/stages_opt.json
else
  echo "skipped: no pipeline run at $RUN (instructrl pipeline --out $RUN, then rerun)"
fi
