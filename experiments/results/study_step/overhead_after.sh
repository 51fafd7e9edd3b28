#!/bin/bash
# HEAD's two layouts (before: overhead_before.sh); fresh compilation caches.
set -x
out=/work/main/runs/overhead
py=/work/main/.venv/bin/python
rm -rf /tmp/ovh/in_process /tmp/ovh/side_by_side /tmp/ovh/cache_*
date -u +%FT%TZ
cd /work/main && FCNJAX_COMPILATION_CACHE=/tmp/ovh/cache_in_process /usr/bin/time -f "WALL in_process %e s" \
  $py -m fcnjax.commands.study upsampling \
  --workdir=/tmp/ovh/in_process --arms=nearest,bilinear --seeds=0,1 --layout=in_process > $out/in_process.log 2>&1
tail -n 1 $out/in_process.log
date -u +%FT%TZ
cd /work/main && FCNJAX_COMPILATION_CACHE=/tmp/ovh/cache_side_by_side /usr/bin/time -f "WALL side_by_side %e s" \
  $py -m fcnjax.commands.study upsampling \
  --workdir=/tmp/ovh/side_by_side --arms=nearest,bilinear --seeds=0,1 --layout=side_by_side > $out/side_by_side.log 2>&1
tail -n 1 $out/side_by_side.log
date -u +%FT%TZ
