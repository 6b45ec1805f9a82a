/**
 * FSDP benchmark: accelerate-ts FSDP (`@accelerate/plugin-fsdp`) against its baselines, in one run.
 *
 *   npm run bench:fsdp        (BENCH_STEPS=30 BENCH_WARMUP=5 BENCH_REPS=2 BENCH_WORLD=2 BENCH_SHARDING=FULL_SHARD)
 *
 * For each model of bench/fsdp-common.ts (mlp 512-1024-1024-10, global batch 64; transformer
 * 2 x TransformerEncoderLayer(64, 4, ff 128) + mean + Linear(64, 4), global batch 32 of [16, 64]),
 * on BENCH_WORLD local processes over gloo, 1 intra-op thread each, from the same initial weights
 * and data (written by accelerate-ts with seed 0, bench/fsdp-common.ts `generate`):
 *   ts-ddp      accelerate-ts, built-in DDP (Accelerator on 2 processes)
 *   ts-fsdp     accelerate-ts, new Accelerator({ plugins: [fsdp({ shardingStrategy })] })
 *               ("skipped: plugin not built" until @accelerate/plugin-fsdp exports fsdp)
 *   py-ddp      torch DistributedDataParallel
 *   py-fsdp1    torch FullyShardedDataParallel (ShardingStrategy, device_id cpu)
 *   py-fsdp2    torch fully_shard (cpu device mesh; FULL_SHARD = reshard_after_forward)
 * (bench/python/fsdp_reference.py, the venv's torch: $ACCELERATE_TS_PYTHON or .venv-py).
 * AdamW(lr 1e-4 = BENCH_LR, wd 0.01), cross entropy; the transformer's layers are FSDP units, the MLP one unit.
 * Reports steps/s of each (best of BENCH_REPS, runs interleaved), the ratios ts-fsdp/py-fsdp1,
 * ts-fsdp/py-fsdp2, ts-fsdp/ts-ddp, ts-ddp/py-ddp, py-fsdp1/py-ddp, and the max abs difference
 * of the loss curves (every step, warmup included) and of the final full parameters between
 * each pair (the same seed, data and step count: must be <= 1e-5, parameters compared without
 * the attention key-projection bias, reported apart: see paramDiffs in bench/fsdp-common.ts).
 * py-ddp-same-libtorch: Python DDP on the addon's own libtorch (Debian's python3-torch 1.13 for
 * the system build; BENCH_SAME_LIBTORCH_PYTHON=<python>), when one is installed: ours against
 * Python on the same kernels.
 * Memory (ts-ddp vs ts-fsdp, first repetition, every rank; bench/fsdp-train.ts): the backend's
 * allocator counters (accelerator.backend.memory.info('cpu')) after training (after global.gc()
 * and an event-loop turn), and the peak of the last timed step (memory.resetPeak('cpu') before
 * it); both also less the baseline (data loaded, no model yet), and the ratios FSDP/DDP.
 * Profile (BENCH_PROFILE=0 turns it off): one more ts-fsdp run per model with FSDP_BENCH_PROFILE=1,
 * rank 0's ms per step in the plugin's unit operations, the collectives' issue and wait, and the
 * loop's phases, and the bytes allocated after each of them in the last step (its throughput is
 * not counted: the wrappers cost a little).
 * Writes bench/results/fsdp.json and fsdp.md (or $BENCH_OUT{,.md}).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import * as torch from '@accelerate/backend-libtorch';
import { spawnSync } from 'node:child_process';
import { findPython, generate, loadFsdpPlugin, maxCurveDiff, paramDiffs, ROOT, runPython, runTs, type ModelName, type RunOutput, type RunSpec, type Sharding } from './fsdp-common.js';

const STEPS = Number(process.env.BENCH_STEPS ?? 30);
const WARMUP = Number(process.env.BENCH_WARMUP ?? 5);
const REPS = Number(process.env.BENCH_REPS ?? 2);
const WORLD = Number(process.env.BENCH_WORLD ?? 2);
const SHARDING = (process.env.BENCH_SHARDING ?? 'FULL_SHARD') as Sharding;
const MODELS = (process.env.BENCH_MODELS ?? 'mlp,transformer').split(',') as ModelName[];
const LR = Number(process.env.BENCH_LR ?? 1e-4);
const TOLERANCE = 1e-5;
const BATCHES = 8;

type Side = 'ts-ddp' | 'ts-fsdp' | 'py-ddp' | 'py-fsdp1' | 'py-fsdp2' | 'py-ddp-same-libtorch';
const round = (x: number, d = 3) => Math.round(x * 10 ** d) / 10 ** d;

async function main(): Promise<void> {
  const py = findPython();
  const plugin = await loadFsdpPlugin();
  console.log(`addon: libtorch ${torch.version}; Python: ${py.python ? `${py.python} (torch ${py.torch})` : `skipped: ${py.reason}`}`);
  console.log(`@accelerate/plugin-fsdp: ${plugin.fsdp ? `fsdp from ${plugin.from}` : `skipped: ${plugin.reason}`}`);
  // Python torch of the addon's own libtorch (Debian's python3-torch for the system build), when
  // there is one: its DDP shows ours against Python on the very same kernels (bitwise on the MLP).
  const mm = (v: string) => v.split('.').slice(0, 2).join('.');
  const sameLibtorch = [process.env.BENCH_SAME_LIBTORCH_PYTHON, '/usr/bin/python3']
    .filter((p): p is string => !!p && p !== py.python)
    .map((p) => ({ python: p, version: spawnSync(p, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8', timeout: 60_000 }).stdout?.trim() }))
    .find((p) => p.version && mm(p.version) === mm(torch.version));
  if (sameLibtorch) console.log(`same-libtorch Python (DDP only): ${sameLibtorch.python} (torch ${sameLibtorch.version})`);
  const dir = mkdtempSync(join(tmpdir(), 'fsdp-bench-'));
  const t00 = Date.now();
  const results: Record<string, unknown> = {};
  const md: string[] = [];
  try {
    for (const model of MODELS) {
      const { init, data } = await generate(torch, dir, model, 0, BATCHES);
      const spec = (side: Side, rep: number): RunSpec => ({ model, init, data, steps: STEPS, warmup: WARMUP, lr: LR, world: WORLD, out: join(dir, `${model}-${side}-${rep}.json`) });
      const sides: Array<[Side, (rep: number) => Promise<RunOutput>]> = [['ts-ddp', (r) => runTs('ddp', SHARDING, spec('ts-ddp', r))]];
      if (plugin.fsdp) sides.push(['ts-fsdp', (r) => runTs('fsdp', SHARDING, spec('ts-fsdp', r))]);
      if (py.python) {
        sides.push(['py-ddp', (r) => runPython(py.python!, 'ddp', SHARDING, spec('py-ddp', r))]);
        sides.push(['py-fsdp1', (r) => runPython(py.python!, 'fsdp1', SHARDING, spec('py-fsdp1', r))]);
        sides.push(['py-fsdp2', (r) => runPython(py.python!, 'fsdp2', SHARDING, spec('py-fsdp2', r))]);
      }
      if (sameLibtorch) sides.push(['py-ddp-same-libtorch', (r) => runPython(sameLibtorch.python, 'ddp', SHARDING, spec('py-ddp-same-libtorch', r))]);
      const runs: Partial<Record<Side, RunOutput[]>> = {};
      const skipped: Partial<Record<Side, string>> = {};
      if (!plugin.fsdp) skipped['ts-fsdp'] = `skipped: ${plugin.reason}`;
      for (let rep = 0; rep < REPS; rep++) {
        for (const [side, run] of sides) {
          if (skipped[side]) continue;
          if (side === 'py-ddp-same-libtorch' && rep > 0) continue; // a parity reference: once is enough
          const t0 = Date.now();
          let r: RunOutput;
          try {
            r = await run(rep);
          } catch (e) {
            // A side that fails (e.g. a plugin under construction) is reported, not fatal.
            skipped[side] = `failed: ${(e as Error).message.split('\n').filter((l) => /Error/.test(l)).slice(-1)[0] ?? (e as Error).message.slice(0, 300)}`;
            process.stderr.write(`${model} ${side}: ${skipped[side]}\n`);
            continue;
          }
          if (r.skipped) {
            skipped[side] = `skipped: ${r.skipped}`;
            continue;
          }
          (runs[side] ??= []).push(r);
          process.stderr.write(`${model} ${side} rep ${rep + 1}/${REPS}: ${r.stepsPerSec.toFixed(2)} steps/s (${((Date.now() - t0) / 1000).toFixed(1)} s with startup)\n`);
        }
      }
      const best = (s: Side) => runs[s]?.reduce((x, y) => (y.stepsPerSec > x.stepsPerSec ? y : x));
      const sps = (s: Side) => best(s)?.stepsPerSec;
      const ratio = (x: Side, y: Side) => (sps(x) && sps(y) ? round(sps(x)! / sps(y)!) : null);
      const ratios = {
        tsFsdpVsPyFsdp1: ratio('ts-fsdp', 'py-fsdp1'),
        tsFsdpVsPyFsdp2: ratio('ts-fsdp', 'py-fsdp2'),
        tsFsdpVsTsDdp: ratio('ts-fsdp', 'ts-ddp'),
        tsDdpVsPyDdp: ratio('ts-ddp', 'py-ddp'),
        pyFsdp1VsPyDdp: ratio('py-fsdp1', 'py-ddp'),
        pyFsdp2VsPyDdp: ratio('py-fsdp2', 'py-ddp'),
      };
      // Every pair of sides, on the first repetition of each (same seed, data and steps).
      const present = (Object.keys(runs) as Side[]).filter((s) => runs[s]!.length);
      const diffs: Record<string, { lossCurve: number; params: number; paramsExclKeyBias: number; keyBias: number; ok: boolean }> = {};
      for (let i = 0; i < present.length; i++) {
        for (let j = i + 1; j < present.length; j++) {
          const [x, y] = [runs[present[i]!]![0]!, runs[present[j]!]![0]!];
          const lossCurve = maxCurveDiff(x.losses, y.losses);
          const p = await paramDiffs(x.params, y.params);
          diffs[`${present[i]} vs ${present[j]}`] = { lossCurve, params: p.all, paramsExclKeyBias: p.excludingKeyBias, keyBias: p.keyBias, ok: lossCurve <= TOLERANCE && p.excludingKeyBias <= TOLERANCE };
        }
      }
      const stepsPerSec = Object.fromEntries((['ts-ddp', 'ts-fsdp', 'py-ddp', 'py-fsdp1', 'py-fsdp2', ...(sameLibtorch ? ['py-ddp-same-libtorch' as const] : [])] as Side[]).map((s) => [s, sps(s) !== undefined ? round(sps(s)!) : (skipped[s] ?? 'skipped: no Python with torch')]));
      const ref = best('py-ddp') ?? best('ts-ddp')!;

      // Per-rank memory of our two sides (first repetition), and the ratios FSDP/DDP.
      const MB = (x: number) => round(x / 2 ** 20, 2);
      const memOf = (side: Side) => runs[side]?.[0]?.memory?.ranks.map((r) => ({
        rank: r.rank,
        afterTrainingMB: MB(r.afterTraining),
        afterTrainingLessBaselineMB: MB(r.afterTraining - r.baseline),
        stepPeakMB: MB(r.stepPeak),
        stepPeakLessBaselineMB: MB(r.stepPeak - r.baseline),
        baselineMB: MB(r.baseline),
      }));
      const memDdp = memOf('ts-ddp');
      const memFsdp = memOf('ts-fsdp');
      const maxOf = (m: NonNullable<ReturnType<typeof memOf>>, k: 'afterTrainingMB' | 'afterTrainingLessBaselineMB' | 'stepPeakMB' | 'stepPeakLessBaselineMB') => Math.max(...m.map((r) => r[k]));
      const memRatios =
        memDdp && memFsdp
          ? Object.fromEntries(
              (['afterTrainingMB', 'afterTrainingLessBaselineMB', 'stepPeakMB', 'stepPeakLessBaselineMB'] as const).map((k) => [k.replace(/MB$/, ''), round(maxOf(memFsdp, k) / maxOf(memDdp, k))]),
            )
          : null;
      const memory = { 'ts-ddp': memDdp ?? null, 'ts-fsdp': memFsdp ?? null, fsdpOverDdp: memRatios };

      // Where one ts-fsdp step's time and memory go (a separate, instrumented run).
      let profile: { stepsPerSec: number; msPerStep: RunOutput['profile']; memTraceMB: Array<[string, number]> | undefined } | string | undefined;
      if (plugin.fsdp && process.env.BENCH_PROFILE !== '0' && !skipped['ts-fsdp']) {
        try {
          const r = await runTs('fsdp', SHARDING, spec('ts-fsdp', 99), { FSDP_BENCH_PROFILE: '1' });
          profile = { stepsPerSec: round(r.stepsPerSec), msPerStep: r.profile, memTraceMB: r.memTrace?.map(([k, v]) => [k, MB(v)]) };
          process.stderr.write(`${model} ts-fsdp profiled: ${r.stepsPerSec.toFixed(2)} steps/s\n`);
        } catch (e) {
          profile = `failed: ${(e as Error).message.slice(0, 300)}`;
        }
      }
      results[model] = { stepsPerSec, ratios, memory, profile, maxAbsDiff: diffs, allWithinTolerance: Object.values(diffs).every((d) => d.ok), firstLoss: ref.losses[0], lastLoss: ref.losses.at(-1) };

      md.push(`### ${model}`, '', '| side | steps/s |', '|---|---|');
      for (const [s, v] of Object.entries(stepsPerSec)) md.push(`| ${s} | ${v} |`);
      md.push('', '| ratio | value |', '|---|---|');
      for (const [k, v] of Object.entries(ratios)) md.push(`| ${k} | ${v ?? 'n/a'} |`);
      md.push('', `| pair | loss curve | final params | params without attention key bias | attention key bias | ≤ ${TOLERANCE} |`, '|---|---|---|---|---|---|');
      const e = (x: number) => (x === 0 ? '0' : x.toExponential(2));
      for (const [k, d] of Object.entries(diffs)) md.push(`| ${k} | ${e(d.lossCurve)} | ${e(d.params)} | ${e(d.paramsExclKeyBias)} | ${model === 'transformer' ? e(d.keyBias) : 'n/a'} | ${d.ok ? 'yes' : 'NO'} |`);
      if (memDdp || memFsdp) {
        md.push('', 'Per-rank CPU memory, MiB (allocator counters; "less baseline" = minus the bytes held before the model was built: data only):', '', '| side | rank | after training | after training less baseline | peak of a step | peak less baseline |', '|---|---|---|---|---|---|');
        for (const [side, m] of [['ts-ddp', memDdp], ['ts-fsdp', memFsdp]] as const) for (const r of m ?? []) md.push(`| ${side} | ${r.rank} | ${r.afterTrainingMB} | ${r.afterTrainingLessBaselineMB} | ${r.stepPeakMB} | ${r.stepPeakLessBaselineMB} |`);
        if (memRatios) md.push(`| FSDP/DDP (max over ranks) | | ${memRatios.afterTraining} | ${memRatios.afterTrainingLessBaseline} | ${memRatios.stepPeak} | ${memRatios.stepPeakLessBaseline} |`);
      }
      if (typeof profile === 'string') md.push('', `Profile: ${profile}`);
      else if (profile) {
        md.push('', `Profile of ts-fsdp (rank 0, separate instrumented run, ${profile.stepsPerSec} steps/s): ms per timed step; unit.* are the plugin's FlatUnit methods (they contain the collectives' issue/wait), phase * the training loop's.`, '', '| operation | ms/step | calls/step |', '|---|---|---|');
        for (const [k, v] of Object.entries(profile.msPerStep ?? {})) md.push(`| ${k} | ${v.msPerStep} | ${v.callsPerStep} |`);
        if (profile.memTraceMB) md.push('', `Allocated MiB after each operation of the last step: ${profile.memTraceMB.map(([k, v]) => `${k} ${v}`).join(' → ')}`);
      }
      md.push('');
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const result = {
    what: `FSDP (${SHARDING}) vs DDP, accelerate-ts vs Python torch; ${WORLD} processes over gloo on loopback, 1 intra-op thread each; AdamW lr ${LR} wd 0.01; ${WARMUP} warmup + ${STEPS} timed steps; best of ${REPS} interleaved reps; ratios > 1 mean the first is faster`,
    date: new Date().toISOString(),
    machine: { cpus: cpus().length, model: cpus()[0]?.model, loadavg: loadavg().map((x) => round(x)) },
    config: { optimizer: `AdamW(lr ${LR}, betas (0.9, 0.999), eps 1e-8, weight_decay 0.01)`, steps: STEPS, warmup: WARMUP, reps: REPS, world: WORLD, sharding: SHARDING, lr: LR, tolerance: TOLERANCE, models: { mlp: '512-1024-1024-10, global batch 64, one FSDP unit', transformer: '2 x TransformerEncoderLayer(64, nhead 4, ff 128, dropout 0, batch_first) + mean over seq 16 + Linear(64, 4), global batch 32, each layer an FSDP unit' } },
    versions: { addon: `libtorch ${torch.version}`, python: py.python ? { python: py.python, torch: py.torch } : py.reason, plugin: plugin.fsdp ? plugin.from : plugin.reason },
    wallSeconds: round((Date.now() - t00) / 1000, 1),
    results,
  };
  const outFile = process.env.BENCH_OUT ?? join(ROOT, 'bench/results/fsdp.json');
  mkdirSync(dirname(outFile), { recursive: true });
  writeFileSync(outFile, JSON.stringify(result, null, 2) + '\n');
  const header = [
    `# FSDP benchmark (${result.date})`,
    '',
    result.what + '.',
    '',
    'Max abs differences: of the per-step global mean loss (every step, warmup included) and of the final full parameters, between the first repetition of each side (same seed, data and steps). ' +
      '"ok" = loss curve and parameters without the attention key-projection bias ≤ the tolerance: that bias (middle third of self_attn.in_proj_bias) has a zero gradient in exact arithmetic, so each side trains it on rounding noise that AdamW normalises to updates of ~lr/10 per step; it is shown apart (two torch versions differ there as much). ' +
      'The Python FSDP sides equal Python DDP bitwise; ts-fsdp against ts-ddp should be 0 everywhere. py-ddp-same-libtorch is Python DDP on the addon\'s own libtorch (Debian python3-torch), when installed.',
    '',
    `Machine: ${result.machine.cpus} × ${result.machine.model}, load ${result.machine.loadavg.join(' ')} (1/5/15 min, at the end; ${result.machine.cpus} ranks of 2 threads each on ${result.machine.cpus} cores: with other work on the machine, steps/s swing by tens of percent between runs and reps — compare within a run, best of the reps). Addon libtorch ${torch.version}; Python torch ${py.torch ?? 'n/a'}. Plugin: ${plugin.fsdp ? plugin.from : plugin.reason}. Whole run ${result.wallSeconds} s.`,
    '',
  ];
  writeFileSync(outFile.replace(/\.json$/, '') + '.md', [...header, ...md].join('\n'));
  console.log(JSON.stringify(result, null, 2));
}

await main();
