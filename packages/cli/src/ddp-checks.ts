/**
 * The DDP gradient-synchronisation checks of `accelerate test` (Accelerate's
 * test_sync): inside `noSync` and on non-sync steps of `accumulate` every rank
 * keeps its own gradients, which differ between ranks; after a synchronised
 * backward they are equal on every rank and are the average of the ranks'
 * accumulated gradients. They need `@accelerate/backend-libtorch` (loaded
 * dynamically: the CLI does not depend on it) and several processes.
 * @module
 */
import { Accelerator, DataLoader } from '@accelerate/core';

/** One check's outcome: `ok`, with a detail (or the reason it was skipped), or the failure. */
export interface DdpCheckResult {
  name: string;
  ok: boolean;
  detail: string;
}

// The few libtorch calls the checks need (the package is an optional peer).
interface TorchTensor {
  dataSync(): ArrayLike<number>;
  backward(): void;
}
interface TorchParameter extends TorchTensor {
  grad: TorchTensor | null;
}
interface TorchModule {
  forward(x: TorchTensor): TorchTensor;
  parameters(): TorchParameter[];
  zeroGrad(setToNone?: boolean): void;
}
interface Torch {
  nn: { Linear: new (inFeatures: number, outFeatures: number) => TorchModule; functional: { mseLoss(a: TorchTensor, b: TorchTensor): TorchTensor } };
  tensor(data: number[][]): TorchTensor;
  manualSeed(seed: number): void;
}

class CheckFailed extends Error {}

const TOLERANCE = 1e-5;
const close = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((v, i) => Math.abs(v - b[i]!) <= TOLERANCE * Math.max(1, Math.abs(b[i]!)));
const show = (g: readonly number[]) => `[${g.map((v) => Number(v.toPrecision(6))).join(', ')}]`;

/** Gradients of a Linear(1, 1) (weight, bias) for mean-squared error on one sample, times `scale`. */
function localGrad(model: TorchModule, x: number, y: number, scale: number): number[] {
  const [w, b] = model.parameters().map((p) => p.dataSync()[0]!);
  const r = w! * x + b! - y;
  return [2 * r * x * scale, 2 * r * scale];
}

function gradsOf(model: TorchModule): number[] {
  return model.parameters().map((p) => {
    if (!p.grad) throw new CheckFailed('a parameter has no gradient after backward');
    return p.grad.dataSync()[0]!;
  });
}

/** Every pair of ranks holds different gradients (no synchronisation happened). */
function expectDiffer(what: string, all: number[][]): void {
  for (let a = 0; a < all.length; a++) {
    for (let b = a + 1; b < all.length; b++) {
      if (close(all[a]!, all[b]!)) {
        throw new CheckFailed(`${what}: ranks ${a} and ${b} hold the same gradients ${show(all[a]!)}; they must differ, since gradient synchronisation should be off`);
      }
    }
  }
}

/** Every rank holds exactly the same gradients, the average of `local` (each rank's own). */
function expectSynced(what: string, all: number[][], local: number[][]): void {
  const mean = local[0]!.map((_, i) => local.reduce((s, g) => s + g[i]!, 0) / local.length);
  for (const [r, g] of all.entries()) {
    if (g.some((v, i) => v !== all[0]![i])) throw new CheckFailed(`${what}: rank ${r} holds ${show(g)} but rank 0 holds ${show(all[0]!)}; synchronised gradients must be identical`);
    if (!close(g, mean)) throw new CheckFailed(`${what}: rank ${r} holds ${show(g)}, not the average of the ranks' gradients ${show(mean)}`);
  }
}

/**
 * Run the DDP checks on every rank (all ranks must call it: it uses collectives).
 * Skipped (ok, with the reason) on one process or without the libtorch backend.
 */
