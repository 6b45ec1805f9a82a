/**
 * `accelerate checkpoint export-python <dir>`: turn a `saveState` folder into one
 * Python Accelerate's `load_state` reads; `accelerate checkpoint import-python <dir>`:
 * the reverse, a Python `save_state` folder into one `loadState` reads. Our checkpoints keep optimizer, scheduler
 * and registered-object state in safetensors + JSON (no pickles); Python expects
 * `torch.save` files (`optimizer.bin`, `scheduler.bin`, `custom_checkpoint_<i>.pkl`).
 * The conversion runs in the user's Python (torch + safetensors), which is the
 * side that needs the pickles anyway, so no pickle writer lives in Node.
 * @module
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { type CheckpointManifest } from '@accelerate/core';
import { commitCheckpointDir, pathExists, tempCheckpointDir, writeManifest } from '@accelerate/core/internal';
import type { Command } from 'commander';
import { CliError, type CliContext } from '../context.js';

/**
 * The converter. State files are `<name>.json` (`{ format, kind, value }`, tensors as
 * `{"__tensor__": key}` into `<name>.safetensors`). Model weights are copied as they are
 * (Python loads model*.safetensors itself). The RNG file gets only `step` (Python's
 * accumulation counter): Python then reports "Could not load random states", since
 * Node's generators have no Python/NumPy equivalent.
 */
const EXPORT_PY = String.raw`
import json, os, shutil, sys
try:
    import torch
    from safetensors.torch import load_file
except ImportError as e:
    print(json.dumps({"error": f"{sys.executable} lacks torch or safetensors ({e}); pip install torch safetensors there, or pass --python /path/to/python (or set PYTHON)"}))
    sys.exit(2)

src, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
written, copied, skipped = [], [], []

def resolve(v, tensors):
    if isinstance(v, dict):
        if set(v) == {"__tensor__"}:
            return tensors[v["__tensor__"]]
        if set(v) == {"__bytes__"}:
            return bytes(tensors[v["__bytes__"]].numpy().tobytes())
        return {k: resolve(x, tensors) for k, x in v.items()}
    if isinstance(v, list):
        return [resolve(x, tensors) for x in v]
    return v

def optimizer_state(v):
    # torch.optim keys state by parameter index (int); JSON made them strings.
    return {"state": {int(k): s for k, s in v.get("state", {}).items()}, "param_groups": v.get("param_groups", [])}

def scheduler_state(v):
    v = dict(v)
    v.setdefault("_step_count", v.get("last_epoch", 0) + 1)
    v.setdefault("verbose", False)
    v.setdefault("_get_lr_called_within_step", False)
    # LambdaLR / MultiplicativeLR pop this key; other schedulers keep it as an unused attribute.
    v.setdefault("lr_lambdas", [None] * len(v.get("base_lrs", [])))
    return v

for name in sorted(os.listdir(src)):
    path = os.path.join(src, name)
    if os.path.isdir(path):
        skipped.append(name)
        continue
    if name.startswith(("model", "pytorch_model")) and (name.endswith(".safetensors") or name.endswith(".index.json")):
        shutil.copyfile(path, os.path.join(out, name))
        copied.append(name)
        continue
    if not name.endswith(".json") or name == "manifest.json":
        continue
    with open(path) as f:
        doc = json.load(f)
    if not isinstance(doc, dict) or doc.get("format") != "accelerate-ts-state":
        skipped.append(name)
        continue
    base = name[: -len(".json")]
    tensor_file = os.path.join(src, base + ".safetensors")
    tensors = load_file(tensor_file) if os.path.exists(tensor_file) else {}
    kind, value = doc.get("kind"), resolve(doc.get("value"), tensors)
    if kind == "optimizer":
        target, obj = base + ".bin", optimizer_state(value)
    elif kind == "scheduler":
        target, obj = base + ".bin", scheduler_state(value)
    elif kind == "custom":
        target, obj = base + ".pkl", value
    elif kind == "random_states":
        target, obj = base + ".pkl", {"step": int(value.get("accumulationStep", value.get("step", 0)))}
    else:
        skipped.append(name)
        continue
    torch.save(obj, os.path.join(out, target))
    written.append(target)

print(json.dumps({"written": written, "copied": copied, "skipped": skipped}))
`;

