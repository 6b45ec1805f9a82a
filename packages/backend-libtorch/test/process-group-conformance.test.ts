// c10d gloo passes core's process-group conformance suite: every rank of a
// world in this one process (collectives are issued synchronously and awaited
// later, so one event loop drives them all), on host arrays and on tensors.
import { describe, it, expect } from 'vitest';
import { runProcessGroupConformance } from '@accelerate/core/testing';
import { GlooProcessGroup, tensor, type Tensor } from '../src/index.js';
import { freePort } from './fixtures/spawn-ranks.js';

runProcessGroupConformance<Tensor>(
  { describe, it, expect },
  {
    name: 'gloo',
    createGroups: async (size) => {
      const port = await freePort();
      return Promise.all(
        Array.from({ length: size }, (_, rank) => GlooProcessGroup.init({ rank, worldSize: size, masterAddr: '127.0.0.1', masterPort: port, timeoutMs: 30_000 })),
      );
    },
    tensors: {
      make: (values) => tensor(values),
      read: (t) => Array.from(t.dataSync() as Float32Array),
    },
  },
);
