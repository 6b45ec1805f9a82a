/**
 * Several processes with tfjs: tfjs has no collectives of its own, so the
 * gradients are averaged over host buffers (typed arrays) through
 * `@accelerate/backend-libtorch`'s gloo process group, imported on demand.
 * Without that package a multi-process run cannot start; the error says what
 * to install.
 * @module
 */
import type { HostArray, ProcessGroup, ProcessGroupOptions, ReduceOp, Work } from '@accelerate/core';
import { tf } from './tf.js';

/** The package that provides the process group. */
export const GLOO_PACKAGE = '@accelerate/backend-libtorch';

interface GlooModule {
  GlooProcessGroup: { init(options: ProcessGroupOptions): Promise<ProcessGroup<unknown>> };
}

/** How the gloo package is imported (replaceable in tests). */
export type GlooImporter = () => Promise<unknown>;

const defaultImporter: GlooImporter = () => import(/* a variable keeps TypeScript from needing its types */ GLOO_PACKAGE as string);

/** Whether tfjs can run on several processes here, and if not, why and what to install. */
export async function tfjsMultiProcessSupport(importer: GlooImporter = defaultImporter): Promise<{ available: boolean; reason?: string }> {
  try {
    await loadGloo(importer);
    return { available: true };
  } catch (e) {
    return { available: false, reason: (e as Error).message };
  }
}

async function loadGloo(importer: GlooImporter): Promise<GlooModule> {
  let mod: unknown;
  try {
    mod = await importer();
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const missing = (err?.code === 'ERR_MODULE_NOT_FOUND' || err?.code === 'MODULE_NOT_FOUND') && String(err.message).includes(GLOO_PACKAGE);
    throw new Error(
      missing
        ? `The tfjs backend runs several processes through ${GLOO_PACKAGE}'s gloo process group, which is not installed. ` +
            `Install it (npm install ${GLOO_PACKAGE}; it needs libtorch, see its README) or run a single process (--num_processes 1).`
        : `The tfjs backend needs ${GLOO_PACKAGE} for several processes; it is installed but failed to load: ${err?.message ?? String(e)}`,
      { cause: e },
    );
  }
  const g = (mod as Partial<GlooModule>).GlooProcessGroup;
  if (!g || typeof g.init !== 'function') {
    throw new Error(`${GLOO_PACKAGE} loaded but exports no GlooProcessGroup; update it to a version that matches @accelerate/backend-tfjs.`);
  }
  return mod as GlooModule;
}

function inPlaceError(what: string): Error {
  return new Error(
    `${what} on a tf.Tensor: tfjs tensors are immutable, so an in-place collective cannot write its result back. ` +
      'Pass a typed array (tensor.dataSync() copy) or use the Accelerator collectives with host transport.',
  );
}

/**
 * A process group for tfjs: typed arrays go straight to gloo; a `tf.Tensor`
 * is copied to the host for collectives that only read it (allGather, send).
 */
export class TfjsHostProcessGroup implements ProcessGroup<tf.Tensor> {
  constructor(private readonly inner: ProcessGroup<unknown>) {}

  get rank(): number {
    return this.inner.rank;
  }
  get size(): number {
    return this.inner.size;
  }
  get backend(): string {
    return this.inner.backend;
  }
  get store() {
    return this.inner.store;
  }

  private host(data: tf.Tensor | HostArray, what: string, readOnly: boolean): HostArray {
    if (!(data instanceof tf.Tensor)) return data;
    if (!readOnly) throw inPlaceError(what);
    return data.dataSync() as HostArray;
  }

  allReduce(data: tf.Tensor | HostArray, op?: ReduceOp): Work {
    return this.inner.allReduce(this.host(data, 'allReduce', false), op);
  }
  broadcast(data: tf.Tensor | HostArray, src: number): Work {
    return this.inner.broadcast(this.host(data, 'broadcast', false), src);
  }
  allGather(data: tf.Tensor | HostArray): Work<Array<tf.Tensor | HostArray>> {
    return this.inner.allGather(this.host(data, 'allGather', true)) as Work<Array<tf.Tensor | HostArray>>;
  }
  reduceScatter(output: tf.Tensor | HostArray, inputs: Array<tf.Tensor | HostArray>, op?: ReduceOp): Work {
    return this.inner.reduceScatter(
      this.host(output, 'reduceScatter', false),
      inputs.map((x) => this.host(x, 'reduceScatter', true)),
      op,
    );
  }
  send(data: tf.Tensor | HostArray, dst: number, tag?: number): Work {
    return this.inner.send(this.host(data, 'send', true), dst, tag);
  }
  recv(data: tf.Tensor | HostArray, src: number, tag?: number): Work {
    return this.inner.recv(this.host(data, 'recv', false), src, tag);
  }
  barrier(): Work {
    return this.inner.barrier();
  }
  async newGroup(ranks: readonly number[]): Promise<ProcessGroup<tf.Tensor> | null> {
    const sub = await this.inner.newGroup(ranks);
    return sub ? new TfjsHostProcessGroup(sub) : null;
  }
  destroy(): Promise<void> {
    return this.inner.destroy();
  }
}

/** Join the gloo process group through `@accelerate/backend-libtorch` (throws what to install when it is missing). */
export async function initTfjsProcessGroup(options: ProcessGroupOptions, importer: GlooImporter = defaultImporter): Promise<TfjsHostProcessGroup> {
  const { GlooProcessGroup } = await loadGloo(importer);
  return new TfjsHostProcessGroup(await GlooProcessGroup.init(options));
}