/**
 * The Python that converts checkpoints: `--python`, else `$ACCELERATE_TS_PYTHON`,
 * else `$PYTHON`, else `python3` on the PATH.
 */
export function pythonFor(options: { python?: string } = {}): string {
  return options.python || process.env.ACCELERATE_TS_PYTHON || process.env.PYTHON || 'python3';
}

/**
 * The reverse converter: reads Python Accelerate's `save_state` pickles with torch
 * (the user's own checkpoint: `random_states_*.pkl` holds NumPy arrays, so it needs
 * `weights_only=False`, i.e. trusted input) and writes our state files, laid out as
 * `encodeState` writes them: `<name>.json` `{ format, version, kind, value }` with
 * tensors as `{"__tensor__": key}` (bytes as `{"__bytes__": key}`) into
 * `<name>.safetensors`. The manifest is written by Node afterwards.
 */
const IMPORT_PY = String.raw`
import json, math, os, re, shutil, sys
try:
    import torch
    from safetensors.torch import load_file, save_file
except ImportError as e:
    print(json.dumps({"error": f"{sys.executable} lacks torch or safetensors ({e}); pip install torch safetensors there, or pass --python /path/to/python (or set ACCELERATE_TS_PYTHON)"}))
    sys.exit(2)

src, out = sys.argv[1], sys.argv[2]
written, skipped = [], []
info = {"optimizers": 0, "schedulers": 0, "models": 0, "custom": 0, "ranks": 0, "step": 0, "accelerate": None}
try:
    import accelerate
    info["accelerate"] = accelerate.__version__
except Exception:
    pass
MARKERS = {"__tensor__", "__bytes__", "__number__", "__object__"}

class Unsupported(Exception):
    pass

def encode(value, where):
    tensors = {}
    def walk(v, path):
        key = path or "."
        if isinstance(v, torch.Tensor):
            tensors[key] = v.detach().cpu().contiguous().clone()
            return {"__tensor__": key}
        if isinstance(v, (bytes, bytearray)):
            tensors[key] = torch.frombuffer(bytearray(v), dtype=torch.uint8).clone() if len(v) else torch.zeros(0, dtype=torch.uint8)
            return {"__bytes__": key}
        if v is None or isinstance(v, (bool, str)):
            return v
        if isinstance(v, int):
            return v
        if isinstance(v, float):
            return v if math.isfinite(v) else {"__number__": "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")}
        if isinstance(v, (list, tuple)):
            return [walk(x, f"{path}.{i}" if path else str(i)) for i, x in enumerate(v)]
        if isinstance(v, dict):
            o = {}
            for k, x in v.items():
                if not isinstance(k, (str, int)):
                    raise Unsupported(f"{where}: {path or 'the state'} has a key of type {type(k).__name__} ({k!r}); only str and int keys can be stored")
                o[str(k)] = walk(x, f"{path}.{k}" if path else str(k))
            return {"__object__": o} if len(o) == 1 and next(iter(o)) in MARKERS else o
        if hasattr(v, "item") and hasattr(v, "dtype"):  # NumPy scalar
            return walk(v.item(), path)
        raise Unsupported(f"{where}: {path or 'the state'} is a {type(v).__module__}.{type(v).__name__}, which has no accelerate-ts counterpart")
    return walk(value, ""), tensors

def write_state(base, kind, value, where):
    enc, tensors = encode(value, where)
    if tensors:
        save_file(tensors, os.path.join(out, base + ".safetensors"), metadata={"format": "pt"})
        written.append(base + ".safetensors")
    with open(os.path.join(out, base + ".json"), "w") as f:
        json.dump({"format": "accelerate-ts-state", "version": 1, "kind": kind, "value": enc}, f, indent=1, allow_nan=False)
        f.write("\n")
    written.append(base + ".json")

def number(v):
    if isinstance(v, torch.Tensor):
        v = v.item()
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v

def optimizer_state(sd):
    state = {}
    for pid, entry in sd.get("state", {}).items():
        e = {}
        for k, v in entry.items():
            if v is None:
                continue  # SGD without momentum keeps momentum_buffer None
            if k == "step":
                e[k] = number(v)
            elif isinstance(v, torch.Tensor) and v.dim() > 0:
                e[k] = v
            else:
                e[k] = number(v)
        state[int(pid)] = e
    groups = []
    for g in sd.get("param_groups", []):
        h = {}
        for k, v in g.items():
            if isinstance(v, torch.Tensor):
                v = v.item() if v.numel() == 1 else v.tolist()
            if isinstance(v, tuple):
                v = list(v)
            h[k] = v
        groups.append(h)
    return {"state": state, "param_groups": groups}

def scheduler_state(sd):
    keep = {}
    for k in ("last_epoch", "base_lrs", "_last_lr", "_step_count"):
        if k in sd:
            v = sd[k]
            keep[k] = [number(x) for x in v] if isinstance(v, (list, tuple)) else number(v)
    if "last_epoch" not in keep:
        raise Unsupported(f"scheduler state has no last_epoch (keys: {sorted(sd)})")
    return keep

def load(path, trusted):
    return torch.load(path, map_location="cpu", weights_only=not trusted)

names = sorted(os.listdir(src))
os.makedirs(out, exist_ok=True)
try:
    for name in names:
        path = os.path.join(src, name)
        if os.path.isdir(path):
            skipped.append(name + "/ (folder: FSDP / DeepSpeed state is not converted)")
            continue
        m = re.fullmatch(r"model(_(\d+))?\.safetensors", name)
        if m:
            shutil.copyfile(path, os.path.join(out, name))
            written.append(name)
            info["models"] = max(info["models"], int(m.group(2) or 0) + 1)
            continue
        m = re.fullmatch(r"pytorch_model(_(\d+))?\.bin", name)
        if m:
            target = f"model{m.group(1) or ''}.safetensors"
            if os.path.exists(os.path.join(src, target)):
                skipped.append(name + f" (the folder also has {target})")
                continue
            sd = load(path, False)
            seen, clean = {}, {}
            for k, v in sd.items():
                ptr = (v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape))
                if ptr in seen:
                    continue  # tied weights: kept once, as save_model does
                seen[ptr] = k
                clean[k] = v.detach().cpu().contiguous().clone()
            save_file(clean, os.path.join(out, target), metadata={"format": "pt"})
            written.append(target)
            info["models"] = max(info["models"], int(m.group(2) or 0) + 1)
            continue
        m = re.fullmatch(r"optimizer(_(\d+))?\.bin", name)
        if m:
            write_state(name[:-4], "optimizer", optimizer_state(load(path, False)), name)
            info["optimizers"] += 1
            continue
        m = re.fullmatch(r"scheduler(_(\d+))?\.bin", name)
        if m:
            write_state(name[:-4], "scheduler", scheduler_state(load(path, False)), name)
            info["schedulers"] += 1
            continue
        m = re.fullmatch(r"custom_checkpoint_(\d+)\.pkl", name)
        if m:
            write_state(name[:-4], "custom", load(path, True), name)
            info["custom"] += 1
            continue
        m = re.fullmatch(r"random_states_(\d+)\.pkl", name)
        if m:
            rank = int(m.group(1))
            st = load(path, True)
            step = int(st.get("step", 0))
            value = {"rank": rank, "step": step, "accumulationStep": step}
            rng = st.get("torch_manual_seed")
            if isinstance(rng, torch.Tensor):
                # torch.get_rng_state(): the CPU generator state libtorch's setRngState takes as is.
                value["backend"] = {"name": "libtorch", "state": bytes(rng.to(torch.uint8).numpy().tobytes())}
            write_state(name[:-4], "random_states", value, name)
            info["ranks"] = max(info["ranks"], rank + 1)
            if rank == 0:
                info["step"] = step
            dropped = [k for k in st if k not in ("step", "torch_manual_seed")]
            if dropped:
                skipped.append(f"{name}: {', '.join(dropped)} (Python-only generators; libtorch's CPU generator and the step are carried over)")
            continue
        if name == "scaler.pt":
            skipped.append(name + " (fp16 GradScaler state: not converted; the loss scaler starts from its initial scale)")
            continue
        if re.fullmatch(r"(sampler(_\d+)?|dl_state_dict(_\d+)?)\.bin", name):
            skipped.append(name + " (data loader state: accelerate-ts loaders start at the beginning; use skipFirstBatches)")
            continue
        skipped.append(name)
except Unsupported as e:
    print(json.dumps({"error": str(e)}))
    sys.exit(3)
print(json.dumps({"written": written, "skipped": skipped, **info}))
`;

