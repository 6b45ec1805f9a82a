/**
 * Checkpoint participants: everything `saveState` writes and `loadState`
 * restores — models (through the strategy), optimizers, schedulers, data
 * loaders, RNG states, registered objects, plugins — is a participant with a
 * name. `saveState` owns the folder, its atomic replace and the manifest;
 * participants only write and read their own files inside it.
 * @module
 */
import type { HostTensor } from '../tensor/host-tensor.js';

/**
 * Where a participant writes during `saveState` (a temporary folder that is
 * committed atomically). File names are relative, with forward slashes, and
 * may not start with a dot or be `manifest.json`; a file another participant
 * wrote already is an error. Every file written (by any rank) is listed in
 * the manifest with its size and sha256.
 */
export interface CheckpointWriter {
  /** The temporary checkpoint folder; the participant's files go in it (names relative to it). */
  readonly dir: string;
  readonly processIndex: number;
  readonly numProcesses: number;
  readonly isMainProcess: boolean;
  /** Write `tensors` as a safetensors file (metadata `format: pt` plus `metadata`), durably (fsync'd before the commit). */
  writeTensors(file: string, tensors: Record<string, HostTensor>, metadata?: Record<string, string>): Promise<void>;
  /**
   * Write a JSON-able value whose leaves may be {@link HostTensor}s, in the
   * checkpoint's state encoding (`<name>.json` + `<name>.safetensors` for the
   * tensors), durably. `what` names the value in errors (e.g. a function leaf).
   */
  writeState(name: string, value: unknown, what: string): Promise<void>;
  /** Write raw bytes durably. */
  writeFile(file: string, data: Uint8Array | string): Promise<void>;
  /**
   * Record facts in the manifest under this participant's name (JSON-able;
   * what the main process records is kept, other ranks' calls are ignored).
   * Core's participants record in `contents.<name>`; participants added by
   * plugins or a strategy in `contents.participants.<name>`.
   */
  record(value: unknown): void;
}

/** Where a participant reads from during `loadState`. */
export interface CheckpointReader {
  /** The checkpoint folder being loaded. */
  readonly dir: string;
  readonly processIndex: number;
  readonly numProcesses: number;
  /** What the participant recorded at save time ({@link CheckpointWriter.record}), or undefined. */
  readonly recorded: unknown;
  /** Number of processes that wrote the checkpoint. */
  readonly savedWorldSize: number;
  /** `loadState` was called with `strict: true`: {@link warn} throws. */
  readonly strict: boolean;
  /** Whether the manifest lists `file` (a listed file is checked when read). */
  exists(file: string): Promise<boolean>;
  /** Read a safetensors file, checked against the manifest (size, sha256) and parsed; a damaged file throws a CheckpointError naming it. */
  readTensors(file: string): Promise<Record<string, HostTensor>>;
  /** Read what {@link CheckpointWriter.writeState} wrote under `name`. */
  readState(name: string): Promise<unknown>;
  /** Read raw bytes, checked against the manifest. */
  readFile(file: string): Promise<Uint8Array>;
  /**
   * Report something that could not be restored; collected into `loadState`'s
   * warnings. With `strict: true` it throws a CheckpointError (naming `file`)
   * instead: called from `read` that fails the load before anything changes.
   * Usable from the returned apply function too.
   */
  warn(message: string, file?: string): void;
}

/**
 * One participant. `loadState` runs in two phases so that a bad checkpoint
 * changes nothing: every participant's `read` first (parse and check, on
 * every rank), then, only if all of them succeeded, every returned `apply`.
 */
export interface CheckpointParticipant {
  /** Unique among the participants; also its key in the manifest. */
  readonly name: string;
  /**
   * `main`: `save` runs on the main process only (the default). `every`:
   * `save` runs on every rank (it may use collectives, e.g. to gather a full
   * state dict) and each rank writes files of its own (names must differ
   * between ranks, e.g. `model_0-rank<r>.safetensors`); the manifest lists
   * every rank's files, which needs every rank to see the same file system.
   */
  readonly writers?: 'main' | 'every';
  save(writer: CheckpointWriter): Promise<void>;
  /**
   * Read and check this participant's files, changing nothing; return what
   * applies them. Runs on every rank; a throw (on any rank) fails the load
   * before any participant applies. The apply functions run in participant
   * order, core's random states last.
   */
  read(reader: CheckpointReader): Promise<() => void | Promise<void>>;
}
