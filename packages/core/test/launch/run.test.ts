import { describe, it, expect } from 'vitest';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { prepareLaunch, runLaunch } from '../../src/launch/run.js';
import { sink } from './helpers.js';

const lines = join(import.meta.dirname, 'fixtures', 'lines.mjs');
const env = { PATH: process.env.PATH };
const quiet = { numMachines: 1, mixedPrecision: 'no' as const };

async function occupy(): Promise<{ server: Server; port: number }> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, r));
  return { server, port: (server.address() as { port: number }).port };
}

describe('prepareLaunch: choosing the rendezvous port', () => {
  it('one machine: no port or 0 picks a free port; a taken port is replaced by a free one with a warning', async () => {
    const a = await prepareLaunch({ script: lines, numProcesses: 2, ...quiet }, { env });
    expect(a.plan.masterPort).toBeGreaterThan(0);
    expect(a.plan.ranks[0].env.MASTER_PORT).toBe(String(a.plan.masterPort));
    const { server, port } = await occupy();
    try {
      const warnings: string[] = [];
      const b = await prepareLaunch({ script: lines, numProcesses: 2, mainProcessPort: port, ...quiet }, { env, warn: (w) => warnings.push(w) });
      expect(b.plan.masterPort).not.toBe(port);
      expect(warnings).toEqual([`Port ${port} is already in use; launching on the free port ${b.plan.masterPort} instead. Pass another --main_process_port (or 0 to always pick a free one).`]);
      // Several machines: machine 0 hosts the rendezvous and refuses a taken port.
      await expect(
        prepareLaunch({ script: lines, numProcesses: 2, numMachines: 2, mainProcessIp: '127.0.0.1', mainProcessPort: port, mixedPrecision: 'no' }, { env }),
      ).rejects.toThrow(new RegExp(`Port ${port} on this machine \\(machine_rank 0, which hosts the rendezvous\\) is already in use`));
      // Machine 1 only connects to it.
      const m1 = await prepareLaunch({ script: lines, numProcesses: 2, numMachines: 2, machineRank: 1, mainProcessIp: '127.0.0.1', mainProcessPort: port, mixedPrecision: 'no' }, { env });
      expect(m1.plan.masterPort).toBe(port);
      expect(m1.plan.ranks.map((r) => r.rank)).toEqual([1]);
    } finally {
      server.close();
    }
    const multi = await prepareLaunch({ script: lines, numProcesses: 2, numMachines: 2, machineRank: 1, mainProcessIp: '10.0.0.1', mixedPrecision: 'no' }, { env });
    expect(multi.plan.masterPort).toBe(29500);
  });

  it('needs a script; the script is checked before anything else is reported', async () => {
    await expect(prepareLaunch({ numProcesses: 2 }, { env })).rejects.toThrow(/accelerate launch needs a training script/);
    const warnings: string[] = [];
    await expect(prepareLaunch({ script: 'nope.mjs' }, { env, warn: (w) => warnings.push(w) })).rejects.toThrow(/"nope.mjs" does not exist/);
    expect(warnings).toEqual([]);
  });
});

describe('runLaunch', () => {
  it('runs the plan and returns the outcome with the plan', async () => {
    const out = sink();
    const r = await runLaunch({ script: lines, numProcesses: 2, quiet: true, ...quiet }, { env, stdout: out.write, stderr: () => {} });
    expect(r.ok).toBe(true);
    expect(r.plan.localProcesses).toBe(2);
    expect(out.text().split('\n').filter(Boolean).sort()).toEqual([
      'first line of rank 0, finished',
      'first line of rank 1, finished',
      'second line',
      'second line',
    ]);
  });
});