/** What {@link importCheckpointFromPython} did. */
export interface ImportPythonResult {
  /** The `saveState` folder written (load it with `accelerator.loadState(out)`). */
  out: string;
  /** Files of `out`, besides `manifest.json`. */
  written: string[];
  /** Files (or parts of them) of the Python checkpoint with no accelerate-ts counterpart, with the reason. */
  skipped: string[];
  /** The manifest written. */
  manifest: CheckpointManifest;
}

/**
 * Convert the folder Python Accelerate's `save_state` wrote into `out`
 * (default `<dir>-ts`), a `saveState` folder that `loadState` restores:
 * `model*.safetensors` copied (`pytorch_model*.bin` converted), `optimizer*.bin`
 * (AdamW / Adam / SGD state and param-group hyper-parameters),
 * `scheduler*.bin` (`last_epoch`, `base_lrs`, `_last_lr`, `_step_count`),
 * `custom_checkpoint_*.pkl` and `random_states_*.pkl` (step and torch's CPU
 * generator state, which the libtorch backend restores) converted by
 * `python` (needs torch and safetensors; see {@link pythonFor}). Python's data
 * loader state is not carried over: `loadState` warns that those loaders
 * start at the beginning. The pickles are loaded with `weights_only=False`
 * where they need it (RNG states, registered objects): convert only
 * checkpoints you trust. The folder appears atomically, with its manifest.
 * @throws CliError naming what is wrong (not a Python checkpoint, no usable Python, a value with no counterpart).
 */
