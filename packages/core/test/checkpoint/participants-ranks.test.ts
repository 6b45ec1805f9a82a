// Checkpoint participants with writers: 'every' on 2 ranks: saveAcceleratorState / loadAcceleratorState
// driven as two in-process ranks over in-memory process groups (the file system is shared, as
// saveState assumes), with the host an Accelerator hands them.
import { describe, it, expect, beforeEach } from 'vitest';
import { mkdtempSync, readFileSync, readdirSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { Accelerator } from '../../src/accelerator/accelerator.js';
import { AcceleratorState } from '../../src/state/accelerator-state.js';
import { gatherObject } from '../../src/ops/collectives.js';
import { hostTensorOps } from '../../src/ops/tensor-ops.js';
import type { CheckpointParticipant } from '../../src/interfaces/checkpoint.js';
import { MANIFEST_NAME, type CheckpointManifest } from '../../src/checkpoint/manifest.js';
import { loadAcceleratorState, saveAcceleratorState, type CheckpointHost } from '../../src/checkpoint/save-state.js';
import { ReferenceBackend, RegressionModel, createInMemoryGroups } from '../../src/testing/index.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'acc-participants-ranks-'));
const manifestOf = (dir: string) => JSON.parse(readFileSync(join(dir, MANIFEST_NAME), 'utf8')) as CheckpointManifest;

beforeEach(async () => {
  await AcceleratorState.resetState();
});

/** Each rank's own state: a counter saved as `shard-rank<r>.json` by that rank. */
function perRank(states: number[], log: string[], options: { failReadOn?: number; sameFile?: boolean; vanishOn?: number } = {}): CheckpointParticipant {
  return {
    name: 'per-rank',
    writers: 'every',
    async save(w) {
      const file = options.sameFile ? 'shard' : `shard-rank${w.processIndex}`;
      await w.writeState(file, { rank: w.processIndex, value: states[w.processIndex] }, `rank ${w.processIndex}'s shard`);
      if (options.vanishOn === w.processIndex) unlinkSync(join(w.dir, `${file}.json`)); // as if this rank wrote to a file system rank 0 does not see
      w.record({ ranks: w.numProcesses, by: w.processIndex });
      log.push(`save ${w.processIndex}`);
    },
    async read(r) {
      const v = (await r.readState(`shard-rank${r.processIndex}`)) as { rank: number; value: number };
      if (v.rank !== r.processIndex) throw new Error(`rank ${r.processIndex} read rank ${v.rank}'s shard`);
      if (options.failReadOn === r.processIndex) throw new Error(`per-rank: rank ${r.processIndex}'s shard does not fit`);
      log.push(`read ${r.processIndex} saved by ${r.savedWorldSize} recorded=${JSON.stringify(r.recorded)}`);
      return () => {
        states[r.processIndex] = v.value;
        log.push(`apply ${r.processIndex}`);
      };
    },
  };
}

/** The checkpoint host of a one-process Accelerator with one prepared model, as rank `rank` of 2 over in-memory groups. */
async function twoRankHosts(participant: CheckpointParticipant): Promise<{ hosts: CheckpointHost[]; model: RegressionModel }> {
  const acc = new Accelerator({ backend: new ReferenceBackend(), configFile: false, env: {} });
  const model = new RegressionModel({ a: 1, b: 2 });
  await acc.prepare(model);
  const host = (acc as unknown as { checkpointHost(): CheckpointHost }).checkpointHost();
  const groups = createInMemoryGroups(2, { timeoutMs: 5000 });
  const hosts = groups.map(
    (group, rank): CheckpointHost => ({
      ...host,
      processIndex: rank,
      numProcesses: 2,
      isMainProcess: rank === 0,
      participants: [participant],
      step: 0,
      gatherObject: <E>(obj: E[]) => gatherObject<E>(obj, { group, ops: hostTensorOps, numProcesses: 2, processIndex: rank }),
    }),
  );
  return { hosts, model };
}

describe("writers: 'every' on 2 ranks", () => {
  it('each rank writes its own file, the manifest lists and hashes both (and each rank RNG state), and each rank loads its own back', async () => {
    const states = [10, 20];
    const log: string[] = [];
    const { hosts } = await twoRankHosts(perRank(states, log));
    const dir = join(tmp(), 'c');
    const outs = await Promise.all(hosts.map((h) => saveAcceleratorState(h, dir)));
    expect(outs).toEqual([dir, dir]);
    expect(log.sort()).toEqual(['save 0', 'save 1']);

    const man = manifestOf(dir);
    expect(man.worldSize).toBe(2);
    expect(Object.keys(man.files).sort()).toEqual(readdirSync(dir).filter((f) => f !== MANIFEST_NAME).sort());
    expect(Object.keys(man.files)).toEqual(expect.arrayContaining(['shard-rank0.json', 'shard-rank1.json', 'random_states_0.json', 'random_states_1.json', 'model.safetensors']));
    for (const f of ['shard-rank0.json', 'shard-rank1.json']) {
      const bytes = readFileSync(join(dir, f));
      expect(man.files[f]).toEqual({ size: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') });
    }
    // What the main process recorded.
    expect(man.contents.participants).toEqual({ 'per-rank': { ranks: 2, by: 0 } });

    states[0] = -1;
    states[1] = -2;
    log.length = 0;
    const results = await Promise.all(hosts.map((h) => loadAcceleratorState(h, dir)));
    expect(results.map((r) => r.warnings)).toEqual([[], []]);
    expect(states).toEqual([10, 20]);
    expect(log.sort()).toEqual(['apply 0', 'apply 1', 'read 0 saved by 2 recorded={"ranks":2,"by":0}', 'read 1 saved by 2 recorded={"ranks":2,"by":0}']);
  });

  it("a read that fails on rank 1 fails the load on both ranks before either applies anything", async () => {
    const states = [10, 20];
    const log: string[] = [];
    const failing = { ...perRank(states, log), read: perRank(states, log, { failReadOn: 1 }).read };
    const { hosts, model } = await twoRankHosts(failing);
    const dir = join(tmp(), 'c');
    await Promise.all(hosts.map((h) => saveAcceleratorState(h, dir)));
    states[0] = -1;
    states[1] = -2;
    model.a.data[0] = 123; // the model would be restored first: it must not be
    log.length = 0;
    const settled = await Promise.allSettled(hosts.map((h) => loadAcceleratorState(h, dir)));
    expect(settled.map((s) => s.status)).toEqual(['rejected', 'rejected']);
    expect(String((settled[0] as PromiseRejectedResult).reason)).toMatch(/loadState failed on rank 1: per-rank: rank 1's shard does not fit/);
    expect(String((settled[1] as PromiseRejectedResult).reason)).toMatch(/per-rank: rank 1's shard does not fit/);
    expect(states).toEqual([-1, -2]);
    expect(model.a.item()).toBe(123);
    expect(log.filter((l) => l.startsWith('apply'))).toEqual([]);
  });

  it('two ranks writing the same file, or a rank whose file the main process does not see, fail the save (nothing committed)', async () => {
    const root = tmp();
    {
      const { hosts } = await twoRankHosts(perRank([1, 2], [], { sameFile: true }));
      const settled = await Promise.allSettled(hosts.map((h) => saveAcceleratorState(h, join(root, 'same'))));
      expect(settled.map((s) => s.status)).toEqual(['rejected', 'rejected']);
      // Rank 1's write finds rank 0's file (or the other way round); either way the save fails on both.
      expect(String((settled[0] as PromiseRejectedResult).reason)).toMatch(/shard\.json|both wrote/);
    }
    await AcceleratorState.resetState();
    {
      const { hosts } = await twoRankHosts(perRank([1, 2], [], { vanishOn: 1 }));
      const settled = await Promise.allSettled(hosts.map((h) => saveAcceleratorState(h, join(root, 'vanish'))));
      expect(settled.map((s) => s.status)).toEqual(['rejected', 'rejected']);
      expect(String((settled[0] as PromiseRejectedResult).reason)).toMatch(/rank 1 wrote shard-rank1\.json, but the main process does not find it .*same file system/);
    }
    expect(readdirSync(root)).toEqual([]);
  });
});
