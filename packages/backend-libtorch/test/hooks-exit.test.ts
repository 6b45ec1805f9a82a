// A process that ends with hooks still registered (gradient-ready hooks on a parameter,
// a checkpointed module) exits cleanly: the native hook state releases its JS functions
// while the environment exists, instead of crashing in exit handlers (SIGSEGV seen with
// FSDP scripts that ended without accelerator.endTraining()).
import { describe, it, expect } from 'vitest';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const entry = fileURLToPath(new URL('../src/index.ts', import.meta.url));
const script = `
import * as torch from ${JSON.stringify(entry)};
const backend = torch.libtorch();
const b = await backend.init();
const model = new torch.nn.Sequential(new torch.nn.Linear(4, 8), new torch.nn.ReLU(), new torch.nn.Linear(8, 2));
for (const p of model.parameters()) b.models.addGradientReadyHook(p, () => {});
b.sharding.checkpointModule(model);
const out = model.forward(torch.randn([3, 4]));
b.sharding.addTensorGradHook(out, () => {});
out.sum().backward();
console.log('done');
`;

describe('exit with hooks registered', () => {
  it('ends with code 0, not a crash in exit handlers', () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
    expect(r.stderr).not.toMatch(/Segmentation|Aborted|core dumped/); // (libtorch 2.x prints deprecation warnings here)
    expect(r.stdout.trim()).toBe('done');
    expect(r.signal).toBeNull();
    expect(r.status).toBe(0);
  });
});
