/**
 * `manifest.json`: the versioned description of a `saveState` checkpoint —
 * who wrote it (world size, accelerate-ts version, backend, a hash of the
 * resolved configuration), where the run was (step, iteration) and, for every
 * file, its byte size and sha256. It is written last, so a folder without one
 * is not a finished checkpoint, and `loadState` checks every file it reads
 * against it and names the file that is missing or damaged.
 * @module
 */
import { createHash } from 'node:crypto';
import { createReadStream, readFileSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { join } from 'node:path';

/** File name of the manifest inside a checkpoint folder. */
export const MANIFEST_NAME = 'manifest.json';
/** `format` field of every manifest. */
export const MANIFEST_FORMAT = 'accelerate-ts-checkpoint';
/** Newest manifest version this build writes and reads. */
export const MANIFEST_VERSION = 1;

/** Size and digest of one checkpoint file. */
export interface ManifestFileEntry {
  /** Bytes. */
  size: number;
  /** Lower-case hex sha256 of the contents. */
  sha256: string;
}

/** How many objects of each kind the checkpoint holds (checked against what is prepared on load). */
export interface ManifestContents {
  models: number;
  optimizers: number;
  schedulers: number;
  dataloaders: number;
  customObjects: number;
  scaler: boolean;
  /** Plugin namespaces (`plugins/<name>/`). */
  plugins: string[];
  /**
   * What checkpoint participants other than core's recorded, by participant
   * name (those plugins add, a strategy's model participant); absent when
   * none recorded anything. Readers of version 1 ignore it.
   */
  participants?: Record<string, unknown>;
}

/** The parsed `manifest.json`. */
export interface CheckpointManifest {
  format: typeof MANIFEST_FORMAT;
  /** Manifest layout version ({@link MANIFEST_VERSION}). */
  formatVersion: number;
  /** Version of @accelerate/core that wrote it. */
  accelerateTsVersion: string;
  /** ISO time of the save. */
  createdAt: string;
  /** Processes of the run that saved. */
  worldSize: number;
  /** Compute backend name (`libtorch`, `tfjs`, `reference`). */
  backend: string;
  /** `sha256:<hex>` of the resolved configuration values (informational). */
  configHash: string;
  /** `Accelerator.step` at save time. */
  step: number;
  /** `ProjectConfiguration.iteration` of this save (the `n` of `checkpoint_<n>`). */
  iteration: number;
  contents: ManifestContents;
  /**
   * Names left out of a model file because they are the same tensor as an
   * earlier name (tied weights), by model file; absent when nothing is tied.
   * Loading re-ties them.
   */
  sharedTensors?: Record<string, string[]>;
  /**
   * Set when the folder was converted from another tool's checkpoint
   * (`accelerate checkpoint import-python`): which tool, from where, and what
   * of it could not be carried over.
   */
  importedFrom?: { tool: string; version?: string; dir: string; notCarriedOver: string[] };
  /** Every file of the checkpoint except the manifest, by forward-slash path relative to the folder. */
  files: Record<string, ManifestFileEntry>;
}

/** Lower-case hex sha256 of a byte array. */
export function sha256Hex(bytes: Uint8Array | string): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Size and sha256 of a file, streamed (never the whole file in memory). */
export async function hashFile(path: string): Promise<ManifestFileEntry> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { size, sha256: hash.digest('hex') };
}

