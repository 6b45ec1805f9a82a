/**
 * Who am I? Reads the world (rank, world size, local rank, rendezvous
 * address) from the variables that launchers set: `accelerate launch` and
 * torchrun (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `LOCAL_WORLD_SIZE`,
 * `MASTER_ADDR`, `MASTER_PORT`), MPI (Open MPI `OMPI_COMM_WORLD_*`, MPICH /
 * Intel MPI `PMI_*` + `MPI_LOCAL*`, MVAPICH `MV2_COMM_WORLD_*`) and SLURM's
 * `srun` (`SLURM_PROCID`, `SLURM_NTASKS`, `SLURM_LOCALID`, …).
 * A pure function of the environment, so it is easy to test and to explain.
 * This is the one place that reads these variables: the resolved
 * configuration (`resolveConfig`) takes its world settings from here too.
 * @module
 */
import { availableParallelism } from 'node:os';

/** Which launcher's variables described the world. */
export type WorldSource = 'torchrun' | 'mpi' | 'slurm' | 'single';

/** The world as the environment describes it. */
export interface WorldInfo {
  /** Global rank. */
  rank: number;
  worldSize: number;
  localRank: number;
  localWorldSize: number;
  /** Rank of this machine (node), derived when not given. */
  machineRank: number;
  /** Number of machines (nodes). */
  numMachines: number;
  /** Rendezvous host; undefined only for a single-machine run that did not set it. */
  masterAddr: string | undefined;
  masterPort: number;
  source: WorldSource;
  /** The variables that were read, name -> value, for provenance reports. */
  readFrom: Record<string, string>;
  /** CPU threads each local rank should use when OMP_NUM_THREADS is not set. */
  suggestedThreads: number;
}

/** Thrown when the launcher's variables are inconsistent; names the variable, its value and the fix. */
export class EnvironmentError extends Error {
  override name = 'EnvironmentError';
}

/** Environment variables as `process.env` holds them. */
export type EnvironmentVariables = Readonly<Record<string, string | undefined>>;

/** Default rendezvous port, as torchrun and Accelerate. */
export const DEFAULT_MASTER_PORT = 29500;

function readInt(env: EnvironmentVariables, name: string, readFrom: Record<string, string>, min = 0): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw === '') return undefined;
  const v = Number(raw.trim());
  if (!Number.isInteger(v) || v < min) {
    throw new EnvironmentError(
      `Environment variable ${name}=${JSON.stringify(raw)} is not a whole number >= ${min}. Unset it or set it to the value your launcher intended.`,
    );
  }
  readFrom[name] = raw;
  return v;
}

/** First of `names` that is set, parsed as an integer. */
function firstInt(env: EnvironmentVariables, names: readonly string[], readFrom: Record<string, string>, min = 0): number | undefined {
  for (const n of names) {
    const v = readInt(env, n, readFrom, min);
    if (v !== undefined) return v;
  }
  return undefined;
}

/**
 * First host of a SLURM node list such as `node[03-05,07],gpu1` -> `node03`.
 * Used as the rendezvous host when `MASTER_ADDR` is not set.
 */
export function firstSlurmHost(nodeList: string): string {
  const m = /^([^,[]+)(?:\[([^\]]+)\])?/.exec(nodeList.trim());
  if (!m) return nodeList.trim();
  const prefix = m[1];
  if (!m[2]) return prefix;
  const first = m[2].split(',')[0].split('-')[0];
  return prefix + first;
}

/** Tasks on this node from `SLURM_TASKS_PER_NODE` (`4(x2),3` -> per-node counts). */
function slurmTasksPerNode(spec: string): number[] {
  const out: number[] = [];
  for (const part of spec.split(',')) {
    const m = /^(\d+)(?:\(x(\d+)\))?$/.exec(part.trim());
    if (!m) return [];
    for (let i = 0; i < Number(m[2] ?? 1); i++) out.push(Number(m[1]));
  }
  return out;
}

/**
 * Read the world from `env`. Precedence when several launchers' variables are
 * present: torchrun/`accelerate launch` (`RANK`/`WORLD_SIZE`), then MPI, then
 * SLURM, then a single process.
 */
