#!/usr/bin/env bash
# The studies on a lent accelerator, as one prepared call (~8 min of device time):
#   OUT=DIR bash experiments/gpu_study.sh          (from the repository root)
# 1. The study decoder's training throughput with S seeds as one vmapped program
#    (`fcnjax.train.seeds.throughput` on the operator study's config; S = 0 is one run
#    with its own driver): $OUT/vmap_throughput.jsonl, one JSON line per S.
# 2. Arms of the skip-free operator study, all 10 seeds of an arm as one program
#    (`--vmap_seeds=true`), in $OUT/operators (tables, figures, per-run records), until
#    STUDY_S seconds have passed (the runs done by then are kept; a rerun resumes).
# Settings (environment): SEEDS_S ("0 1 4 16 32"), ARMS (nearest,bilinear,carafe,dysample-s+),
# STUDY_S (360), PYTHON (python), EXTRA (more fcnjax-study flags, e.g. --config.num_train_steps=30 for a dry run).
set -uo pipefail
out=${OUT:-/tmp/gpu_study}
mkdir -p "$out"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
{ nvidia-smi || true; "${PYTHON:-python}" -c "import jax; print(jax.__version__, jax.devices())"; } \
  > "$out/machine.txt" 2>&1
"${PYTHON:-python}" - "${SEEDS_S:-0 1 4 16 32}" > "$out/vmap_throughput.jsonl" 2> "$out/vmap_throughput.log" <<'PY'
import json, sys
from fcnjax.runtime import cli
cli.configure_xla()
from fcnjax.studies import operators
from fcnjax.train import seeds
for s in sys.argv[1].split():
  print(json.dumps(seeds.throughput(operators.get_config(), int(s))), flush=True)
PY
echo "throughput: rc $?"
timeout "${STUDY_S:-360}" "${PYTHON:-python}" -m fcnjax.commands.study operators \
  --arms="${ARMS:-nearest,bilinear,carafe,dysample-s+}" --seeds=0,1,2,3,4,5,6,7,8,9 \
  --vmap_seeds=true --workdir="$out/operators" ${EXTRA:-} > "$out/operators.log" 2>&1
echo "study: rc $? (124: stopped at STUDY_S; the runs finished by then are in $out/operators)"
find "$out/operators" -name checkpoints -prune -o -type f -print | head -50
