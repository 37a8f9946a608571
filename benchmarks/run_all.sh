#!/usr/bin/env bash
# Run every benchmark (ours vs peer side by side); creates the peer environments when missing.
#   bash benchmarks/run_all.sh         # env: BENCH_EPISODES (512), BENCH_REPS (3)
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
"$PY" benchmarks/fixtures.py
for b in ppo memory headroom rm generation scaling; do
  echo "== $b"
  nice -n 10 "$PY" benchmarks/bench_$b.py
done