export async function importCheckpointFromPython(dir: string, options: { out?: string; python?: string } = {}): Promise<ImportPythonResult> {
  const src = resolve(dir);
  if (!existsSync(src) || !statSync(src).isDirectory()) {
    throw new CliError(`checkpoint import-python: ${src} is not a folder; pass the folder Python Accelerate's save_state wrote (with optimizer.bin, random_states_0.pkl, …).`);
  }
  if (existsSync(join(src, 'manifest.json'))) {
    throw new CliError(`checkpoint import-python: ${src} has a manifest.json, so it is already an accelerate-ts checkpoint: load it with accelerator.loadState(${JSON.stringify(src)}).`);
  }
  const names = readdirSync(src);
  if (!names.some((n) => /^(optimizer(_\d+)?\.bin|scheduler(_\d+)?\.bin|random_states_\d+\.pkl|pytorch_model(_\d+)?\.bin|model(_\d+)?\.safetensors)$/.test(n))) {
    throw new CliError(
      `checkpoint import-python: ${src} holds none of the files Python Accelerate's save_state writes (model.safetensors, optimizer.bin, scheduler.bin, random_states_0.pkl); found ${names.sort().slice(0, 8).join(', ') || 'nothing'}.`,
    );
  }
  const out = resolve(options.out ?? `${src.replace(/\/+$/, '')}-ts`);
  if (out === src) throw new CliError('checkpoint import-python: --out must differ from the Python checkpoint folder (it is left as it is).');
  if (await pathExists(out)) {
    throw new CliError(`checkpoint import-python: ${out} already exists; remove it or pass another --out (the import never overwrites a folder).`);
  }
  const python = pythonFor(options);
  await mkdir(dirname(out), { recursive: true });
  // Written into a hidden sibling, sealed with its manifest, then renamed into place: never half a checkpoint.
  const temp = tempCheckpointDir(out, process.pid);
  rmSync(temp, { recursive: true, force: true });
  mkdirSync(temp);
  try {
    const r = spawnSync(python, ['-c', IMPORT_PY, src, temp], { encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 });
    if (r.error) {
      throw new CliError(
        `checkpoint import-python: cannot run ${python} (${r.error.message}); pass --python /path/to/python (or set ACCELERATE_TS_PYTHON) with torch and safetensors installed.`,
      );
    }
    const last = r.stdout.trim().split('\n').pop() ?? '';
    let parsed: { error?: string; written?: string[]; skipped?: string[]; models?: number; optimizers?: number; schedulers?: number; custom?: number; ranks?: number; step?: number; accelerate?: string | null } = {};
    try {
      parsed = JSON.parse(last);
    } catch {
      throw new CliError(`checkpoint import-python: ${python} failed (exit ${r.status}): ${(r.stderr || r.stdout).trim().split('\n').slice(-5).join('\n')}`);
    }
    if (parsed.error || r.status !== 0) throw new CliError(`checkpoint import-python: ${parsed.error ?? `${python} exited with ${r.status}`}`);
    const skipped = parsed.skipped ?? [];
    const manifest = await writeManifest(temp, {
      worldSize: Math.max(1, parsed.ranks ?? 0),
      // PyTorch's optimizer layout and CPU generator state: what the libtorch backend reads.
      backend: 'libtorch',
      step: parsed.step ?? 0,
      iteration: 0,
      contents: {
        models: parsed.models ?? 0,
        optimizers: parsed.optimizers ?? 0,
        schedulers: parsed.schedulers ?? 0,
        dataloaders: 0,
        customObjects: parsed.custom ?? 0,
        scaler: false,
        plugins: [],
      },
      importedFrom: { tool: 'accelerate (Python)', ...(parsed.accelerate ? { version: parsed.accelerate } : {}), dir: src, notCarriedOver: skipped },
    });
    await commitCheckpointDir(temp, out, process.pid);
    return { out, written: (parsed.written ?? []).sort(), skipped, manifest };
  } catch (err) {
    rmSync(temp, { recursive: true, force: true });
    throw err;
  }
}