export async function ddpSyncChecks(accelerator: Accelerator): Promise<DdpCheckResult[]> {
  await accelerator.ready();
  const names = ['DDP noSync', 'DDP accumulate (GA = 2)'];
  const skip = (why: string) => names.map((name) => ({ name, ok: true, detail: `skipped: ${why}` }));
  if (!accelerator.useDistributed) return skip('one process');
  if (accelerator.backend.name !== 'libtorch') return skip(`backend ${accelerator.backend.name}; the check uses @accelerate/backend-libtorch`);
  const specifier = '@accelerate/backend-libtorch';
  let torch: Torch;
  try {
    torch = (await import(specifier)) as Torch;
  } catch (e) {
    return skip(`@accelerate/backend-libtorch could not be loaded (${(e as Error).message})`);
  }
  const p = accelerator.processIndex;
  const P = accelerator.numProcesses;
  const results: DdpCheckResult[] = [];
  const run = async (name: string, body: () => Promise<string>) => {
    try {
      results.push({ name, ok: true, detail: await body() });
    } catch (e) {
      results.push({ name, ok: false, detail: e instanceof CheckFailed ? e.message : String((e as Error).stack ?? e) });
    }
  };
  const mse = (model: TorchModule, x: number, y: number) => torch.nn.functional.mseLoss(model.forward(torch.tensor([[x]])), torch.tensor([[y]]));

  await run(names[0]!, async () => {
    torch.manualSeed(0);
    const [model] = await accelerator.prepare(new torch.nn.Linear(1, 1));
    // Each rank's own sample: rank p fits (p + 1) -> -(p + 1), then (p + 2) -> 1.
    const first = localGrad(model, p + 1, -(p + 1), 1);
    await accelerator.noSync(model, () => accelerator.backward(mse(model, p + 1, -(p + 1))));
    const inside = gradsOf(model);
    if (!close(inside, first)) throw new CheckFailed(`inside noSync rank ${p} holds ${show(inside)}, not its own gradient ${show(first)}`);
    expectDiffer('inside noSync', await accelerator.gatherObject([inside]));
    const accumulated = localGrad(model, p + 2, 1, 1).map((g, i) => g + first[i]!);
    await accelerator.backward(mse(model, p + 2, 1));
    expectSynced('after a synchronised backward', await accelerator.gatherObject([gradsOf(model)]), await accelerator.gatherObject([accumulated]));
    model.zeroGrad();
    return `gradients differ on ${P} ranks inside noSync, equal their average after sync`;
  });

  await run(names[1]!, async () => {
    const acc = new Accelerator({ gradientAccumulationSteps: 2 });
    try {
      await acc.ready();
      torch.manualSeed(0);
      // 4 batches of one sample per rank: sync on the 2nd and 4th
      const [model, loader] = await acc.prepare(new torch.nn.Linear(1, 1), new DataLoader(Array.from({ length: 4 * P }, (_, i) => i), { batchSize: 1 }));
      const backend = acc.backend;
      let accumulated = [0, 0];
      const syncs: boolean[] = [];
      for await (const batch of loader as AsyncIterable<unknown>) {
        const x = backend.toHost(batch).toArray()[0]! + 1;
        accumulated = localGrad(model, x, -x, 1 / 2).map((g, i) => g + accumulated[i]!);
        await acc.accumulate(model, () => acc.backward(mse(model, x, -x)));
        syncs.push(acc.syncGradients);
        const all = await acc.gatherObject([gradsOf(model)]);
        if (acc.syncGradients) {
          expectSynced(`accumulate step ${syncs.length} (sync)`, all, await acc.gatherObject([accumulated]));
          model.zeroGrad();
          accumulated = [0, 0];
        } else {
          expectDiffer(`accumulate step ${syncs.length} (no sync)`, all);
        }
      }
      if (syncs.join() !== 'false,true,false,true') throw new CheckFailed(`syncGradients per step was ${syncs.join(', ')}; expected false, true, false, true`);
      return 'gradients differ on non-sync steps, equal their average on sync steps';
    } finally {
      acc.gradientAccumulationSteps = 1; // the gradient state is shared with the other checks
    }
  });
  return results;
}
