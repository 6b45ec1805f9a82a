import { describe, it, expect, beforeEach } from 'vitest';
import { PartialState } from '../../src/state/partial-state.js';
import { AcceleratorState } from '../../src/state/accelerator-state.js';
import type { ProcessGroupOptions } from '../../src/interfaces/process-group.js';
import { ReferenceBackend, createInMemoryGroups } from '../../src/testing/index.js';
import { getLogger, setLogSink } from '../../src/utils/logging.js';

/** A reference backend that can "join" a process group: rank `rank` of an in-memory group. */
class GroupedBackend extends ReferenceBackend {
  joined: ProcessGroupOptions | undefined;
  readonly communication = {
    initProcessGroup: async (options: ProcessGroupOptions) => {
      this.joined = options;
      return createInMemoryGroups(options.worldSize)[options.rank] as never;
    },
  };
}

beforeEach(async () => {
  await AcceleratorState.resetState();
});

describe('PartialState', () => {
  it('is a plain single process without launcher variables', async () => {
    const s = await PartialState.init({ backend: new ReferenceBackend(), env: {} });
    expect(s).toMatchObject({ distributedType: 'NO', device: 'cpu', numProcesses: 1, processIndex: 0, isMainProcess: true, isLastProcess: true, useDistributed: false });
    expect(s.group).toBeUndefined();
  });

  it('joins the process group with the rendezvous read from the environment (MULTI_CPU)', async () => {
    const backend = new GroupedBackend();
    const s = await PartialState.init({
      backend,
      env: { RANK: '1', WORLD_SIZE: '2', LOCAL_RANK: '1', MASTER_ADDR: '127.0.0.1', MASTER_PORT: '29611' },
      timeoutMs: 5000,
    });
    expect(backend.joined).toEqual({ rank: 1, worldSize: 2, masterAddr: '127.0.0.1', masterPort: 29611, backend: undefined, timeoutMs: 5000 });
    expect(s).toMatchObject({ distributedType: 'MULTI_CPU', device: 'cpu', processIndex: 1, localProcessIndex: 1, isMainProcess: false, isLastProcess: true, useDistributed: true });
    expect(s.group?.size).toBe(2);
  });

  it('without timeoutMs, uses ACCELERATE_PROCESS_GROUP_TIMEOUT (seconds) and names it when malformed', async () => {
    const world = { RANK: '0', WORLD_SIZE: '2', LOCAL_RANK: '0', MASTER_ADDR: '127.0.0.1', MASTER_PORT: '29611' };
    const backend = new GroupedBackend();
    await PartialState.init({ backend, env: { ...world, ACCELERATE_PROCESS_GROUP_TIMEOUT: '90' } });
    expect(backend.joined?.timeoutMs).toBe(90_000);
    await AcceleratorState.resetState();
    await expect(PartialState.init({ backend: new GroupedBackend(), env: { ...world, ACCELERATE_PROCESS_GROUP_TIMEOUT: 'soon' } })).rejects.toThrow(
      /ACCELERATE_PROCESS_GROUP_TIMEOUT="soon" is not a positive number of seconds/,
    );
  });

  it('picks the accelerator device of its local rank (MULTI_GPU), or the CPU when asked', async () => {
    const env = { RANK: '3', WORLD_SIZE: '4', LOCAL_RANK: '3', LOCAL_WORLD_SIZE: '4' };
    const gpu = await PartialState.init({ backend: new GroupedBackend({ devices: ['cuda:0', 'cuda:1'] }), env });
    expect(gpu.device).toBe('cuda:1');
    expect(gpu.distributedType).toBe('MULTI_GPU');
    await PartialState.reset();
    const cpu = await PartialState.init({ backend: new GroupedBackend({ devices: ['cuda:0', 'cuda:1'] }), env, cpu: true });
    expect(cpu.device).toBe('cpu');
    expect(cpu.distributedType).toBe('MULTI_CPU');
  });

  it('explains that a backend without process groups cannot run several processes', async () => {
    await expect(PartialState.init({ backend: new ReferenceBackend(), env: { RANK: '0', WORLD_SIZE: '2' } })).rejects.toThrow(
      /This run has 2 processes but the "reference" backend cannot communicate between processes. Install @accelerate\/backend-libtorch/,
    );
  });

  it('returns the same state to concurrent and later callers', async () => {
    const backend = new ReferenceBackend();
    const [a, b] = await Promise.all([PartialState.init({ backend, env: {} }), PartialState.init({ backend, env: {} })]);
    expect(a).toBe(b);
    expect(await PartialState.init({ backend, env: {} })).toBe(a);
  });

  it('refuses cpu=true after a device was chosen, naming the device and the fix', async () => {
    const backend = new ReferenceBackend({ devices: ['cuda:0'] });
    await PartialState.init({ backend, env: {} });
    await expect(PartialState.init({ backend, env: {}, cpu: true })).rejects.toThrow(/already placed this process on cuda:0.*cpu=true/);
  });

  it('feeds rank information to loggers: [RANK p] prefix, main-process-only by default', async () => {
    expect(() => getLogger('t').warning('before')).toThrow();
    await PartialState.init({ backend: new GroupedBackend(), env: { RANK: '1', WORLD_SIZE: '2', LOCAL_RANK: '1' } });
    const seen: string[] = [];
    setLogSink((r) => seen.push(r.message));
    try {
      const log = getLogger('t');
      log.warning('everyone', { mainProcessOnly: false });
      log.warning('main only');
    } finally {
      setLogSink(undefined);
    }
    expect(seen).toEqual(['[RANK 1] everyone']);
  });
});
