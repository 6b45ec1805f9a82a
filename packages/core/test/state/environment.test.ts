import { describe, it, expect } from 'vitest';
import { detectWorld, firstSlurmHost, EnvironmentError } from '../../src/state/environment.js';

describe('detectWorld', () => {
  it('is a single process with no launcher variables', () => {
    const w = detectWorld({}, 8);
    expect(w).toMatchObject({ rank: 0, worldSize: 1, localRank: 0, localWorldSize: 1, numMachines: 1, source: 'single', masterPort: 29500, suggestedThreads: 8 });
    expect(w.masterAddr).toBeUndefined();
  });

  it('reads torchrun / accelerate launch variables and divides threads among local ranks', () => {
    const w = detectWorld({ RANK: '3', WORLD_SIZE: '4', LOCAL_RANK: '1', LOCAL_WORLD_SIZE: '2', MASTER_ADDR: '10.0.0.1', MASTER_PORT: '1234' }, 8);
    expect(w).toMatchObject({ rank: 3, worldSize: 4, localRank: 1, localWorldSize: 2, machineRank: 1, numMachines: 2, masterAddr: '10.0.0.1', masterPort: 1234, source: 'torchrun', suggestedThreads: 4 });
    expect(w.readFrom).toMatchObject({ RANK: '3', WORLD_SIZE: '4', LOCAL_RANK: '1' });
  });

  it('defaults MASTER_ADDR to loopback on one machine', () => {
    const w = detectWorld({ RANK: '1', WORLD_SIZE: '2', LOCAL_RANK: '1' }, 2);
    expect(w.masterAddr).toBe('127.0.0.1');
    expect(w.localWorldSize).toBe(2);
    expect(w.suggestedThreads).toBe(1);
  });

  it('reads Open MPI variables', () => {
    const w = detectWorld({ OMPI_COMM_WORLD_RANK: '5', OMPI_COMM_WORLD_SIZE: '8', OMPI_COMM_WORLD_LOCAL_RANK: '1', OMPI_COMM_WORLD_LOCAL_SIZE: '4' }, 4);
    expect(w).toMatchObject({ rank: 5, worldSize: 8, localRank: 1, localWorldSize: 4, machineRank: 1, numMachines: 2, source: 'mpi' });
  });

  it('reads MPICH / Intel MPI PMI variables', () => {
    const w = detectWorld({ PMI_RANK: '2', PMI_SIZE: '3', MPI_LOCALRANKID: '2', MPI_LOCALNRANKS: '3' }, 6);
    expect(w).toMatchObject({ rank: 2, worldSize: 3, localRank: 2, localWorldSize: 3, numMachines: 1, source: 'mpi', masterAddr: '127.0.0.1' });
  });

  it('reads SLURM srun variables and takes the first node as rendezvous host', () => {
    const w = detectWorld({ SLURM_PROCID: '6', SLURM_NTASKS: '8', SLURM_LOCALID: '2', SLURM_NODEID: '1', SLURM_TASKS_PER_NODE: '4(x2)', SLURM_JOB_NODELIST: 'gpu[07-08]' }, 16);
    expect(w).toMatchObject({ rank: 6, worldSize: 8, localRank: 2, localWorldSize: 4, machineRank: 1, numMachines: 2, masterAddr: 'gpu07', source: 'slurm' });
  });

  it('prefers torchrun variables over MPI and SLURM ones', () => {
    const w = detectWorld({ RANK: '0', WORLD_SIZE: '2', LOCAL_RANK: '0', OMPI_COMM_WORLD_SIZE: '4', SLURM_PROCID: '1', SLURM_NTASKS: '2' }, 2);
    expect(w.source).toBe('torchrun');
    expect(w.worldSize).toBe(2);
  });

  it('parses SLURM node lists', () => {
    expect(firstSlurmHost('node[03-05,07],gpu1')).toBe('node03');
    expect(firstSlurmHost('host1,host2')).toBe('host1');
    expect(firstSlurmHost('single')).toBe('single');
  });

  it('names the variable and value of a malformed number', () => {
    expect(() => detectWorld({ WORLD_SIZE: 'two' })).toThrow(EnvironmentError);
    expect(() => detectWorld({ WORLD_SIZE: 'two' })).toThrow('Environment variable WORLD_SIZE="two" is not a whole number >= 1');
  });

  it('rejects a rank outside the world', () => {
    expect(() => detectWorld({ RANK: '2', WORLD_SIZE: '2' })).toThrow('RANK gives rank 2 but the world size is 2');
  });

  it('requires MASTER_ADDR for a multi-machine run', () => {
    expect(() => detectWorld({ RANK: '0', WORLD_SIZE: '4', LOCAL_RANK: '0', LOCAL_WORLD_SIZE: '2' })).toThrow(
      /spans 2 machines but MASTER_ADDR is not set/,
    );
  });

  it('rejects worlds that are not a multiple of the per-machine count', () => {
    expect(() => detectWorld({ RANK: '0', WORLD_SIZE: '3', LOCAL_RANK: '0', LOCAL_WORLD_SIZE: '2', MASTER_ADDR: 'h' })).toThrow(
      'World size 3 is not a multiple of the 2 processes per machine',
    );
  });
});
