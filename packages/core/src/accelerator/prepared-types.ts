/**
 * Types of what `accelerator.prepare` returns: a prepared DataLoader yields its
 * batches on the backend (every HostTensor leaf becomes the backend's tensor), and
 * its type says so, once a backend package registers its tensor type.
 * @module
 */
import type { DataLoader } from '../data/dataloader.js';
import type { HostTensor } from '../tensor/host-tensor.js';

/**
 * The tensor type of each backend package in the program, filled by declaration
 * merging. A backend package writes
 * `declare module '@accelerate/core' { interface BackendTensorTypes { libtorch: Tensor } }`,
 * so that importing it types prepared batches as its tensors. With no backend's
 * types in the program, batches stay {@link HostTensor}; with several, a leaf is
 * their union (narrow it, or name the batch type on the DataLoader).
 */
// eslint-disable-next-line @typescript-eslint/no-empty-interface
export interface BackendTensorTypes {}

/** The tensor a HostTensor leaf of a batch becomes on the backend. */
export type DeviceTensor = [keyof BackendTensorTypes] extends [never] ? HostTensor : BackendTensorTypes[keyof BackendTensorTypes];

// Leaves that `prepare` leaves as they are (and that a mapped type would mangle).
type Opaque = string | number | bigint | boolean | symbol | null | undefined | Date | RegExp | Map<unknown, unknown> | Set<unknown> | ArrayBufferView | ArrayBuffer | ((...args: never[]) => unknown);

/** A batch type `B` as a prepared loader yields it: HostTensor leaves become {@link DeviceTensor}. */
export type OnDevice<B> = B extends HostTensor
  ? DeviceTensor
  : B extends Opaque | DeviceTensor
    ? B
    : B extends readonly unknown[]
      ? { -readonly [K in keyof B]: OnDevice<B[K]> }
      : B extends object
        ? { [K in keyof B]: OnDevice<B[K]> }
        : B;

/** What `prepare(...objects)` resolves to, position by position. */
export type Prepared<T extends readonly unknown[]> = {
  [K in keyof T]: T[K] extends DataLoader<infer S, infer B> ? DataLoader<S, OnDevice<B>> : T[K];
};
