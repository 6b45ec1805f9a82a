/**
 * Train a small CNN on real MNIST digits with accelerate-ts and libtorch.
 *
 *   npm run mnist -- --epochs 3 --batch-size 64 --mixed-precision bf16 --out runs/mnist
 *   npx accelerate launch --num_processes 2 examples/mnist/train.ts   (same script, two processes)
 *
 * The `mnist` npm package ships 10,000 labelled 28x28 digits. They are split once,
 * after a seeded shuffle, into 8,500 for training and 1,500 held out; the held-out
 * accuracy is printed after every epoch. Everything that concerns devices, processes,
 * gradient accumulation and mixed precision goes through the `Accelerator`, so the
 * loop below is the one you would write for a single CPU.
 */
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { Accelerator, DataLoader, Generator, HostTensor, setSeed, type MixedPrecision } from '@accelerate/core';
import * as torch from '@accelerate/backend-libtorch';
import { ProgressBar } from './progress.js';

const { nn, optim } = torch;
const F = nn.functional;

const USAGE = `Usage: npm run mnist -- [options]
  --epochs N                        passes over the training digits (default 5)
  --batch-size N                    digits per batch and process (default 64)
  --lr X                            AdamW learning rate (default 0.004)
  --mixed-precision no|bf16         autocast the forward pass to bfloat16 (default no)
  --gradient-accumulation-steps N   batches per optimizer update (default 1)
  --seed N                          seed of the split, the initial weights and the order (default 42)
  --threads N                       libtorch threads per process (default: cores / processes)
  --out DIR                         save the trained weights there (model.safetensors)
  --help`;

