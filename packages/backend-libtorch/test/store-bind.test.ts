// Rank 0's rendezvous store listens on loopback only when every rank is on this machine
// (the master address is loopback), so other machines on the network cannot reach it.
// torch >= 2.2 lets the store take over a socket we bind; libtorch 1.13 always listens on
// every interface (skipped there, with the reason).
import { describe, it, expect } from 'vitest';
import { fileURLToPath } from 'node:url';
import { runRanksOk } from './fixtures/spawn-ranks.js';
import { native } from '../src/native.js';

const worker = fileURLToPath(new URL('./fixtures/store-bind-worker.ts', import.meta.url));
const [major, minor] = native.torchVersion.split('.').map(Number) as [number, number];
const canBind = major > 2 || (major === 2 && minor >= 2);
if (!canBind) console.log(`store-bind.test.ts: skipped on libtorch ${native.torchVersion}, whose TCPStore always listens on every interface`);

describe('rendezvous store binding', () => {
  it.skipIf(!canBind)('a one-machine group (master 127.0.0.1): the store port listens on 127.0.0.1 only', async () => {
    const [r0] = await runRanksOk(worker, 2);
    expect(r0!.addresses).toEqual(['127.0.0.1']);
  }, 60_000);
});
