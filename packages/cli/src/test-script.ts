/**
 * The check script `accelerate test` runs under `accelerate launch`: on every
 * rank it checks data sharding, collectives, triggers, `mainProcessFirst` and
 * (with @accelerate/backend-libtorch) DDP gradient synchronisation against exact
 * expected values, then rank 0 prints one
 * line per check and a verdict. The process exits non-zero if any check
 * failed on any rank.
 * @module
 */
import { appendFileSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Accelerator, DataLoader, HostTensor, InitProcessGroupKwargs, PartialState } from '@accelerate/core';
import { ddpSyncChecks } from './ddp-checks.js';

interface CheckResult {
  name: string;
  rank: number;
  ok: boolean;
  detail: string;
}

const results: CheckResult[] = [];
const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const same = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((x, i) => x === b[i]);
const show = (xs: readonly number[]) => (xs.length > 12 ? `[${xs.slice(0, 12).join(',')},…] (${xs.length} values)` : `[${xs.join(',')}]`);

class CheckFailed extends Error {}
function expectEqual(what: string, got: readonly number[], want: readonly number[]): void {
  if (!same(got, want)) throw new CheckFailed(`${what}: expected ${show(want)}, got ${show(got)}`);
}

// A check that fails on one rank only can leave the others waiting in a collective:
// a short timeout turns that into an error naming where each rank is.
const accelerator = new Accelerator({ kwargsHandlers: [new InitProcessGroupKwargs({ timeoutSeconds: 60 })] });
await accelerator.ready();
const P = accelerator.numProcesses;
const p = accelerator.processIndex;
const backend = accelerator.backend;
const tensor = (xs: readonly number[]) => backend.fromHost(HostTensor.fromNumbers(xs), accelerator.device);
const numbers = (t: unknown) => backend.toHost(t).toArray();

async function check(name: string, body: () => Promise<string | void>): Promise<void> {
  try {
    const detail = await body();
    results.push({ name, rank: p, ok: true, detail: detail ?? '' });
  } catch (e) {
    results.push({ name, rank: p, ok: false, detail: e instanceof CheckFailed ? e.message : `${(e as Error).stack ?? String(e)}` });
  }
}

// [B14] A prepared loader over range(32·P), gathered step by step, is exactly arange(32·P).
for (const [splitBatches, dispatchBatches] of [
  [false, false],
  [true, false],
  [false, true],
  [true, true],
] as const) {
  const label = [splitBatches ? 'split' : '', dispatchBatches ? 'dispatch' : ''].filter(Boolean).join('+') || 'plain';
  await check(`data sharding (${label})`, async () => {
    const acc = new Accelerator({ dataloaderConfig: { splitBatches, dispatchBatches } });
    // With splitBatches the batch is the global one and must divide over any number of processes.
    const batchSize = splitBatches ? 8 * P : 8;
    const [loader] = await acc.prepare(new DataLoader(range(32 * P), { batchSize }));
    const seen: number[] = [];
    for await (const batch of loader as AsyncIterable<unknown>) seen.push(...numbers(await acc.gather(batch)));
    expectEqual('gathered batches', seen, range(32 * P));
    const [shuffled] = await acc.prepare(new DataLoader(range(32 * P), { batchSize, shuffle: true }));
    const mine: number[] = [];
    for await (const batch of shuffled as AsyncIterable<unknown>) mine.push(...numbers(batch));
    const all = (await acc.gatherObject(mine)).sort((a, b) => a - b);
    expectEqual('shuffled shards, sorted', all, range(32 * P));
    return `${32 * P} samples`;
  });
}

