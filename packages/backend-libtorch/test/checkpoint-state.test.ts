// LibtorchBackend's checkpoint hooks: optimizer and scheduler state as HostTensors + JSON, and
// back into fresh objects so that the next steps are identical.
import { describe, it, expect } from 'vitest';
import { HostTensor } from '@accelerate/core';
import * as torch from '../src/index.js';

const backend = new torch.LibtorchBackend();

function setup(seed: number) {
  torch.manualSeed(seed);
  const model = new torch.nn.Linear(3, 2);
  const opt = new torch.optim.AdamW(model.parameters(), { lr: 0.1 });
  const sched = torch.optim.getLinearScheduleWithWarmup(opt, 2, 10);
  return { model, opt, sched };
}
function step(s: ReturnType<typeof setup>, k: number) {
  const x = torch.tensor([[k, 1, -k], [0.5, k / 2, 2]]);
  const loss = s.model.forward(x).pow(2).mean();
  loss.backward();
  s.opt.step();
  s.sched.step();
  s.opt.zeroGrad();
}
const params = (s: ReturnType<typeof setup>) => s.model.parameters().map((p) => [...(p.dataSync() as Float32Array)]);

describe('LibtorchBackend optimizer / scheduler state dicts', () => {
  it('AdamW state holds HostTensor copies of exp_avg / exp_avg_sq and the PyTorch param_groups keys', () => {
    const a = setup(1);
    step(a, 1);
    const sd = backend.optimizers.stateDict(a.opt) as { state: Record<string, Record<string, unknown>>; param_groups: Array<Record<string, unknown>> };
    expect(Object.keys(sd.state)).toEqual(['0', '1']);
    expect(sd.state[0].exp_avg).toBeInstanceOf(HostTensor);
    expect((sd.state[0].exp_avg as HostTensor).shape).toEqual([2, 3]);
    expect(sd.state[0].step).toBe(1);
    expect(sd.param_groups[0]).toMatchObject({ params: [0, 1], weight_decay: 0.01, betas: [0.9, 0.999] });
    // Copies: the live optimizer keeps working after the host tensors were taken.
    step(a, 2);
    expect((backend.optimizers.stateDict(a.opt) as typeof sd).state[0].step).toBe(2);
  });

  it('loading the state into fresh objects (other seed) makes the next steps identical', () => {
    const a = setup(1);
    for (let k = 1; k <= 3; k++) step(a, k);
    const b = setup(7);
    b.model.loadStateDict(Object.fromEntries(Object.entries(a.model.stateDict()).map(([n, t]) => [n, backend.toHost(t)])));
    backend.optimizers.loadStateDict(b.opt, backend.optimizers.stateDict(a.opt));
    backend.optimizers.loadSchedulerStateDict(b.sched, JSON.parse(JSON.stringify(backend.optimizers.schedulerStateDict(a.sched))));
    expect(b.opt.paramGroups[0].lr).toBe(a.opt.paramGroups[0].lr);
    for (let k = 4; k <= 6; k++) {
      step(a, k);
      step(b, k);
    }
    expect(params(b)).toEqual(params(a));
    expect(b.sched.lastEpoch).toBe(a.sched.lastEpoch);
  });

  it('a malformed state is refused with what was expected', () => {
    const a = setup(1);
    expect(() => backend.optimizers.loadStateDict(a.opt, { nope: 1 })).toThrow(/expected \{ state, param_groups \}/);
  });
});