export function detectWorld(env: EnvironmentVariables = process.env, cpuCount: number = availableParallelism()): WorldInfo {
  const readFrom: Record<string, string> = {};
  let source: WorldSource = 'single';
  let rank: number | undefined;
  let worldSize: number | undefined;
  let localRank: number | undefined;
  let localWorldSize: number | undefined;
  let machineRank: number | undefined;
  let masterAddr = env.MASTER_ADDR || undefined;
  if (masterAddr) readFrom.MASTER_ADDR = masterAddr;

  if (env.WORLD_SIZE !== undefined || env.RANK !== undefined || env.LOCAL_RANK !== undefined) {
    source = 'torchrun';
    rank = readInt(env, 'RANK', readFrom);
    worldSize = readInt(env, 'WORLD_SIZE', readFrom, 1);
    localRank = readInt(env, 'LOCAL_RANK', readFrom);
    localWorldSize = readInt(env, 'LOCAL_WORLD_SIZE', readFrom, 1);
    machineRank = readInt(env, 'GROUP_RANK', readFrom) ?? readInt(env, 'NODE_RANK', readFrom);
  } else if (env.OMPI_COMM_WORLD_SIZE !== undefined || env.PMI_SIZE !== undefined || env.MV2_COMM_WORLD_SIZE !== undefined) {
    source = 'mpi';
    rank = firstInt(env, ['OMPI_COMM_WORLD_RANK', 'PMI_RANK', 'MV2_COMM_WORLD_RANK'], readFrom);
    worldSize = firstInt(env, ['OMPI_COMM_WORLD_SIZE', 'PMI_SIZE', 'MV2_COMM_WORLD_SIZE'], readFrom, 1);
    localRank = firstInt(env, ['OMPI_COMM_WORLD_LOCAL_RANK', 'MPI_LOCALRANKID', 'MV2_COMM_WORLD_LOCAL_RANK'], readFrom);
    localWorldSize = firstInt(env, ['OMPI_COMM_WORLD_LOCAL_SIZE', 'MPI_LOCALNRANKS', 'MV2_COMM_WORLD_LOCAL_SIZE'], readFrom, 1);
    machineRank = readInt(env, 'OMPI_COMM_WORLD_NODE_RANK', readFrom);
  } else if (env.SLURM_PROCID !== undefined && env.SLURM_NTASKS !== undefined) {
    source = 'slurm';
    rank = readInt(env, 'SLURM_PROCID', readFrom);
    worldSize = readInt(env, 'SLURM_NTASKS', readFrom, 1);
    localRank = readInt(env, 'SLURM_LOCALID', readFrom);
    machineRank = readInt(env, 'SLURM_NODEID', readFrom);
    const perNode = env.SLURM_STEP_TASKS_PER_NODE ?? env.SLURM_TASKS_PER_NODE;
    if (perNode) {
      const counts = slurmTasksPerNode(perNode);
      const node = machineRank ?? 0;
      if (counts[node] !== undefined) {
        localWorldSize = counts[node];
        const name = env.SLURM_STEP_TASKS_PER_NODE !== undefined ? 'SLURM_STEP_TASKS_PER_NODE' : 'SLURM_TASKS_PER_NODE';
        readFrom[name] = perNode;
      }
    }
    if (!masterAddr) {
      const list = env.SLURM_STEP_NODELIST ?? env.SLURM_JOB_NODELIST ?? env.SLURM_NODELIST;
      if (list) {
        masterAddr = firstSlurmHost(list);
        readFrom.SLURM_JOB_NODELIST = list;
      }
    }
  }

  worldSize ??= 1;
  rank ??= 0;
  localRank ??= source === 'single' ? 0 : rank % (localWorldSize ?? worldSize);
  localWorldSize ??= source === 'single' ? 1 : Math.min(worldSize, localWorldSize ?? worldSize);

  const varsFor = (what: string) =>
    source === 'torchrun' ? what : source === 'mpi' ? `the MPI ${what} variables` : `SLURM's ${what} variables`;
  if (rank >= worldSize) {
    throw new EnvironmentError(
      `${varsFor('RANK')} gives rank ${rank} but the world size is ${worldSize}: a rank must be below the world size. Check the launcher's RANK/WORLD_SIZE.`,
    );
  }
  if (localRank >= localWorldSize) {
    throw new EnvironmentError(
      `${varsFor('LOCAL_RANK')} gives local rank ${localRank} but only ${localWorldSize} processes run on this machine (LOCAL_WORLD_SIZE). Check the launcher's per-node process count.`,
    );
  }
  if (worldSize % localWorldSize !== 0) {
    throw new EnvironmentError(
      `World size ${worldSize} is not a multiple of the ${localWorldSize} processes per machine (LOCAL_WORLD_SIZE). Every machine must run the same number of processes.`,
    );
  }
  const numMachines = worldSize / localWorldSize;
  machineRank ??= Math.floor(rank / localWorldSize);

  const masterPort = readInt(env, 'MASTER_PORT', readFrom, 0) ?? DEFAULT_MASTER_PORT;
  if (numMachines > 1 && !masterAddr && source !== 'mpi') {
    throw new EnvironmentError(
      `This run spans ${numMachines} machines but MASTER_ADDR is not set, so the processes cannot find each other. Set MASTER_ADDR to the main machine's address (accelerate launch --main_process_ip).`,
    );
  }
  if (worldSize > 1 && !masterAddr) masterAddr = '127.0.0.1';

  const threads = Math.max(1, Math.floor(cpuCount / localWorldSize));
  return {
    rank,
    worldSize,
    localRank,
    localWorldSize,
    machineRank,
    numMachines,
    masterAddr,
    masterPort,
    source,
    readFrom,
    suggestedThreads: threads,
  };
}
