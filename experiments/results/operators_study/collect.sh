#!/usr/bin/env bash
# Copies each finished run's records from ROOT (default /root/study) into runs/ beside this
# file: config.json, history.json (the selection curve), scores.json, run.json (key,
# provenance, wall) and the event files; checkpoints left out.   collect.sh [ROOT]
set -euo pipefail
root=${1:-/root/study}
here=$(cd "$(dirname "$0")" && pwd)/runs
for scores in "$root"/operators*/*/scores.json; do
  [[ -e $scores ]] || continue
  run=$(dirname "$scores")
  dest=$here/$(basename "$(dirname "$run")")/$(basename "$run")
  mkdir -p "$dest"
  cp "$run"/{config,history,scores,run}.json "$run"/events.out.tfevents.* "$dest"/
done
ls "$here"/*/ | grep -c seed= || true
