/**
 * A small prepared run on the reference backend (model, AdamW, scheduler,
 * loader, a registered counter) for checkpoint tests: `train(n)` runs n
 * batches, `snapshot()` captures everything `loadState` should restore.
 */
import { Accelerator } from '../../src/accelerator/accelerator.js';
import { DataLoader } from '../../src/data/dataloader.js';
import { AdamW, LambdaLR, ReferenceBackend, RegressionDataset, RegressionModel, mseLoss, type RefTensor } from '../../src/testing/index.js';

export type Batch = { x: RefTensor; y: RefTensor };

/** An Accelerator on the reference backend, with no config file and no launcher variables. */
export const makeAccelerator = (opts: ConstructorParameters<typeof Accelerator>[0] = {}) =>
  new Accelerator({ backend: new ReferenceBackend(), configFile: false, env: {}, ...opts });

/** A registered object with a state. */
export class Counter {
  count = 0;
  stateDict() {
    return { count: this.count };
  }
  loadStateDict(s: { count: number }) {
    this.count = s.count;
  }
}

export async function trainedRun(opts: ConstructorParameters<typeof Accelerator>[0] = {}) {
  const acc = makeAccelerator(opts);
  const model = new RegressionModel({ a: 1, b: 2 });
  const opt = new AdamW(model.parameters(), { lr: 0.1 });
  const sched = new LambdaLR(opt, (e) => 0.9 ** e);
  const [m, o, l, s] = await acc.prepare(model, opt, new DataLoader(new RegressionDataset({ length: 16 }), { batchSize: 4 }), sched);
  const counter = new Counter();
  acc.registerForCheckpointing(counter);
  const train = async (n: number) => {
    let k = 0;
    for await (const b of l as AsyncIterable<Batch>) {
      acc.backward(mseLoss(m.forward(b.x), b.y));
      o.step();
      s.step();
      o.zeroGrad();
      counter.count++;
      acc.step++;
      if (++k === n) break;
    }
  };
  const snapshot = () => ({ a: model.a.item(), b: model.b.item(), opt: JSON.stringify(opt.stateDict()), sched: sched.stateDict(), dl: (l as any).stateDict(), count: counter.count, step: acc.step });
  return { acc, train, snapshot };
}