/** What {@link exportCheckpointToPython} did. */
export interface ExportPythonResult {
  /** The folder Python's `load_state` can read. */
  out: string;
  /** torch.save files written there (`optimizer.bin`, `scheduler.bin`, …). */
  written: string[];
  /** Model weight files copied unchanged. */
  copied: string[];
  /** Files of the checkpoint with no Python counterpart (data loader positions, scaler, plugins). */
  skipped: string[];
}

/**
 * Convert the `saveState` folder `dir` into `out` (default `<dir>-python`) for
 * Python Accelerate's `load_state`, with `python` (needs torch and safetensors).
 * Throws a {@link CliError} naming what is missing.
 */
export function exportCheckpointToPython(dir: string, options: { out?: string; python?: string } = {}): ExportPythonResult {
  const src = resolve(dir);
  if (!existsSync(src) || !statSync(src).isDirectory()) throw new CliError(`checkpoint export-python: ${src} is not a folder; pass the folder saveState wrote.`);
  if (!existsSync(resolve(src, 'manifest.json'))) {
    throw new CliError(`checkpoint export-python: ${src} has no manifest.json, so it is not an accelerate-ts saveState folder.`);
  }
  const out = resolve(options.out ?? `${src.replace(/\/+$/, '')}-python`);
  if (out === src) throw new CliError('checkpoint export-python: --out must differ from the checkpoint folder (it is left as it is).');
  const python = pythonFor(options);
  const r = spawnSync(python, ['-c', EXPORT_PY, src, out], { encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 });
  if (r.error) throw new CliError(`checkpoint export-python: cannot run ${python} (${r.error.message}); pass --python /path/to/python with torch and safetensors.`);
  const last = r.stdout.trim().split('\n').pop() ?? '';
  let parsed: { error?: string; written?: string[]; copied?: string[]; skipped?: string[] } = {};
  try {
    parsed = JSON.parse(last);
  } catch {
    throw new CliError(`checkpoint export-python: ${python} failed (exit ${r.status}): ${(r.stderr || r.stdout).trim().split('\n').slice(-5).join('\n')}`);
  }
  if (parsed.error || r.status !== 0) throw new CliError(`checkpoint export-python: ${parsed.error ?? `${python} exited with ${r.status}`}`);
  return { out, written: parsed.written ?? [], copied: parsed.copied ?? [], skipped: parsed.skipped ?? [] };
}

