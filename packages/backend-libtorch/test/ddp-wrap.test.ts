// The DDP wrapper's contract on a one-rank gloo group (in this process): the proxy,
// unwrap, options, no-sync bookkeeping, compression and the group's sequence numbers.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as torch from '../src/index.js';
import { freePort } from './fixtures/spawn-ranks.js';

const { nn } = torch;
let pg: torch.GlooProcessGroup;
const backend = new torch.LibtorchBackend();

beforeAll(async () => {
  pg = await torch.GlooProcessGroup.init({ rank: 0, worldSize: 1, masterAddr: '127.0.0.1', masterPort: await freePort(), timeoutMs: 20_000 });
});
afterAll(async () => {
  await pg.destroy();
});

class Net extends nn.Module {
  fc1 = new nn.Linear(3, 4);
  fc2 = new nn.Linear(4, 2);
  #calls = 0; // a #private field: methods must run on the module, not the proxy
  forward(x: torch.Tensor): torch.Tensor {
    this.#calls++;
    return this.fc2.forward(this.fc1.forward(x).relu());
  }
  calls(): number {
    return this.#calls;
  }
}

describe('wrapDistributed', () => {
  it('returns a proxy that is the model for users, and unwrapModel gives back the original', () => {
    const net = new Net();
    const m = backend.dataParallel.wrap(net, pg, {}) as Net;
    expect(m).not.toBe(net);
    expect(m).toBeInstanceOf(Net);
    expect(m).toBeInstanceOf(nn.Module);
    expect(m.fc1).toBe(net.fc1);
    expect(m.parameters()).toEqual(net.parameters());
    expect(Object.keys(m.stateDict())).toEqual(['fc1.weight', 'fc1.bias', 'fc2.weight', 'fc2.bias']);
    torch.tidy(() => m.forward(torch.ones([2, 3])));
    expect(m.calls()).toBe(1);
    m.train(false);
    expect(net.training).toBe(false);
    expect(backend.dataParallel.unwrap(m)).toBe(net);
    expect(torch.isDistributed(m)).toBe(true);
    // wrapping again (either object) is a no-op
    expect(backend.dataParallel.wrap(net, pg, {})).toBe(m);
    expect(backend.dataParallel.wrap(m, pg, {})).toBe(m);
  });

  it('averages only after a forward through the proxy with sync on and grad mode on', () => {
    const net = new Net();
    const m = backend.dataParallel.wrap(net, pg, {}) as Net;
    const x = torch.ones([2, 3]);
    const step = (f: () => torch.Tensor) => torch.tidy(() => f().sum().backward());
    step(() => m.forward(x));
    expect(torch.ddpInfo(m).reductions).toBe(1);
    step(() => net.forward(x)); // the unwrapped module never syncs
    expect(torch.ddpInfo(m).reductions).toBe(1);
    backend.dataParallel.setGradientSync(m, false);
    expect(torch.ddpInfo(m).sync).toBe(false);
    step(() => m.forward(x));
    expect(torch.ddpInfo(m).reductions).toBe(1);
    torch.triggerSyncInBackward(m); // Accelerate's trigger_sync_in_backward
    step(() => m.forward(x));
    expect(torch.ddpInfo(m).reductions).toBe(2);
    backend.dataParallel.setGradientSync(m, true);
    step(() => m.forward(x));
    expect(torch.ddpInfo(m).reductions).toBe(3);
    expect(torch.ddpInfo(m).bucketsLaunchedDuringBackward).toBe(3);
  });

  it('one rank: averaged gradients equal local ones; fp16 compression rounds them to half precision', () => {
    torch.manualSeed(3);
    const plain = new Net();
    const exact = new Net();
    const half = new Net();
    exact.loadStateDict(plain.stateDict());
    half.loadStateDict(plain.stateDict());
    const x = torch.randn([5, 3]);
    const we = backend.dataParallel.wrap(exact, pg, {});
    const wh = backend.dataParallel.wrap(half, pg, { commHook: 'fp16' });
    for (const m of [plain, we, wh]) torch.tidy(() => m.forward(x).pow(2).sum().backward());
    const g = (m: torch.nn.Module) => m.parameters().map((p) => Array.from(p.grad!.dataSync() as Float32Array));
    expect(g(exact)).toEqual(g(plain));
    const rounded = g(plain).map((a) => a.map((v) => torch.tensor([v]).to({ dtype: 'float16' }).float().item() as number));
    expect(g(half)).toEqual(rounded);
    expect(g(half)).not.toEqual(g(plain));
  });

  it('rejects unknown options, bad values, unsupported hooks and foreign groups with messages naming them', () => {
    expect(() => backend.dataParallel.wrap(new Net(), pg, { bucketCapMB: 25 })).toThrow(/unknown option 'bucketCapMB'.*bucketCapMb/);
    expect(() => backend.dataParallel.wrap(new Net(), pg, { bucketCapMb: 0 })).toThrow(/bucketCapMb must be a positive number of MiB, got 0/);
    expect(() => backend.dataParallel.wrap(new Net(), pg, { commHook: 'power_sgd' })).toThrow(/commHook 'power_sgd' is not implemented/);
    const foreign = { rank: 0, size: 1, backend: 'mpi' } as unknown as torch.GlooProcessGroup;
    expect(() => backend.dataParallel.wrap(new Net(), foreign, {})).toThrow(/got a 'mpi' group/);
    expect(() => torch.ddpInfo(new Net())).toThrow(/not wrapped for data parallelism/);
  });

  it('buckets follow bucketCapMb: reverse registration order, the first one capped at 1 MiB', () => {
    const big = new nn.Sequential(new nn.Linear(512, 512), new nn.Linear(512, 512), new nn.Linear(512, 8));
    const m = backend.dataParallel.wrap(big, pg, { bucketCapMb: 1.5 });
    // 512x512 floats = 1 MiB: the first bucket closes at 1 MiB, later ones at 1.5 MiB
    expect(torch.ddpInfo(m).buckets).toEqual([['2.bias', '2.weight', '1.bias', '1.weight'], ['0.bias', '0.weight']]);
  });
});

describe('GlooProcessGroup sequence numbers', () => {
  it('count collectives (reduceScatter and DDP buckets included) on the group', async () => {
    const before = pg.sequenceNumber();
    await pg.allReduce(torch.ones([2])).wait();
    await pg.barrier().wait();
    await pg.reduceScatter(torch.zeros([1]), [torch.ones([1])]).wait();
    expect(pg.sequenceNumber()).toBe(before + 3);
    const m = backend.dataParallel.wrap(new Net(), pg, {}); // model check + state broadcast
    expect(pg.sequenceNumber()).toBe(before + 5);
    torch.tidy(() => m.forward(torch.ones([1, 3])).sum().backward()); // one bucket
    expect(pg.sequenceNumber()).toBe(before + 6);
  });

  it('init rejects a timeout that is not a positive number', async () => {
    await expect(torch.GlooProcessGroup.init({ rank: 0, worldSize: 1, masterAddr: '127.0.0.1', masterPort: 1, timeoutMs: -5 })).rejects.toThrow(
      /timeoutMs must be a positive number of milliseconds, got -5/,
    );
  });
});
