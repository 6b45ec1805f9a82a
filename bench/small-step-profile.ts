/**
 * Per-step overhead profile of the small model (MLP 64-256-4, batch 128, AdamW) on libtorch:
 * one loop only per process, so `node --cpu-prof` shows where the Accelerator loop's extra time
 * goes compared with the raw loop (same data path as bench/mlp-step.ts `small-paired`).
 *
 *   node --cpu-prof --cpu-prof-dir=/tmp/prof --import tsx bench/small-step-profile.ts acc 20000
 *   node --cpu-prof --cpu-prof-dir=/tmp/prof --import tsx bench/small-step-profile.ts raw 20000
 *   node --cpu-prof --cpu-prof-dir=/tmp/prof --import tsx bench/small-step-profile.ts paired 20000   (both, alternating blocks)
 *
 * Prints steps/s and CPU µs per step of the timed part.
 */
const mode = process.argv[2] ?? "acc";
const STEPS = Number(process.argv[3] ?? 10000);
const BATCH = 128;
const [nIn, nHid, nOut] = [64, 256, 4];

async function main(): Promise<void> {
  const torch = await import("@accelerate/backend-libtorch");
  const { nn, optim } = torch;
  torch.setNumThreads(1);
  let seed = 12345;
  const rand = () =>
    (seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32;
  const rows = Array.from({ length: 128 * 16 }, () => ({
    x: Float32Array.from({ length: nIn }, () => rand() * 2 - 1),
    y: Math.floor(rand() * nOut),
  }));
  torch.manualSeed(0);
  const net = new nn.Sequential(
    new nn.Linear(nIn, nHid),
    new nn.ReLU(),
    new nn.Linear(nHid, nOut)
  );
  const optimizer = new optim.AdamW(net.parameters(), { lr: 1e-3 });
  let rawStep: () => unknown = () => undefined;
  let accStep: () => unknown = () => undefined;
  // The raw loop over a given model (`rawraw` pairs two raw loops: the noise floor of the pairing).
  const makeRaw = (
    net: InstanceType<typeof nn.Sequential>,
    optimizer: InstanceType<typeof optim.AdamW>
  ) => {
    let next = 0;
    return function rawStep() {
      if (next + BATCH > rows.length) next = 0;
      const xs = new Float32Array(BATCH * nIn);
      const ys = new BigInt64Array(BATCH);
      for (let r = 0; r < BATCH; r++) {
        xs.set(rows[next + r].x, r * nIn);
        ys[r] = BigInt(rows[next + r].y);
      }
      next += BATCH;
      const x = torch.fromTypedArray(xs, [BATCH, nIn]);
      const y = torch.fromTypedArray(ys, [BATCH]);
      torch.tidy(() => {
        const loss = nn.functional.crossEntropy(net.forward(x), y);
        loss.backward();
        optimizer.step();
        optimizer.zeroGrad();
        loss.item();
      });
      x.dispose();
      y.dispose();
    };
  };
  if (mode === "raw" || mode === "paired" || mode === "rawraw")
    rawStep = makeRaw(net, optimizer);
  if (mode === "rawraw") {
    torch.manualSeed(0);
    const net2 = new nn.Sequential(
      new nn.Linear(nIn, nHid),
      new nn.ReLU(),
      new nn.Linear(nHid, nOut)
    );
    accStep = makeRaw(net2, new optim.AdamW(net2.parameters(), { lr: 1e-3 }));
  }
  if (mode === "acc" || mode === "paired") {
    // Its own copy of the model (the raw loop keeps `net`), same seed.
    torch.manualSeed(0);
    const net = new nn.Sequential(
      new nn.Linear(nIn, nHid),
      new nn.ReLU(),
      new nn.Linear(nHid, nOut)
    );
    const optimizer = new optim.AdamW(net.parameters(), { lr: 1e-3 });
    const { Accelerator, DataLoader } = await import("@accelerate/core");
    const accelerator = new Accelerator({
      backend: torch.libtorch(),
      configFile: false,
      env: {},
    });
    type B = {
      x: InstanceType<typeof torch.Tensor>;
      y: InstanceType<typeof torch.Tensor>;
    };
    const [m, opt, loader] = await accelerator.prepare(
      net,
      optimizer,
      new DataLoader<(typeof rows)[number], B>(rows, { batchSize: BATCH })
    );
    let it = loader[Symbol.asyncIterator]();
    accStep = async function accStep() {
      let r = await it.next();
      if (r.done) {
        it = loader[Symbol.asyncIterator]();
        r = await it.next();
      }
      const b = r.value as B;
      await accelerator.accumulate(m, () =>
        torch.tidy(() => {
          const loss = nn.functional.crossEntropy(m.forward(b.x), b.y);
          accelerator.backward(loss);
          opt.step();
          opt.zeroGrad();
          loss.item();
        })
      );
      torch.dispose(b);
    };
  }
  if (mode === "mix-data" || mode === "mix-step") {
    // Decomposition: raw vs a loop that takes only the data path (mix-data: the prepared loader feeds
    // the raw step) or only the training step (mix-step: hand-built batches through accumulate /
    // backward / the prepared optimizer) from the Accelerator loop.
    rawStep = makeRaw(net, optimizer);
    torch.manualSeed(0);
    const net2 = new nn.Sequential(
      new nn.Linear(nIn, nHid),
      new nn.ReLU(),
      new nn.Linear(nHid, nOut)
    );
    const opt2 = new optim.AdamW(net2.parameters(), { lr: 1e-3 });
    const { Accelerator, DataLoader } = await import("@accelerate/core");
    const accelerator = new Accelerator({
      backend: torch.libtorch(),
      configFile: false,
      env: {},
    });
    type B = {
      x: InstanceType<typeof torch.Tensor>;
      y: InstanceType<typeof torch.Tensor>;
    };
    const [m, opt, loader] = await accelerator.prepare(
      net2,
      opt2,
      new DataLoader<(typeof rows)[number], B>(rows, { batchSize: BATCH })
    );
    let it = loader[Symbol.asyncIterator]();
    let next = 0;
    const getBatch = async (): Promise<B> => {
      if (mode === "mix-data") {
        let r = await it.next();
        if (r.done) {
          it = loader[Symbol.asyncIterator]();
          r = await it.next();
        }
        return r.value as B;
      }
      if (next + BATCH > rows.length) next = 0;
      const xs = new Float32Array(BATCH * nIn);
      const ys = new BigInt64Array(BATCH);
      for (let r = 0; r < BATCH; r++) {
        xs.set(rows[next + r].x, r * nIn);
        ys[r] = BigInt(rows[next + r].y);
      }
      next += BATCH;
      return {
        x: torch.fromTypedArray(xs, [BATCH, nIn]),
        y: torch.fromTypedArray(ys, [BATCH]),
      };
    };
    accStep = async function accStep() {
      const b = await getBatch();
      if (mode === "mix-data") {
        torch.tidy(() => {
          const loss = nn.functional.crossEntropy(net2.forward(b.x), b.y);
          loss.backward();
          opt2.step();
          opt2.zeroGrad();
          loss.item();
        });
      } else {
        await accelerator.accumulate(m, () =>
          torch.tidy(() => {
            const loss = nn.functional.crossEntropy(m.forward(b.x), b.y);
            accelerator.backward(loss);
            opt.step();
            opt.zeroGrad();
            loss.item();
          })
        );
      }
      b.x.dispose();
      b.y.dispose();
    };
  }
  const loops =
    mode === "paired" ||
    mode === "rawraw" ||
    mode === "mix-data" ||
    mode === "mix-step" ||
    mode === "rawraw"
      ? { raw: rawStep, acc: accStep }
      : mode === "raw"
      ? { raw: rawStep }
      : { acc: accStep };
  for (const f of Object.values(loops)) for (let i = 0; i < 200; i++) await f();
  // Blocks of 50 steps alternate between the loops (the order flips every round).
  const BLOCK = 50;
  const wall: Record<string, number> = {};
  const cpu: Record<string, number> = {};
  const names = Object.keys(loops) as Array<keyof typeof loops>;
  for (let r = 0; r < STEPS / BLOCK; r++) {
    for (const n of r % 2 ? [...names].reverse() : names) {
      const f = loops[n]!;
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      for (let i = 0; i < BLOCK; i++) await f();
      wall[n] = (wall[n] ?? 0) + performance.now() - t0;
      const c = process.cpuUsage(c0);
      cpu[n] = (cpu[n] ?? 0) + c.user + c.system;
    }
  }
  for (const n of names)
    console.log(
      `${n}: ${(STEPS / (wall[n] / 1000)).toFixed(0)} steps/s, wall ${(
        (wall[n] * 1000) /
        STEPS
      ).toFixed(1)} µs/step, CPU ${(cpu[n] / STEPS).toFixed(1)} µs/step`
    );
}
main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
