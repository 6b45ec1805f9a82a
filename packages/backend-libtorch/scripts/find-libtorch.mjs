#!/usr/bin/env node
// Locate a libtorch to compile against, in this order:
//   1. LIBTORCH or TORCH_INSTALL_PREFIX (pytorch.org zip layout: include/, lib/)
//   2. a Python torch install (`python3 -c "import torch"`); Debian's python3-torch
//      only symlinks to the system files, so that case resolves to (3)'s layout
//   3. Debian/Ubuntu's libtorch-dev (/usr/include/torch, /usr/lib/<triplet>/libtorch*.so)
// Used by build-native.mjs and by binding.gyp (`<!@(node scripts/find-libtorch.mjs cflags)`).
// The result is cached in the ACCELERATE_LIBTORCH_CONFIG environment variable so the
// several gyp expansions of one build do not each start Python.
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const HOW_TO =
  'backend-libtorch needs libtorch to compile its native addon. Provide one of:\n' +
  '  1. LIBTORCH=/path/to/libtorch (the unzipped pytorch.org C++ download, cxx11 ABI; TORCH_INSTALL_PREFIX also works)\n' +
  '  2. a Python torch: `pip install torch` so that `python3 -c "import torch"` works (or set PYTHON=/path/to/python)\n' +
  '  3. Debian/Ubuntu packages: `apt-get install -y libtorch-dev libgloo-dev libopenblas0`\n' +
  'then reinstall (`npm rebuild @accelerate/backend-libtorch`).';

function readVersion(includeDir) {
  const candidates = [
    join(includeDir, 'torch/csrc/api/include/torch/version.h'),
    join(includeDir, 'torch/headeronly/version.h'), // 2.8+: version.h only forwards here
  ];
  for (const f of candidates) {
    if (!existsSync(f)) continue;
    const text = readFileSync(f, 'utf8');
    const num = (name) => Number(new RegExp(`#define ${name} (\\d+)`).exec(text)?.[1] ?? NaN);
    const major = num('TORCH_VERSION_MAJOR');
    if (Number.isFinite(major)) return { major, minor: num('TORCH_VERSION_MINOR'), patch: num('TORCH_VERSION_PATCH') };
  }
  return null;
}

function fromPrefix(prefix, source) {
  const includeDir = join(prefix, 'include');
  const libDir = join(prefix, 'lib');
  if (!existsSync(join(includeDir, 'torch')) || !existsSync(libDir)) return null;
  let inc = includeDir;
  let lib = libDir;
  // Debian's python3-torch: include/ and lib/ hold symlinks into /usr. Prefer the real system
  // layout so the compiler sees one set of headers and no rpath into dist-packages is baked in.
  try {
    const realTorchInc = realpathSync(join(includeDir, 'torch'));
    if (realTorchInc !== join(includeDir, 'torch')) inc = dirname(realTorchInc);
    const cpu = join(libDir, 'libtorch_cpu.so');
    if (existsSync(cpu)) {
      const realCpu = realpathSync(cpu);
      if (dirname(realCpu) !== libDir) lib = dirname(realCpu);
    }
  } catch {
    /* keep the plain layout */
  }
  return describe(inc, lib, source);
}

function debianLayout() {
  if (process.env.ACCELERATE_LIBTORCH_NO_SYSTEM === '1') return null; // tests of the "none found" path
  const inc = '/usr/include';
  if (!existsSync(join(inc, 'torch/csrc/api/include/torch/torch.h'))) return null;
  for (const lib of ['/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib64', '/usr/lib']) {
    if (existsSync(join(lib, 'libtorch_cpu.so'))) return describe(inc, lib, 'system (libtorch-dev)');
  }
  return null;
}

function describe(includeDir, libDir, source) {
  const version = readVersion(includeDir);
  if (!version) return null;
  const system = includeDir === '/usr/include';
  const cuda = existsSync(join(libDir, 'libtorch_cuda.so'));
  return {
    source,
    includeDir,
    libDir,
    system,
    version: `${version.major}.${version.minor}.${version.patch}`,
    major: version.major,
    cuda,
  };
}

