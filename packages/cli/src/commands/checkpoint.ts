/**
 * `accelerate checkpoint export-python <dir>`: turn a `saveState` folder into one
 * Python Accelerate's `load_state` reads. Our checkpoints keep optimizer, scheduler
 * and registered-object state in safetensors + JSON (no pickles); Python expects
 * `torch.save` files (`optimizer.bin`, `scheduler.bin`, `custom_checkpoint_<i>.pkl`).
 * The conversion runs in the user's Python (torch + safetensors), which is the
 * side that needs the pickles anyway, so no pickle writer lives in Node.
 * @module
 */
import { spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
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
  const python = options.python ?? process.env.PYTHON ?? 'python3';
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
    .option('--python <path>', 'Python with torch and safetensors (default: $PYTHON, else python3)')
    .action((dir: string, opts: { out?: string; python?: string }) => {
      const r = exportCheckpointToPython(dir, opts);
      ctx.stdout(`Wrote ${r.out}: ${[...r.written, ...r.copied].join(', ')}.\n`);
      if (r.skipped.length) ctx.stdout(`Not carried over (no Python Accelerate counterpart): ${r.skipped.join(', ')}.\n`);
      ctx.stdout(`In Python: accelerator.load_state(${JSON.stringify(r.out)}) after prepare() with the same model, optimizers and schedulers.\n`);
    });
}