/** Stable JSON (object keys sorted) so the same configuration always hashes the same. */
export function stableStringify(value: unknown): string {
  if (value === undefined) return 'null';
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map(stableStringify).join(',')}]`;
  const keys = Object.keys(value as object).filter((k) => (value as Record<string, unknown>)[k] !== undefined).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${stableStringify((value as Record<string, unknown>)[k])}`).join(',')}}`;
}

let cachedVersion: string | undefined;
/** The version of @accelerate/core (from its package.json; `0.0.0` when it cannot be read). */
export function accelerateTsVersion(): string {
  if (cachedVersion === undefined) {
    try {
      // src/checkpoint and dist/checkpoint are both two levels below the package root.
      const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
      cachedVersion = pkg.version ?? '0.0.0';
    } catch {
      cachedVersion = '0.0.0';
    }
  }
  return cachedVersion;
}

/** Thrown when a checkpoint folder is incomplete, damaged or of an unknown format. */
export class CheckpointError extends Error {
  constructor(
    message: string,
    /** Checkpoint folder. */
    readonly dir: string,
    /** File concerned, relative to `dir`, when one is. */
    readonly file?: string,
  ) {
    super(message);
    this.name = 'CheckpointError';
  }
}

/** Files only Python Accelerate's `save_state` writes (pickles), found in `dir`. */
async function pythonCheckpointFiles(dir: string): Promise<string[]> {
  const names = await fsp.readdir(dir).catch(() => [] as string[]);
  return names.filter((n) => /^(optimizer(_\d+)?\.bin|scheduler(_\d+)?\.bin|sampler(_\d+)?\.bin|scaler\.pt|random_states_\d+\.pkl|pytorch_model(_\d+)?\.bin)$/.test(n)).sort();
}

/** Read and validate `<dir>/manifest.json`. */
export async function readManifest(dir: string): Promise<CheckpointManifest> {
  let text: string;
  try {
    text = await fsp.readFile(join(dir, MANIFEST_NAME), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      const python = await pythonCheckpointFiles(dir);
      if (python.length > 0) {
        throw new CheckpointError(
          `${dir} was written by Python Accelerate's save_state (${python.join(', ')}): its optimizer, scheduler and RNG states are pickles, which Node does not read (unpickling runs arbitrary code). ` +
            `Convert it once with your Python (torch installed), then load the result: \`accelerate checkpoint import-python ${dir}\` writes ${dir.replace(/\/+$/, '')}-ts, and loadState(${JSON.stringify(`${dir.replace(/\/+$/, '')}-ts`)}) resumes with the same model, optimizer, scheduler and RNG state. ` +
            'For the weights alone, loadModelFiles(dir) reads model.safetensors directly.',
          dir,
          MANIFEST_NAME,
        );
      }
      throw new CheckpointError(
        `${dir} has no ${MANIFEST_NAME}, so it is not a finished accelerate-ts checkpoint (saveState writes the manifest last; a folder without one is an interrupted save or was written by another tool). Load another checkpoint.`,
        dir,
        MANIFEST_NAME,
      );
    }
    throw err;
  }
  let m: CheckpointManifest;
  try {
    m = JSON.parse(text) as CheckpointManifest;
  } catch (cause) {
    throw new CheckpointError(`${join(dir, MANIFEST_NAME)} is not valid JSON (${(cause as Error).message}); the checkpoint is damaged.`, dir, MANIFEST_NAME);
  }
  if (m === null || typeof m !== 'object' || m.format !== MANIFEST_FORMAT || typeof m.files !== 'object' || m.files === null) {
    throw new CheckpointError(`${join(dir, MANIFEST_NAME)} is not an accelerate-ts checkpoint manifest (expected "format": "${MANIFEST_FORMAT}").`, dir, MANIFEST_NAME);
  }
  if (!Number.isInteger(m.formatVersion) || m.formatVersion < 1 || m.formatVersion > MANIFEST_VERSION) {
    throw new CheckpointError(
      `${join(dir, MANIFEST_NAME)} has format version ${String(m.formatVersion)}, but this accelerate-ts (${accelerateTsVersion()}) reads versions 1..${MANIFEST_VERSION}. Upgrade @accelerate/core to load it.`,
      dir,
      MANIFEST_NAME,
    );
  }
  return m;
}

/**
 * Read `file` (relative to `dir`) and check it against the manifest: it must
 * be listed, present, and have the recorded size and sha256. Returns its bytes.
 */
export async function readVerified(dir: string, manifest: CheckpointManifest, file: string): Promise<Uint8Array> {
  const entry = manifest.files[file];
  if (!entry) {
    throw new CheckpointError(`${dir}: ${file} is not listed in ${MANIFEST_NAME}, so it was not part of this checkpoint when it was saved.`, dir, file);
  }
  let bytes: Uint8Array;
  try {
    bytes = await fsp.readFile(join(dir, file));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new CheckpointError(`Checkpoint ${dir} is incomplete: ${file} is listed in ${MANIFEST_NAME} (${entry.size} bytes) but the file is missing.`, dir, file);
    }
    throw err;
  }
  checkEntry(dir, file, entry, bytes.length, sha256Hex(bytes));
  return bytes;
}

/** Check a file that is read by someone else (a plugin) without keeping its bytes. */
export async function verifyFile(dir: string, manifest: CheckpointManifest, file: string): Promise<void> {
  const entry = manifest.files[file];
  if (!entry) throw new CheckpointError(`${dir}: ${file} is not listed in ${MANIFEST_NAME}.`, dir, file);
  let got: ManifestFileEntry;
  try {
    got = await hashFile(join(dir, file));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new CheckpointError(`Checkpoint ${dir} is incomplete: ${file} is listed in ${MANIFEST_NAME} (${entry.size} bytes) but the file is missing.`, dir, file);
    }
    throw err;
  }
  checkEntry(dir, file, entry, got.size, got.sha256);
}

function checkEntry(dir: string, file: string, entry: ManifestFileEntry, size: number, sha256: string): void {
  if (size !== entry.size || sha256 !== entry.sha256) {
    throw new CheckpointError(
      `Checkpoint ${dir} is corrupt: ${file} has ${size} bytes with sha256 ${sha256}, but ${MANIFEST_NAME} records ${entry.size} bytes with sha256 ${entry.sha256}. ` +
        'The file changed or was damaged after the save; restore it or load another checkpoint.',
      dir,
      file,
    );
  }
}
