#!/usr/bin/env bash
# By-hand check (not CI: ~4 GB unpacked) that the addon compiles, links and loads
# against a CUDA libtorch: unpacks the image's CUDA torch wheel and the NVIDIA wheels
# it needs into a pip-like folder (so torch's $ORIGIN rpaths resolve), builds a copy
# of this package against it, and requires the addon.
#   WHEEL_DIRS  folders holding the .whl files (default: the image's local indexes)
#   DEST        where to unpack (default /tmp/accelerate-cuda-libtorch)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
WHEEL_DIRS=${WHEEL_DIRS:-"/opt/pypi-more/files /opt/pypi/files /opt/wheels"}
DEST=${DEST:-/tmp/accelerate-cuda-libtorch}
site=$DEST/site-packages
mkdir -p "$site"

find_wheel() { for d in $WHEEL_DIRS; do ls "$d"/$1 2>/dev/null || true; done | sort -V | tail -1; }

torch_whl=$(for d in $WHEEL_DIRS; do ls "$d"/torch-2*.whl 2>/dev/null || true; done | grep -v '+cpu' | sort -V | tail -1)
[ -n "$torch_whl" ] || { echo "no CUDA torch wheel in $WHEEL_DIRS" >&2; exit 1; }
echo "torch wheel: $torch_whl"
t0=$(date +%s)
unzip -q -o "$torch_whl" 'torch/include/*' 'torch/lib/*' 'torch-*.dist-info/METADATA' -d "$site"
# every nvidia-* requirement of the torch wheel
for req in $(grep '^Requires-Dist: nvidia-' "$site"/torch-*.dist-info/METADATA | sed -E 's/^Requires-Dist: ([A-Za-z0-9_.-]+).*/\1/' | tr '-' '_' | sort -u); do
  w=$(find_wheel "${req}-*.whl")
  if [ -n "$w" ]; then unzip -q -o "$w" -d "$site"; else echo "missing wheel for $req (continuing)"; fi
done
# cuda-toolkit[...]'s parts (a meta requirement above) and the crt headers
for extra in nvidia_cublas nvidia_cuda_runtime nvidia_cufft nvidia_cufile nvidia_cuda_cupti nvidia_curand \
             nvidia_cusolver nvidia_cusparse nvidia_nvjitlink nvidia_cuda_nvrtc nvidia_nvtx nvidia_cuda_crt; do
  w=$(find_wheel "${extra}-*.whl")
  if [ -n "$w" ]; then unzip -q -o "$w" -d "$site"; else echo "missing wheel $extra (continuing)"; fi
done
echo "unpacked in $(( $(date +%s) - t0 )) s: $(du -sh "$site" | cut -f1)"

inc=$(find "$site/nvidia" -type d -name include | tr '\n' ':')
work=$DEST/build-copy
rm -rf "$work" && mkdir -p "$work"
cp -r "$here/binding.gyp" "$here/native" "$here/scripts" "$here/package.json" "$work/"
ln -sfn "$(cd "$here/../.." && pwd)/node_modules" "$work/node_modules"
t1=$(date +%s)
(cd "$work" && LIBTORCH="$site/torch" ACCELERATE_CUDA_INCLUDE="$inc" node scripts/build-native.mjs --clean)
echo "built in $(( $(date +%s) - t1 )) s"
node -e "
const n = require('$work/build/Release/torch_native.node');
console.log('loaded: libtorch', n.torchVersion, 'cuda available:', n.cudaAvailable());
try { n.op(n.opLookup('aten::ones', '').id, [2], null, null, 'cuda:0', null); console.log('unexpected: a CUDA tensor was created'); }
catch (e) { console.log('CUDA tensor without a GPU ->', e.message.split('\n')[0]); }
const t = n.op(n.opLookup('aten::ones', '').id, [2]); console.log('CPU op ok:', Array.from(new Float32Array(n.toBuffer(t))));
"
nm -D "$work/build/Release/torch_native.node" | grep -E ' T ' 
