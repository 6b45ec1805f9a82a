/**
 * `file://` model files without tfjs-node. tfjs's Node file handlers come
 * with `@tensorflow/tfjs-node`; without it `model.save('file://dir')` fails
 * with "Cannot find any save handlers" and `tf.loadLayersModel('file://…')`
 * with "fetch failed". {@link registerFileRouters} registers a save and a load
 * router that write and read the same layout as tfjs-node:
 * `dir/model.json` (topology, weights manifest, training config, optimizer
 * weights when `includeOptimizer`) and `dir/weights.bin`.
 * @module
 */
import { promises as fsp } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeFileAtomic } from '@accelerate/core/internal';
import { tf } from './tf.js';

const SCHEME = 'file://';
const MODEL_JSON = 'model.json';
const WEIGHTS_BIN = 'weights.bin';

function toPath(url: string): string {
  // file:///abs/path is a real URL; file://relative/dir (as tfjs-node accepts) is a relative path.
  return url.startsWith('file:///') ? fileURLToPath(url) : resolve(url.slice(SCHEME.length));
}

/** An IOHandler that saves to / loads from the local disk. */
export function fileSystemHandler(url: string): tf.io.IOHandler {
  const path = toPath(url);
  return {
    async save(artifacts: tf.io.ModelArtifacts): Promise<tf.io.SaveResult> {
      if (artifacts.modelTopology instanceof ArrayBuffer) {
        throw new Error('file:// save: binary (GraphDef) topologies are not supported; save a tf.LayersModel.');
      }
      // A path ending in .json names the model file; anything else is a folder.
      const dir = path.endsWith('.json') ? dirname(path) : path;
      const jsonPath = path.endsWith('.json') ? path : join(dir, MODEL_JSON);
      await fsp.mkdir(dir, { recursive: true });
      const weights = artifacts.weightData ? new Uint8Array(tf.io.CompositeArrayBuffer.join(artifacts.weightData)) : new Uint8Array(0);
      const modelJSON: tf.io.ModelJSON = {
        modelTopology: artifacts.modelTopology ?? {},
        format: artifacts.format,
        generatedBy: artifacts.generatedBy,
        convertedBy: artifacts.convertedBy,
        weightsManifest: [{ paths: [WEIGHTS_BIN], weights: artifacts.weightSpecs ?? [] }],
      };
      if (artifacts.trainingConfig) modelJSON.trainingConfig = artifacts.trainingConfig;
      if (artifacts.signature) modelJSON.signature = artifacts.signature;
      if (artifacts.userDefinedMetadata) modelJSON.userDefinedMetadata = artifacts.userDefinedMetadata;
      if (artifacts.modelInitializer) modelJSON.modelInitializer = artifacts.modelInitializer;
      await writeFileAtomic(join(dir, WEIGHTS_BIN), weights);
      await writeFileAtomic(jsonPath, JSON.stringify(modelJSON));
      return { modelArtifactsInfo: tf.io.getModelArtifactsInfoForJSON(artifacts) };
    },
    async load(): Promise<tf.io.ModelArtifacts> {
      let jsonPath = path;
      const st = await fsp.stat(path).catch(() => undefined);
      if (st?.isDirectory()) jsonPath = join(path, MODEL_JSON);
      let text: string;
      try {
        text = await fsp.readFile(jsonPath, 'utf8');
      } catch (e) {
        throw new Error(`file:// load: cannot read ${jsonPath} (${(e as Error).message}). Pass the path of a model.json or of the folder holding it.`, { cause: e });
      }
      const modelJSON = JSON.parse(text) as tf.io.ModelJSON;
      const base = dirname(jsonPath);
      return tf.io.getModelArtifactsForJSON(modelJSON, async (manifest) => {
        const specs: tf.io.WeightsManifestEntry[] = [];
        const buffers: ArrayBuffer[] = [];
        for (const group of manifest) {
          specs.push(...group.weights);
          for (const p of group.paths) {
            const bytes = await fsp.readFile(join(base, p));
            buffers.push(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer);
          }
        }
        return [specs, tf.io.CompositeArrayBuffer.join(buffers)];
      });
    },
  };
}

let registered = false;

/**
 * Register the `file://` save and load routers, unless another handler
 * (tfjs-node's) already serves `file://` — two would make tfjs refuse to
 * choose. Returns whether ours are (now) registered. Nothing happens on import.
 */
export function registerFileRouters(): boolean {
  if (registered) return true;
  const probe = 'file:///tmp/accelerate-probe';
  if (tf.io.getSaveHandlers(probe).length > 0 || tf.io.getLoadHandlers(probe).length > 0) return false;
  const router = (url: string | string[]): tf.io.IOHandler | null => {
    const u = Array.isArray(url) ? url[0] : url;
    return typeof u === 'string' && u.startsWith(SCHEME) ? fileSystemHandler(u) : null;
  };
  // tfjs's IORouter type says IOHandler, but routers return null for URLs they do not serve.
  tf.io.registerSaveRouter(router as Parameters<typeof tf.io.registerSaveRouter>[0]);
  tf.io.registerLoadRouter(router as Parameters<typeof tf.io.registerLoadRouter>[0]);
  registered = true;
  return true;
}
