/**
 * Plain option objects for the Accelerator, with Accelerate's names and
 * defaults (`DataLoaderConfiguration`, `ProjectConfiguration`).
 * @module
 */

/** How prepared data loaders shard and deliver batches. */
export interface DataLoaderConfiguration {
  /** Split each loader batch between processes instead of giving every process its own batch. Default false. */
  splitBatches?: boolean;
  /** Rank 0 reads every batch and shares it. Default: true for iterable datasets, false otherwise. */
  dispatchBatches?: boolean;
  /** Wrap around so every process gets the same number of batches. Default true. */
  evenBatches?: boolean;
  /** Replace random samplers with a seedable one whose order depends only on (seed, epoch). Default false. */
  useSeedableSampler?: boolean;
  /** Seed of the seedable sampler; default: the seed given to `setSeed`. */
  dataSeed?: number;
  /** Move batches without waiting (CUDA pinned memory). Default false. */
  nonBlocking?: boolean;
}

/** Where a run writes checkpoints and logs. */
export interface ProjectConfiguration {
  /** Root folder for checkpoints and logs. */
  projectDir?: string;
  /** Folder for tracker logs; defaults to `projectDir`. */
  loggingDir?: string;
  /** Name checkpoints `checkpoints/checkpoint_<i>` automatically. Default false. */
  automaticCheckpointNaming?: boolean;
  /** Keep at most this many automatic checkpoints (oldest deleted first). */
  totalLimit?: number;
  /** Number of the next automatic checkpoint. Default 0. */
  iteration?: number;
  /** Every machine's local main process saves (shared-nothing storage). Default false. */
  saveOnEachNode?: boolean;
}

/** Defaults filled in and values checked; errors name the field and the fix. */
export function normalizeProjectConfiguration(p: ProjectConfiguration = {}): Required<Omit<ProjectConfiguration, 'projectDir' | 'loggingDir' | 'totalLimit'>> &
  Pick<ProjectConfiguration, 'projectDir' | 'loggingDir' | 'totalLimit'> {
  if (p.totalLimit !== undefined && (!Number.isInteger(p.totalLimit) || p.totalLimit < 1)) {
    throw new RangeError(`ProjectConfiguration.totalLimit must be a whole number >= 1, got ${p.totalLimit}. Leave it out to keep every checkpoint.`);
  }
  if (p.iteration !== undefined && (!Number.isInteger(p.iteration) || p.iteration < 0)) {
    throw new RangeError(`ProjectConfiguration.iteration must be a whole number >= 0, got ${p.iteration}.`);
  }
  if (p.automaticCheckpointNaming && !p.projectDir) {
    throw new Error('ProjectConfiguration.automaticCheckpointNaming needs projectDir: checkpoints go to <projectDir>/checkpoints/checkpoint_<i>. Set projectDir.');
  }
  return {
    projectDir: p.projectDir,
    loggingDir: p.loggingDir ?? p.projectDir,
    automaticCheckpointNaming: p.automaticCheckpointNaming ?? false,
    totalLimit: p.totalLimit,
    iteration: p.iteration ?? 0,
    saveOnEachNode: p.saveOnEachNode ?? false,
  };
}