function pythonTorch() {
  const pythons = process.env.PYTHON ? [process.env.PYTHON] : ['python3', 'python'];
  if (process.env.PYTHON === '') return null;
  for (const py of pythons) {
    const r = spawnSync(py, ['-c', 'import torch,os;print(os.path.dirname(torch.__file__))'], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    if (r.status === 0 && r.stdout.trim()) {
      const found = fromPrefix(r.stdout.trim(), `python torch (${py})`);
      if (found) return found;
    }
  }
  return null;
}

/** Find libtorch; returns a description or null. */
export function findLibtorch() {
  if (process.env.ACCELERATE_LIBTORCH_CONFIG) return JSON.parse(process.env.ACCELERATE_LIBTORCH_CONFIG);
  const prefix = process.env.LIBTORCH || process.env.TORCH_INSTALL_PREFIX;
  if (prefix) {
    const found = fromPrefix(prefix, process.env.LIBTORCH ? 'LIBTORCH' : 'TORCH_INSTALL_PREFIX');
    if (!found) {
      throw new Error(
        `${process.env.LIBTORCH ? 'LIBTORCH' : 'TORCH_INSTALL_PREFIX'}=${prefix} has no include/torch and lib/ folders (expected the pytorch.org libtorch zip layout).\n${HOW_TO}`,
      );
    }
    return found;
  }
  return pythonTorch() ?? debianLayout();
}

/** Compiler and linker flags for `cfg` (what binding.gyp expands). */
export function flags(cfg) {
  const std = cfg.major >= 2 ? 'c++20' : 'c++17';
  const includes = [cfg.includeDir, join(cfg.includeDir, 'torch/csrc/api/include')];
  if (cfg.cuda) {
    // CUDA headers (cuda_runtime_api.h, cusolverDn.h, nccl.h): the toolkit, or folders
    // listed in ACCELERATE_CUDA_INCLUDE (e.g. unpacked NVIDIA wheels).
    const cudaHome = process.env.CUDA_HOME ?? process.env.CUDA_PATH ?? '/usr/local/cuda';
    if (existsSync(join(cudaHome, 'include'))) includes.push(join(cudaHome, 'include'));
    includes.push(...(process.env.ACCELERATE_CUDA_INCLUDE ?? '').split(':').filter(Boolean));
  }
  const defines = ['_GLIBCXX_USE_CXX11_ABI=1', 'USE_DISTRIBUTED', 'USE_C10D_GLOO'];
  if (cfg.cuda) defines.push('USE_C10D_NCCL', 'ACCELERATE_TORCH_CUDA');
  const cflags = [`-std=${std}`, '-fexceptions', '-frtti', '-Wno-unused-parameter', '-Wno-deprecated-declarations'];
  const ldflags = ['-Wl,-z,now'];
  if (!cfg.system) ldflags.push(`-L${cfg.libDir}`, `-Wl,-rpath,${cfg.libDir}`);
  // CUDA libtorch: torch_cuda/c10_cuda are only referenced through static registration, so
  // --as-needed would drop them and no CUDA kernel would register.
  const libs = cfg.cuda
    ? ['-Wl,--no-as-needed', '-ltorch', '-ltorch_cpu', '-ltorch_cuda', '-lc10', '-lc10_cuda', '-Wl,--as-needed']
    : ['-ltorch', '-ltorch_cpu', '-lc10'];
  return { includes, defines, cflags, ldflags, libs };
}

export { HOW_TO };

// CLI for binding.gyp: `node find-libtorch.mjs includes|defines|cflags|ldflags|libs|json`
if (process.argv[1] && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const what = process.argv[2] ?? 'json';
  const cfg = findLibtorch();
  if (!cfg) {
    console.error(HOW_TO);
    process.exit(1);
  }
  if (what === 'json') console.log(JSON.stringify(cfg, null, 2));
  else console.log(flags(cfg)[what].join(' '));
}