// [B28] Rank p holds arange(P) + 1 + P·p.
const mine = () => tensor(range(P).map((i) => i + 1 + P * p));
await check('gather', async () => {
  expectEqual('gather', numbers(await accelerator.gather(mine())), range(P * P).map((i) => i + 1));
});
await check('gatherObject', async () => {
  expectEqual('gatherObject([rank])', await accelerator.gatherObject([p]), range(P));
});
await check('broadcast', async () => {
  expectEqual('broadcast from rank 0', numbers(await accelerator.broadcast(mine())), range(P).map((i) => i + 1));
});
await check('reduce', async () => {
  // sum over ranks q of (i + 1 + P·q) = P(i + 1) + P·P(P-1)/2
  const sum = range(P).map((i) => P * (i + 1) + (P * P * (P - 1)) / 2);
  expectEqual('reduce sum', numbers(await accelerator.reduce(mine(), 'sum')), sum);
  expectEqual('reduce mean', numbers(await accelerator.reduce(mine(), 'mean')), sum.map((s) => s / P));
  expectEqual('reduce max', numbers(await accelerator.reduce(mine(), 'max')), range(P).map((i) => i + 1 + P * (P - 1)));
});
// [B29] The main process holds arange(P+1), the others arange(P).
await check('padAcrossProcesses', async () => {
  const padded = numbers(await accelerator.padAcrossProcesses(tensor(range(p === 0 ? P + 1 : P))));
  expectEqual('padded', padded, p === 0 ? range(P + 1) : [...range(P), 0]);
});

// [B57] A trigger set on the main process is seen by every process, once.
await check('triggers', async () => {
  if (await accelerator.checkTrigger()) throw new CheckFailed('checkTrigger() was true before any setTrigger()');
  if (accelerator.isMainProcess) accelerator.setTrigger();
  if (!(await accelerator.checkTrigger())) throw new CheckFailed('checkTrigger() was false after the main process called setTrigger()');
  if (await accelerator.checkTrigger()) throw new CheckFailed('checkTrigger() stayed true after it was checked');
});

// [B56] mainProcessFirst: the main process writes first, the others after it.
await check('mainProcessFirst', async () => {
  if ((PartialState.current?.numMachines ?? 1) > 1) return 'skipped: the file check needs one machine';
  const file = join(tmpdir(), `accelerate-test-${process.env.MASTER_PORT ?? 'single'}-${P}.txt`);
  if (accelerator.isMainProcess) rmSync(file, { force: true });
  await accelerator.waitForEveryone();
  await accelerator.mainProcessFirst(async () => {
    if (accelerator.isMainProcess) await new Promise((r) => setTimeout(r, 200));
    appendFileSync(file, accelerator.isMainProcess ? 'main\n' : `rank ${p}\n`);
  });
  await accelerator.waitForEveryone();
  const lines = readFileSync(file, 'utf8').trim().split('\n');
  await accelerator.waitForEveryone();
  if (accelerator.isMainProcess) rmSync(file, { force: true });
  if (lines[0] !== 'main') throw new CheckFailed(`the first line is ${JSON.stringify(lines[0])}, not the main process's`);
  if (lines.length !== P || lines.slice(1).some((l) => l === 'main')) {
    throw new CheckFailed(`expected the main line then ${P - 1} other lines, got ${JSON.stringify(lines)}`);
  }
});

// Spec §12 test_sync: gradients differ between ranks inside noSync / non-sync accumulate
// steps and equal their average after a synchronised backward.
for (const r of await ddpSyncChecks(accelerator)) results.push({ ...r, rank: p });

const everyone = await accelerator.gatherObject(results);
const failures = everyone.filter((r) => !r.ok);
if (accelerator.isMainProcess) {
  const out: string[] = [
    `accelerate test: ${P} process${P === 1 ? '' : 'es'}, ${accelerator.distributedType}, backend ${backend.name}, device ${accelerator.device}`,
  ];
  for (const r of results) {
    const bad = failures.filter((f) => f.name === r.name);
    if (bad.length === 0) out.push(`  ok    ${r.name}${r.detail ? ` (${r.detail})` : ''}`);
    else for (const b of bad) out.push(`  FAIL  ${b.name} on rank ${b.rank}: ${b.detail}`);
  }
  const names = new Set(everyone.map((r) => r.name));
  out.push(
    failures.length === 0
      ? `All ${names.size} checks passed on ${P} process${P === 1 ? '' : 'es'}.`
      : `${new Set(failures.map((f) => f.name)).size} of ${names.size} checks failed.`,
  );
  console.log(out.join('\n'));
}
await accelerator.endTraining();
process.exitCode = failures.length === 0 ? 0 : 1;
