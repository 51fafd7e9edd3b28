#!/usr/bin/env bash
# Copies each finished run's records from ROOT (default /root/study) into runs/ beside this
# file: config.json, history.json (the selection curve), scores.json, run.json (key,
# provenance, wall) and the event files; checkpoints left out; and the seeds' claims into
# claims/.   collect.sh [ROOT]
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
# the seeds' claims (core, machine, done): a machine laid anew gets them back from setup.sh,
# so a seed left unfinished is retrained whole where its machine changed
if [[ -d $root/claims ]]; then
  mkdir -p "$here/../claims"
  cp -r "$root"/claims/. "$here/../claims/"
fi
ls "$here"/*/ | grep -c seed= || true
