#!/usr/bin/env bash
# The operator study's launcher, one per core:   launch.sh CORE [ROOT]
#
# ROOT (default /root/study, outside the work tree) holds the pinned clone ROOT/pin
# (git clone; git checkout 982684f), its venv ROOT/venv (pip install -e ROOT/pin with the
# dev venv's versions as constraints) and the runs. Each launcher claims the next unclaimed
# seed (ROOT/claims/SEED, an atomic mkdir) and trains every arm of both contexts for it on its
# core alone (taskset), so no paired difference straddles two machines or core counts. A seed
# this core claimed and did not finish is resumed first; the runs resume from their
# checkpoints. Pause: kill -TERM -- -$(cat ROOT/launcher$CORE.pgid) (each run checkpoints).
set -euo pipefail
core=$1
root=${2:-/root/study}
export PYTHONUNBUFFERED=1
mkdir -p "$root/claims"
for seed in 0 1 2 3 4 5 6 7 8 9; do
  claim=$root/claims/$seed
  if mkdir "$claim" 2>/dev/null; then
    echo "$core" > "$claim/core"
  elif [[ -e $claim/done || $(cat "$claim/core" 2>/dev/null) != "$core" ]]; then
    continue
  fi
  for study in operators operators_guided; do
    echo "== $(date -u +%FT%TZ) core $core seed $seed $study"
    taskset -c "$core" "$root/venv/bin/fcnjax-study" "$study" --seeds="$seed" \
      --workdir="$root/$study"
  done
  touch "$claim/done"
done
echo "== $(date -u +%FT%TZ) core $core: no seed left"
