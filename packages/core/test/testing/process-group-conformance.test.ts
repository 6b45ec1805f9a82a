import { describe, expect, it } from 'vitest';
import { createInMemoryGroups } from '../../src/testing/in-memory-group.js';
import { runProcessGroupConformance } from '../../src/testing/process-group-conformance.js';
import { collectSuite, failingNames } from './collect-suite.js';
import type { ProcessGroup } from '../../src/interfaces/process-group.js';

// Core's in-memory group passes the whole suite.
runProcessGroupConformance({ describe, it, expect }, { name: 'in-memory', createGroups: async (size) => createInMemoryGroups(size) });

/** Run the suite's tests against `createGroups` and return the names of those that failed. */
const failures = (createGroups: (size: number) => Promise<ProcessGroup[]>) =>
  failingNames(collectSuite((api) => runProcessGroupConformance(api, { name: 'broken', createGroups, sizes: [2] })));

describe('the process-group suite catches broken groups', () => {
  it('a max that sums, and a broadcast from the wrong rank, fail exactly their tests', async () => {
    const failed = await failures(async (size) =>
      createInMemoryGroups(size).map((g) => {
        const allReduce = g.allReduce.bind(g);
        const broadcast = g.broadcast.bind(g);
        return Object.assign(g, {
          allReduce: (data: never, op?: never) => allReduce(data, (op === 'max' ? 'sum' : op) as never),
          broadcast: (data: never) => broadcast(data, 0),
        });
      }) as unknown as ProcessGroup[],
    );
    expect(failed.sort()).toEqual([
      'process group conformance: broken > 2 ranks > allReduce(max) on float32, float64 and int32 host arrays',
      'process group conformance: broken > 2 ranks > broadcast copies the source rank\'s values everywhere',
    ]);
  });
});