/** Adds `accelerate checkpoint export-python` to the program. */
export function registerCheckpointCommand(program: Command, ctx: CliContext): void {
  const checkpoint = program.command('checkpoint').description('Work with saveState checkpoint folders.');
  checkpoint
    .command('export-python')
    .description("Write a copy of a saveState folder that Python Accelerate's load_state reads (optimizer.bin, scheduler.bin, ...), using a Python with torch and safetensors.")
    .argument('<dir>', 'the folder saveState wrote (it is not changed)')
    .option('--out <dir>', 'where to write the Python checkpoint (default: <dir>-python)')
    .option('--python <path>', 'Python with torch and safetensors (default: $ACCELERATE_TS_PYTHON, else $PYTHON, else python3)')
    .action((dir: string, opts: { out?: string; python?: string }) => {
      const r = exportCheckpointToPython(dir, opts);
      ctx.stdout(`Wrote ${r.out}: ${[...r.written, ...r.copied].join(', ')}.\n`);
      if (r.skipped.length) ctx.stdout(`Not carried over (no Python Accelerate counterpart): ${r.skipped.join(', ')}.\n`);
      ctx.stdout(`In Python: accelerator.load_state(${JSON.stringify(r.out)}) after prepare() with the same model, optimizers and schedulers.\n`);
    });
  checkpoint
    .command('import-python')
    .description("Write a saveState folder that loadState reads from a folder Python Accelerate's save_state wrote (pickles converted by a Python with torch and safetensors).")
    .argument('<python_dir>', 'the folder save_state wrote (it is not changed)')
    .argument('[out_dir]', 'where to write the accelerate-ts checkpoint (default: <python_dir>-ts)')
    .option('--out <dir>', 'same as [out_dir]')
    .option('--python <path>', 'Python with torch and safetensors (default: $ACCELERATE_TS_PYTHON, else $PYTHON, else python3)')
    .action(async (dir: string, outDir: string | undefined, opts: { out?: string; python?: string }) => {
      const r = await importCheckpointFromPython(dir, { python: opts.python, out: outDir ?? opts.out });
      ctx.stdout(`Wrote ${r.out}: ${r.written.join(', ')}, manifest.json.\n`);
      if (r.skipped.length) ctx.stdout(`Not carried over:\n${r.skipped.map((s) => `  - ${s}`).join('\n')}\n`);
      ctx.stdout(
        `In TypeScript: await accelerator.loadState(${JSON.stringify(r.out)}) after prepare() with the same model, optimizers and schedulers (libtorch backend). ` +
          'Data loaders start at the beginning: skip the batches the Python run had consumed with accelerator.skipFirstBatches(loader, n).\n',
      );
    });
}
