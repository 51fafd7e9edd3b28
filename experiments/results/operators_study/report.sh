#!/usr/bin/env bash
# The operator study's tables and figures, from the runs as trained, into this folder:
#   report.sh [ROOT]      (ROOT default /root/study; run from the main checkout's venv)
# For each context: `fcnjax-study NAME --report` over seeds 0-9 in ROOT/NAME (the tables
# name the commit the runs were trained at and the one that wrote them; predictions.png and
# learned.png from the first seed with every arm's weights), then results.{json,md} and the
# figures copied to NAME/ beside this file.
set -euo pipefail
root=${1:-/root/study}
here=$(cd "$(dirname "$0")" && pwd)
study=${FCNJAX_STUDY:-fcnjax-study}
for name in operators operators_guided; do
  "$study" "$name" --report --seeds=0,1,2,3,4,5,6,7,8,9 --workdir="$root/$name"
  mkdir -p "$here/$name"
  cp "$root/$name"/results.json "$root/$name"/results.md "$root/$name"/*.png "$here/$name/"
done
