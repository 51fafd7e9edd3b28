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
# A seed is trained on one machine: a claim records the machine (kernel build, CPU
# family/model/stepping, a hash of the CPU flags); a seed resumed on another machine has its
# runs moved aside (RUN.other-machine-TIME/) and is trained again from the start.
set -euo pipefail
core=$1
root=${2:-/root/study}
export PYTHONUNBUFFERED=1
machine="$(uname -r) $(grep -m3 -E '^(cpu family|model|stepping)\s*:' /proc/cpuinfo | cut -d: -f2 | tr -d ' ' | paste -sd/) $(grep -m1 '^flags' /proc/cpuinfo | md5sum | cut -c1-8)"
mkdir -p "$root/claims"
for seed in 0 1 2 3 4 5 6 7 8 9; do
  claim=$root/claims/$seed
  if mkdir "$claim" 2>/dev/null; then
    echo "$core" > "$claim/core"
    echo "$machine" > "$claim/machine"
  elif [[ -e $claim/done || $(cat "$claim/core" 2>/dev/null) != "$core" ]]; then
    continue
  elif [[ $(cat "$claim/machine" 2>/dev/null) != "$machine" ]]; then
    echo "== seed $seed was started on '$(cat "$claim/machine" 2>/dev/null)', this is '$machine': retraining it"
    for run in "$root"/operators*/*",seed=$seed"; do
      if [[ -d $run ]]; then mv "$run" "$run.other-machine-$(date -u +%Y%m%dT%H%M%S)"; fi
    done
    echo "$machine" > "$claim/machine"
  fi
  for study in operators operators_guided; do
    echo "== $(date -u +%FT%TZ) core $core seed $seed $study"
    taskset -c "$core" "$root/venv/bin/fcnjax-study" "$study" --seeds="$seed" \
      --workdir="$root/$study"
  done
  touch "$claim/done"
done
echo "== $(date -u +%FT%TZ) core $core: no seed left"
