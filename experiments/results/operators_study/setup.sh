#!/usr/bin/env bash
# Makes ROOT (default /root/study) ready for launch.sh where anything is missing: the pinned
# clone of 982684f, its venv (constraints.txt: the library versions the runs recorded), the
# finished runs' records from runs/ beside this file (collect.sh's copies, without
# checkpoints: the runner reads a finished run's scores back; a figure needing a run's
# weights uses a seed whose checkpoints are there) and the seeds' claims from claims/ (a
# seed claimed on another machine and not done is retrained whole).   setup.sh [ROOT]
set -euo pipefail
root=${1:-/root/study}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(git -C "$here" rev-parse --show-toplevel)
mkdir -p "$root"
if [[ ! -d $root/pin ]]; then
  git clone -q "$repo" "$root/pin"
  git -C "$root/pin" checkout -q 982684f
fi
if [[ ! -x $root/venv/bin/fcnjax-study ]]; then
  python3 -m venv "$root/venv"
  "$root/venv/bin/pip" install -q -c "$here/constraints.txt" -e "$root/pin"
fi
for run in "$here"/runs/*/*/; do
  dest=$root/$(basename "$(dirname "$run")")/$(basename "$run")
  if [[ ! -e $dest/scores.json ]]; then
    mkdir -p "$dest"
    cp "$run"* "$dest"/
  fi
done
for claim in "$here"/claims/*/; do  # collect.sh's copies: which machine each seed ran on
  [[ -d $claim ]] || continue
  if [[ ! -e $root/claims/$(basename "$claim") ]]; then
    mkdir -p "$root/claims"
    cp -r "${claim%/}" "$root/claims/"
  fi
done
# a new file, not an overwrite: bash reads a running script as it goes
cp "$here/launch.sh" "$root/launch.sh.new" && mv -f "$root/launch.sh.new" "$root/launch.sh"
echo "$root ready: $(ls -d "$root"/operators*/*/ 2>/dev/null | wc -l) run folders; start one launcher per core:"
echo "  for c in 0 1; do setsid bash -c \"echo \\\$\\\$ > $root/launcher\$c.pgid; exec $root/launch.sh \$c >> $root/core\$c.log 2>&1\" < /dev/null & sleep 60; done"
echo "pause (each run checkpoints):  kill -TERM -- -\$(cat $root/launcher0.pgid)  (and launcher1)"
