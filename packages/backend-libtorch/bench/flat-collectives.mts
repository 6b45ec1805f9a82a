#!/usr/bin/env node
// Flat-tensor collectives vs the list ones, 2 processes on this machine (gloo, loopback):
//   reduceScatterInto(out[N/2], in[N])        vs reduceScatter(out[N/2], [in0[N/2], in1[N/2]])  (list: all-reduce of the concatenation)
//   allGatherInto(out[N], in[N/2])            vs allGather(in[N/2])                              (list: returns new tensors)
// N = 4M float32 (16 MB). Medians over ITERS interleaved rounds after a warm-up; both ranks report.
// Usage: node --import tsx bench/flat-collectives.mts [N] [ITERS]
// Writes bench/flat-collectives.<libtorch version>.json.
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createServer } from 'node:net';

const N = Number(process.argv[2] ?? 4 << 20);
const ITERS = Number(process.argv[3] ?? 25);
const self = fileURLToPath(import.meta.url);

if (process.env.RANK === undefined) {
  const port: number = await new Promise((res) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => res(p));
    });
  });
  const runs = [0, 1].map(
    (rank) =>
      new Promise<Record<string, unknown>>((resolve, reject) => {
        const p = spawn(process.execPath, ['--import', 'tsx', self, String(N), String(ITERS)], {
          env: { ...process.env, RANK: String(rank), WORLD_SIZE: '2', MASTER_PORT: String(port), OMP_NUM_THREADS: '1' },
          stdio: ['ignore', 'pipe', 'inherit'],
        });
        let out = '';
        p.stdout.on('data', (d) => (out += d));
        p.on('close', (code) => (code === 0 ? resolve(JSON.parse(out.trim().split('\n').pop()!)) : reject(new Error(`rank ${rank} exited ${code}`))));
      }),
  );
  const [r0, r1] = await Promise.all(runs);
  const { native } = await import('../src/native.js');
  const result = { date: new Date().toISOString(), libtorch: native.torchVersion, floats: N, iters: ITERS, ranks: 2, implementations: r0!.implementations, rank0: r0!.ms, rank1: r1!.ms };
  const file = fileURLToPath(new URL(`./flat-collectives.${native.torchVersion}.json`, import.meta.url));
  writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
  console.log(JSON.stringify(result, null, 2));
  process.exit(0);
}

const { GlooProcessGroup, zeros, full } = await import('../src/index.js');
const rank = Number(process.env.RANK);
const pg = await GlooProcessGroup.init({ rank, worldSize: 2, masterAddr: '127.0.0.1', masterPort: Number(process.env.MASTER_PORT), timeoutMs: 120_000 });
const half = N / 2;
const big = full([N], rank + 1);
const small = zeros([half]);
const parts = [full([half], rank + 1), full([half], rank + 1)];
const gatherOut = zeros([N]);
const gatherIn = full([half], rank + 1);

const cases: Record<string, () => Promise<void>> = {
  reduceScatterInto: () => pg.reduceScatterInto(small, big, 'sum').wait(),
  'reduceScatter (list, all-reduce emulation)': () => pg.reduceScatter(small, parts, 'sum').wait(),
  allGatherInto: () => pg.allGatherInto(gatherOut, gatherIn).wait(),
  'allGather (list)': async () => {
    const outs = await pg.allGather(gatherIn).wait();
    for (const o of outs) (o as { dispose(): void }).dispose();
  },
  'reduceScatterInto waitSync': async () => pg.reduceScatterInto(small, big, 'sum').waitSync!(),
  'allGatherInto waitSync': async () => pg.allGatherInto(gatherOut, gatherIn).waitSync!(),
};
// Interleaved (one run of each case per round), so load from other processes on this
// shared machine spreads over all cases alike.
for (const run of Object.values(cases)) for (let i = 0; i < 3; i++) await run();
await pg.barrier().wait();
const times: Record<string, number[]> = Object.fromEntries(Object.keys(cases).map((k) => [k, []]));
for (let i = 0; i < ITERS; i++) {
  for (const [name, run] of Object.entries(cases)) {
    const t0 = performance.now();
    await run();
    times[name]!.push(performance.now() - t0);
  }
}
const ms: Record<string, { median: number; min: number; GBps: number }> = {};
for (const [name, ts] of Object.entries(times)) {
  ts.sort((a, b) => a - b);
  const median = ts[Math.floor(ts.length / 2)]!;
  // Bus bandwidth of a reduce-scatter / all-gather of N floats over 2 ranks: (n-1)/n · N · 4 bytes.
  ms[name] = { median: Number(median.toFixed(2)), min: Number(ts[0]!.toFixed(2)), GBps: Number(((0.5 * N * 4) / (median / 1000) / 1e9).toFixed(2)) };
}
if (small.index(0).item() !== 3 || gatherOut.index(0).item() !== 1 || gatherOut.index(N - 1).item() !== 2) throw new Error('wrong values');
console.log(JSON.stringify({ rank, implementations: pg.implementations, ms }));
process.exit(0);
