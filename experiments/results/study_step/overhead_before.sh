#!/bin/bash
# Per-run wall of the upsampling study at its recorded budget (1500 steps),
# arms nearest,bilinear x seeds 0,1: the code before the study-runner issue
# (a45cd75; a worktree of it at /tmp/before26) (HEAD: overhead_after.sh). Machine otherwise quiet.
set -x
out=/work/main/runs/overhead
py=/work/main/.venv/bin/python
rm -rf /tmp/ovh; mkdir -p /tmp/ovh
date -u +%FT%TZ
cd /tmp/before26 && PYTHONPATH=/tmp/before26 /usr/bin/time -f "WALL before %e s" $py experiments/upsampling_study.py \
  --workdir=/tmp/ovh/before --arms=nearest,bilinear --seeds=0,1 > $out/before.log 2>&1
tail -n 1 $out/before.log
date -u +%FT%TZ
