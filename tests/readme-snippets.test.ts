/**
 * README snippets that users copy: core's "Saving and loading model weights" block runs as
 * written (saveModel, then loadModelFiles back into a fresh model), and no README calls
 * `accelerator.log(...)` without `await` (it returns a promise).
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from './helpers.js';

const readmes = () => {
  const out = [join(ROOT, 'README.md')];
  for (const p of readdirSync(join(ROOT, 'packages'))) out.push(join(ROOT, 'packages', p, 'README.md'));
  return out.filter((f) => existsSync(f));
};
const tsBlocks = (md: string) => [...md.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]!);

describe('README snippets', () => {
  it('every accelerator.log(...) / tracker .log(...) in a README code block is awaited', () => {
    const bad: string[] = [];
    for (const f of readmes()) {
      for (const block of tsBlocks(readFileSync(f, 'utf8'))) {
        for (const line of block.split('\n')) {
          if (/\b\w+\.log\(/.test(line) && !/console\.log\(/.test(line) && !/\bawait\s+\w+\.log\(/.test(line)) bad.push(`${f}: ${line.trim()}`);
        }
      }
    }
    expect(bad).toEqual([]);
  });

  it("core README documents loadModelFiles next to saveModel, and that snippet runs", () => {
    const md = readFileSync(join(ROOT, 'packages/core/README.md'), 'utf8');
    const section = md.split('## Saving and loading model weights')[1]?.split('\n## ')[0];
    expect(section, 'packages/core/README.md has no "Saving and loading model weights" section').toBeDefined();
    const code = tsBlocks(section!)[0]!;
    expect(code).toMatch(/saveModel\(/);
    expect(code).toMatch(/loadModelFiles\(/);
    // Run it from a folder inside the repository (so @accelerate/* resolve), writing into a temp cwd.
    const work = mkdtempSync(join(tmpdir(), 'readme-snippet-'));
    const file = join(ROOT, `.readme-snippet-${process.pid}.mts`);
    writeFileSync(file, `${code}\nconsole.log('SNIPPET-OK', JSON.stringify(Object.keys(weights).sort()));\n`);
    try {
      const r = spawnSync(join(ROOT, 'node_modules/.bin/tsx'), [file], { cwd: work, encoding: 'utf8', timeout: 120_000, env: { ...process.env, ACCELERATE_CONFIG_FILE: '' } });
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toContain('SNIPPET-OK ["0.bias","0.weight","2.bias","2.weight"]');
      expect(existsSync(join(work, 'out/model/model.safetensors'))).toBe(true);
    } finally {
      rmSync(file, { force: true });
    }
  }, 150_000);
});
