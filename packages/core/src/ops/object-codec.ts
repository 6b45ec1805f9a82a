/**
 * Turns the values that object collectives carry ({@link gatherObject},
 * {@link broadcastObjectList}) into bytes and back. JSON, extended so that
 * common training values survive the trip: NaN/±Infinity, bigint, Map,
 * `undefined` inside objects, and {@link HostTensor}. Accelerate pickles
 * here; JSON keeps the wire format readable from any language.
 * @module
 */
import { HostTensor, type DType } from '../tensor/host-tensor.js';
import { hostTensorFromNumbers, hostTensorToNumbers } from './tensor-ops.js';

const TAG = '__accelerate_ts__';

type Tagged =
  | { [TAG]: 'number'; value: string }
  | { [TAG]: 'bigint'; value: string }
  | { [TAG]: 'undefined' }
  | { [TAG]: 'map'; entries: Array<[unknown, unknown]> }
  | { [TAG]: 'hostTensor'; dtype: DType; shape: number[]; values: Array<number | string> };

function replacer(this: unknown, _key: string, value: unknown): unknown {
  if (typeof value === 'number' && !Number.isFinite(value)) return { [TAG]: 'number', value: String(value) };
  if (typeof value === 'bigint') return { [TAG]: 'bigint', value: value.toString() };
  if (value === undefined) return { [TAG]: 'undefined' };
  if (typeof value === 'function' || typeof value === 'symbol') {
    throw new TypeError(
      `cannot send a ${typeof value} between processes; object collectives carry JSON-like data ` +
        '(numbers, strings, booleans, null, arrays, plain objects, Maps, bigint, HostTensor).',
    );
  }
  if (value instanceof Map) return { [TAG]: 'map', entries: [...value.entries()] };
  if (value instanceof HostTensor) {
    const values: Array<number | string> =
      value.dtype === 'int64'
        ? Array.from(value.data as BigInt64Array, (v) => v.toString())
        : hostTensorToNumbers(value).map((v) => (Number.isFinite(v) ? v : String(v)));
    return { [TAG]: 'hostTensor', dtype: value.dtype, shape: [...value.shape], values };
  }
  return value;
}

function reviver(_key: string, value: unknown): unknown {
  if (typeof value !== 'object' || value === null || !(TAG in value)) return value;
  const v = value as Tagged;
  switch (v[TAG]) {
    case 'number':
      return Number(v.value);
    case 'bigint':
      return BigInt(v.value);
    case 'undefined':
      return undefined;
    case 'map':
      return new Map(v.entries);
    case 'hostTensor':
      if (v.dtype === 'int64') {
        return new HostTensor(BigInt64Array.from(v.values, (x) => BigInt(x)), v.shape, 'int64');
      }
      return hostTensorFromNumbers(
        v.values.map((x) => Number(x)),
        v.shape,
        v.dtype,
      );
  }
}

/**
 * UTF-8 bytes of `value` in the extended JSON described in this module.
 * @throws TypeError naming the offending value when it cannot be sent (functions, symbols, cycles).
 */
export function serializeObject(value: unknown): Uint8Array {
  let text: string | undefined;
  try {
    // Wrap so a top-level `undefined` is tagged too.
    text = JSON.stringify({ v: value }, replacer);
  } catch (e) {
    throw new TypeError(`serializeObject: ${(e as Error).message}`, { cause: e });
  }
  return new TextEncoder().encode(text);
}

/** Inverse of {@link serializeObject}. */
export function deserializeObject(bytes: Uint8Array): unknown {
  const parsed = JSON.parse(new TextDecoder().decode(bytes), reviver) as { v?: unknown };
  return parsed.v;
}