const { values: args } = parseArgs({
  options: {
    epochs: { type: 'string', default: '5' },
    'batch-size': { type: 'string', default: '64' },
    lr: { type: 'string', default: '0.004' },
    'mixed-precision': { type: 'string', default: 'no' },
    'gradient-accumulation-steps': { type: 'string', default: '1' },
    seed: { type: 'string', default: '42' },
    threads: { type: 'string' },
    out: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
  strict: true,
});
if (args.help) {
  console.log(USAGE);
  process.exit(0);
}

function intArg(name: keyof typeof args, min: number): number {
  const v = Number(args[name]);
  if (!Number.isSafeInteger(v) || v < min) {
    console.error(`--${name} must be a whole number >= ${min}, got ${JSON.stringify(args[name])}.\n\n${USAGE}`);
    process.exit(2);
  }
  return v;
}
const epochs = intArg('epochs', 1);
const batchSize = intArg('batch-size', 1);
const gradientAccumulationSteps = intArg('gradient-accumulation-steps', 1);
const seed = intArg('seed', 0);
const lr = Number(args.lr);
if (!(lr > 0)) {
  console.error(`--lr must be a positive number, got ${JSON.stringify(args.lr)}.`);
  process.exit(2);
}
const mixedPrecision = args['mixed-precision'] as MixedPrecision;
if (mixedPrecision !== 'no' && mixedPrecision !== 'bf16') {
  console.error(`--mixed-precision must be "no" or "bf16" on the CPU, got ${JSON.stringify(mixedPrecision)}.`);
  process.exit(2);
}

// ---- data -------------------------------------------------------------------------

/** One digit: a [1, 28, 28] image in [0, 1] and its label (int64 for crossEntropy). */
interface Sample {
  input: HostTensor;
  target: bigint;
}
/** What a prepared loader yields: the collated HostTensors, moved to the backend. */
interface Batch {
  input: torch.Tensor;
  target: torch.Tensor;
}

const PIXELS = 28 * 28;
const HELD_OUT = 1500;

/** All 10,000 digits of the `mnist` package, split after a shuffle seeded with `seed`. */
function loadMnist(seed: number): { train: Sample[]; heldOut: Sample[] } {
  const digits = createRequire(import.meta.url)('mnist') as Array<{ id: number; length: number; raw: number[] }>;
  const all: Sample[] = [];
  for (const digit of digits) {
    for (let i = 0; i < digit.length; i++) {
      const image = Float32Array.from(digit.raw.slice(i * PIXELS, (i + 1) * PIXELS));
      all.push({ input: new HostTensor(image, [1, 28, 28], 'float32'), target: BigInt(digit.id) });
    }
  }
  const order = new Generator(seed).randperm(all.length);
  const shuffled = order.map((i) => all[i]);
  return { train: shuffled.slice(HELD_OUT), heldOut: shuffled.slice(0, HELD_OUT) };
}

// ---- model ------------------------------------------------------------------------

/** Two Conv-ReLU-MaxPool blocks and a linear classifier: ~20k parameters. */
function makeModel(): torch.nn.Sequential {
  return new nn.Sequential(
    new nn.Conv2d(1, 16, 3, { padding: 1 }),
    new nn.ReLU(),
    new nn.MaxPool2d(2),
    new nn.Conv2d(16, 32, 3, { padding: 1 }),
    new nn.ReLU(),
    new nn.MaxPool2d(2),
    new nn.Flatten(),
    new nn.Linear(32 * 7 * 7, 10),
  );
}

// ---- training ---------------------------------------------------------------------

async function main(): Promise<void> {
  const started = performance.now();
  setSeed(seed);
  const accelerator = await Accelerator.create({ mixedPrecision, gradientAccumulationSteps });
  // Share the cores between the processes of a multi-process launch.
  const threads = args.threads !== undefined ? intArg('threads', 1) : Math.max(1, Math.floor(availableParallelism() / accelerator.numProcesses));
  torch.setNumThreads(threads);
  accelerator.print(
    `accelerate-ts MNIST: ${accelerator.numProcesses} process(es), device ${accelerator.device}, ${threads} thread(s) each, ` +
      `mixed precision ${accelerator.mixedPrecision}, gradient accumulation ${gradientAccumulationSteps}, libtorch ${torch.version}`,
  );

  const { train, heldOut } = loadMnist(seed);
  const trainLoader = new DataLoader<Sample, Batch>(train, { batchSize, shuffle: true, seed });
  const evalLoader = new DataLoader<Sample, Batch>(heldOut, { batchSize: 250 });

  const model = makeModel();
  const optimizer = new optim.AdamW(model.parameters(), { lr, weightDecay: 0.01 });
  // Counted in optimizer updates of one process, as a single-process run would see them.
  const updatesPerEpoch = Math.ceil(trainLoader.length / gradientAccumulationSteps);
  const scheduler = optim.getCosineScheduleWithWarmup(optimizer, Math.min(100, updatesPerEpoch), updatesPerEpoch * epochs);

  const [m, opt, trainData, evalData, sched] = await accelerator.prepare(model, optimizer, trainLoader, evalLoader, scheduler);

  const interactive = accelerator.isMainProcess && process.stdout.isTTY === true;
  let accuracy = 0;
  for (let epoch = 1; epoch <= epochs; epoch++) {
    const epochStart = performance.now();
    m.train();
    const bar = interactive ? new ProgressBar(`epoch ${epoch}/${epochs}`, trainData.length) : undefined;
    let lossSum = 0;
    let batches = 0;
    for await (const batch of trainData) {
      const loss = await accelerator.accumulate(m, () =>
        // tidy frees this step's intermediate tensors at once instead of waiting for GC.
        torch.tidy(() => {
          const l = F.crossEntropy(m.forward(batch.input), batch.target);
          accelerator.backward(l);
          if (accelerator.syncGradients) accelerator.clipGradNorm(m, 1.0);
          opt.step();
          sched.step();
          opt.zeroGrad();
          return l.item();
        }),
      );
      torch.dispose(batch);
      lossSum += loss;
      batches += 1;
      bar?.tick(`loss ${(lossSum / batches).toFixed(4)}`);
    }
    bar?.done();

    accuracy = await evaluate(accelerator, m, evalData);
    const seconds = (performance.now() - epochStart) / 1000;
    accelerator.print(
      `epoch ${epoch}/${epochs}: train loss ${(lossSum / batches).toFixed(4)}, held-out accuracy ${(accuracy * 100).toFixed(2)}% ` +
        `(${HELD_OUT} digits), ${seconds.toFixed(1)} s`,
    );
  }

  if (args.out) {
    const result = await accelerator.saveModel(m, args.out);
    accelerator.print(`saved ${result.files.join(', ')} to ${args.out}`);
  }
  accelerator.print(
    `held-out accuracy ${(accuracy * 100).toFixed(2)}% after ${epochs} epoch(s) in ${((performance.now() - started) / 1000).toFixed(1)} s`,
  );
  await accelerator.endTraining();
}

/** Fraction of held-out digits classified correctly, counted once across all processes. */
async function evaluate(accelerator: Accelerator, model: torch.nn.Module, data: AsyncIterable<Batch>): Promise<number> {
  model.eval();
  let correct = 0;
  let total = 0;
  for await (const batch of data) {
    const predictions = torch.noGrad(() => model.forward(batch.input).argmax(-1));
    const [p, t] = await accelerator.gatherForMetrics([predictions, batch.target]);
    correct += torch.tidy(() => p.eq(t).sum().item());
    total += t.shape[0];
    torch.dispose([predictions, p, t, batch]);
  }
  return correct / total;
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
