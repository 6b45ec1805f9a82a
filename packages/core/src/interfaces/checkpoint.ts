/**
 * Checkpoint participants: everything `saveState` writes and `loadState`
 * restores — models (through the strategy), optimizers, schedulers, data
 * loaders, RNG states, registered objects, plugins — is a participant with a
 * name. `saveState` owns the folder, its atomic replace and the manifest;
 * participants only write and read their own files inside it.
 * @module
 */
import type { HostTensor } from '../tensor/host-tensor.js';

/** Where a participant writes during `saveState` (a temporary folder that is committed atomically). */
export interface CheckpointWriter {
  /** The temporary checkpoint folder; the participant's files go in it (names relative to it). */
  readonly dir: string;
  readonly processIndex: number;
  readonly numProcesses: number;
  readonly isMainProcess: boolean;
  /** Write `tensors` as a safetensors file, durably (fsync'd before the commit). */
  writeTensors(file: string, tensors: Record<string, HostTensor>, metadata?: Record<string, string>): Promise<void>;
  /**
   * Write a JSON-able value whose leaves may be {@link HostTensor}s, in the
   * checkpoint's state encoding (`<name>.json` + `<name>.safetensors` for the
   * tensors), durably.
   */
  writeState(name: string, value: unknown, what: string): Promise<void>;
  /** Write raw bytes durably. */
  writeFile(file: string, data: Uint8Array | string): Promise<void>;
  /** Record facts in the manifest's `contents` under this participant's name (main process only; JSON-able). */
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
  exists(file: string): Promise<boolean>;
  readTensors(file: string): Promise<Record<string, HostTensor>>;
  /** Read what {@link CheckpointWriter.writeState} wrote under `name`. */
  readState(name: string): Promise<unknown>;
  readFile(file: string): Promise<Uint8Array>;
  /** Report something that could not be restored; collected into `loadState`'s warnings. */
  warn(message: string): void;
}

/**
 * One participant. `loadState` runs in two phases so that a bad checkpoint
 * changes nothing: every participant's `read` first (parse and check, on
 * every rank), then, only if all of them succeeded, every returned `apply`.
 */
export interface CheckpointParticipant {
  /** Unique among the participants; also its key in the manifest. */
  readonly name: string;
  /** `main`: only the main process saves (the default); `every`: every rank writes its own files. */
  readonly writers?: 'main' | 'every';
  save(writer: CheckpointWriter): Promise<void>;
  /** Read and check this participant's files, changing nothing; return what applies them. */
  read(reader: CheckpointReader): Promise<() => void | Promise<void>>;
}
