/**
 * Byte encoding of a batch (its structure plus the raw bytes of every
 * {@link HostTensor} and typed array), so the dispatcher can broadcast a
 * batch through a {@link ProcessGroup} that only moves typed arrays.
 *
 * Layout: `u32 headerLength | header (UTF-8 JSON) | pad to 8 | tensor bytes,
 * each padded to 8`. The header describes the structure; tensors are
 * referenced by index. Little-endian hosts only (every platform Node runs on).
 * @module
 */
import { HostTensor, dtypeOfHostArray, isHostArray, type DType, type HostArray } from '../tensor/host-tensor.js';
import { allocHostArray } from './dataset.js';
import type { ProcessGroup } from '../interfaces/process-group.js';

type Node =
  | ['t', number, DType, number[]] // HostTensor: buffer index, dtype, shape
  | ['a', number, DType, number] // typed array: buffer index, dtype (as stored), length
  | ['l', Node[]] // array
  | ['o', [string, Node][]] // plain object
  | ['p', string | number | boolean | null] // JSON primitive
  | ['n', string] // non-finite number
  | ['b', string] // bigint
  | ['u']; // undefined

const ALIGN = 8;
const pad = (n: number): number => (n + ALIGN - 1) & ~(ALIGN - 1);

/** Encode a batch (nested arrays / plain objects of tensors, typed arrays and primitives) to bytes. */
export function encodeBatch(batch: unknown): Uint8Array {
  const buffers: HostArray[] = [];
  const walk = (x: unknown, path: string): Node => {
    if (x instanceof HostTensor) {
      buffers.push(x.data);
      return ['t', buffers.length - 1, x.dtype, [...x.shape]];
    }
    if (isHostArray(x)) {
      buffers.push(x);
      return ['a', buffers.length - 1, dtypeOfHostArray(x), x.length];
    }
    if (Array.isArray(x)) return ['l', x.map((v, i) => walk(v, `${path}[${i}]`))];
    switch (typeof x) {
      case 'undefined':
        return ['u'];
      case 'bigint':
        return ['b', x.toString()];
      case 'number':
        return Number.isFinite(x) ? ['p', x] : ['n', String(x)];
      case 'string':
      case 'boolean':
        return ['p', x];
      default:
        break;
    }
    if (x === null) return ['p', null];
    const proto = Object.getPrototypeOf(x) as unknown;
    if (typeof x === 'object' && (proto === Object.prototype || proto === null)) {
      return ['o', Object.entries(x as Record<string, unknown>).map(([k, v]) => [k, walk(v, `${path}.${k}`)] as [string, Node])];
    }
    throw new TypeError(
      `encodeBatch: cannot send ${path} (${(x as object).constructor?.name ?? typeof x}) between processes; batches may hold HostTensors, typed arrays, arrays, plain objects and primitives.`,
    );
  };
  const root = walk(batch, 'batch');
  const header = new TextEncoder().encode(JSON.stringify(root));
  let size = pad(4 + header.length);
  const offsets = buffers.map((b) => {
    const off = size;
    size += pad(b.byteLength);
    return off;
  });
  const out = new Uint8Array(size);
  new DataView(out.buffer).setUint32(0, header.length, true);
  out.set(header, 4);
  buffers.forEach((b, i) => out.set(new Uint8Array(b.buffer, b.byteOffset, b.byteLength), offsets[i]));
  return out;
}

/** Decode bytes from {@link encodeBatch}. Tensors get fresh, aligned memory. */
export function decodeBatch<B = unknown>(bytes: Uint8Array): B {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = view.getUint32(0, true);
  const root = JSON.parse(new TextDecoder().decode(bytes.subarray(4, 4 + headerLength))) as Node;
  // Buffers follow the header in index order; their sizes come from the header.
  const leaves: Array<{ dtype: DType; count: number }> = [];
  const index = (n: Node): void => {
    if (n[0] === 't') leaves[n[1]] = { dtype: n[2], count: n[3].reduce((a, b) => a * b, 1) };
    else if (n[0] === 'a') leaves[n[1]] = { dtype: n[2], count: n[3] };
    else if (n[0] === 'l') n[1].forEach(index);
    else if (n[0] === 'o') n[1].forEach(([, v]) => index(v));
  };
  index(root);
  let cursor = pad(4 + headerLength);
  const arrays = leaves.map(({ dtype, count }) => {
    const arr = allocHostArray(dtype, count);
    if (cursor + arr.byteLength > bytes.length) {
      throw new RangeError(`decodeBatch: the payload is truncated (${bytes.length} bytes, need at least ${cursor + arr.byteLength}).`);
    }
    new Uint8Array(arr.buffer).set(bytes.subarray(cursor, cursor + arr.byteLength));
    cursor += pad(arr.byteLength);
    return arr;
  });
  const build = (n: Node): unknown => {
    switch (n[0]) {
      case 't':
        return new HostTensor(arrays[n[1]], n[3], n[2]);
      case 'a':
        return arrays[n[1]];
      case 'l':
        return n[1].map(build);
      case 'o': {
        const o: Record<string, unknown> = {};
        for (const [k, v] of n[1]) o[k] = build(v);
        return o;
      }
      case 'p':
        return n[1];
      case 'n':
        return Number(n[1]);
      case 'b':
        return BigInt(n[1]);
      case 'u':
        return undefined;
    }
  };
  return build(root) as B;
}

/** The part of a process group the data pipeline uses. */
export type BroadcastGroup = Pick<ProcessGroup<unknown>, 'rank' | 'size' | 'broadcast'>;

/**
 * Broadcast a byte payload from `src`: first its length, then the bytes.
 * `src` passes its payload; other ranks pass `null` and receive a copy.
 * Every rank must call it at the same point of its sequence of collectives.
 */
export async function broadcastBytes(group: BroadcastGroup, payload: Uint8Array | null, src = 0): Promise<Uint8Array> {
  const isSrc = group.rank === src;
  if (isSrc && payload === null) throw new TypeError(`broadcastBytes: rank ${src} is the source and must pass a payload.`);
  const len = new Float64Array(1);
  if (isSrc) len[0] = payload!.length;
  await group.broadcast(len, src).wait();
  const n = len[0];
  const buf = isSrc ? payload! : new Uint8Array(n);
  if (n > 0) await group.broadcast(buf, src).wait();
  return buf;
}

/** Broadcast a batch (structure and tensors) from `src` to every rank of `group`. */
export async function broadcastBatch<B>(group: BroadcastGroup, batch: B | undefined, src = 0): Promise<B> {
  const bytes = await broadcastBytes(group, group.rank === src ? encodeBatch(batch) : null, src);
  return group.rank === src ? (batch as B) : decodeBatch<B>(bytes);
}
