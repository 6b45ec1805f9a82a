/**
 * Non-model checkpoint state (optimizers, schedulers, data loader positions,
 * RNG states, registered objects, the loss scaler) as files PyTorch's
 * pickles are not: a JSON document for the structure, and — when the state
 * holds tensors or bytes — a safetensors file beside it for those, referenced
 * from the JSON by key. `optimizer.json` + `optimizer.safetensors` replace
 * Accelerate's `optimizer.bin`, and so on (see {@link stateFileNames}).
 * @module
 */
import { HostTensor } from '../tensor/host-tensor.js';
import { parseSafetensors, serializeSafetensors } from './safetensors.js';

/**
 * A value a state file can hold: JSON values, {@link HostTensor}s and byte
 * arrays (RNG states), nested in arrays and plain objects. Numbers may be
 * NaN or ±Infinity.
 */
export type StateValue = HostTensor | Uint8Array | number | string | boolean | null | StateValue[] | { [key: string]: StateValue };

/** Kind tag written in every state JSON (`kind`). */
export type StateKind = 'optimizer' | 'scheduler' | 'dataloader' | 'scaler' | 'random_states' | 'custom' | 'accelerator' | 'participant';

/** `format` field of every state JSON. */
export const STATE_FORMAT = 'accelerate-ts-state';
/** Version of the state JSON layout. */
export const STATE_VERSION = 1;

/** The two files one state is stored in: `<base>.json` and, when needed, `<base>.safetensors`. */
export interface StateFiles {
  json: string;
  tensors: string;
}

/** File names of the `index`-th object of a kind, Accelerate-style: `optimizer`, `optimizer_1`, … */
export function stateFileNames(base: string, index = 0): StateFiles {
  const stem = index === 0 ? base : `${base}_${index}`;
  return { json: `${stem}.json`, tensors: `${stem}.safetensors` };
}

/** File of the `index`-th model's weights: `model.safetensors`, `model_1.safetensors`, … (Accelerate's names). */
export function modelFileName(index: number): string {
  return index === 0 ? 'model.safetensors' : `model_${index}.safetensors`;
}

/** Encoded state: the JSON document and the tensors it references. */
export interface EncodedState {
  json: string;
  /** Tensors by key; empty when the state holds none (no `.safetensors` file is written then). */
  tensors: Map<string, HostTensor>;
}

const TENSOR = '__tensor__';
const BYTES = '__bytes__';
const NUMBER = '__number__';
const OBJECT = '__object__';
const MARKERS = new Set([TENSOR, BYTES, NUMBER, OBJECT]);

/** Options of {@link encodeState}. */
export interface EncodeStateOptions {
  /** Converts other tensor-like leaves (a backend's tensors) to host tensors; return undefined for "not a tensor". */
  toHost?: (value: unknown) => HostTensor | undefined;
  /** What is being encoded, for error messages (e.g. `optimizer 0`). */
  what?: string;
}

/**
 * Encode a state tree: tensors and byte arrays move to the tensor map
 * (keyed by their dotted path), everything else must be JSON-able.
 * @throws TypeError naming the path of a value that cannot be stored (functions, class instances, …).
 */
export function encodeState(kind: StateKind, value: unknown, options: EncodeStateOptions = {}): EncodedState {
  const tensors = new Map<string, HostTensor>();
  const what = options.what ?? kind;
  const walk = (v: unknown, path: string): unknown => {
    if (v === undefined) return undefined;
    if (v === null || typeof v === 'string' || typeof v === 'boolean') return v;
    if (typeof v === 'number') return Number.isFinite(v) ? v : { [NUMBER]: String(v) };
    if (typeof v === 'bigint') {
      if (!Number.isSafeInteger(Number(v))) throw new TypeError(`${what}: ${path || 'the state'} is a bigint too large to store (${v}).`);
      return Number(v);
    }
    if (v instanceof HostTensor) return addTensor(v, path, TENSOR);
    if (v instanceof Uint8Array) return addTensor(new HostTensor(v, [v.length], 'uint8'), path, BYTES);
    const host = options.toHost?.(v);
    if (host) return addTensor(host, path, TENSOR);
    if (Array.isArray(v)) return v.map((x, i) => walk(x, join(path, String(i))) ?? null);
    if (v instanceof Map) throw new TypeError(`${what}: ${path || 'the state'} is a Map; state dicts must use plain objects. Convert it with Object.fromEntries.`);
    if (typeof v === 'object' && (Object.getPrototypeOf(v) === Object.prototype || Object.getPrototypeOf(v) === null)) {
      const out: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(v)) {
        const enc = walk(x, join(path, k));
        if (enc !== undefined) Object.defineProperty(out, k, { value: enc, enumerable: true, writable: true, configurable: true });
      }
      const keys = Object.keys(out);
      // An object that looks like one of our markers is wrapped so it decodes as itself.
      return keys.length === 1 && MARKERS.has(keys[0]) ? { [OBJECT]: out } : out;
    }
    const name = (v as object)?.constructor?.name ?? typeof v;
    throw new TypeError(
      `${what}: ${path || 'the state'} is a ${name}, which a checkpoint cannot store. State dicts may hold numbers, strings, booleans, null, arrays, plain objects, tensors and Uint8Arrays.`,
    );
  };
  const addTensor = (t: HostTensor, path: string, marker: string) => {
    const key = path || '.';
    tensors.set(key, t);
    return { [marker]: key };
  };
  const encoded = walk(value, '');
  const doc = { format: STATE_FORMAT, version: STATE_VERSION, kind, value: encoded ?? null };
  return { json: JSON.stringify(doc, null, 1) + '\n', tensors };
}

function join(path: string, key: string): string {
  return path ? `${path}.${key}` : key;
}

/** Bytes of the `.safetensors` companion of an encoded state (metadata `format: pt`). */
export function encodeStateTensors(tensors: Map<string, HostTensor>): Uint8Array {
  return serializeSafetensors(tensors, { format: 'pt' });
}

/**
 * Decode a state JSON (and its tensor file bytes, when it references
 * tensors) back into a {@link StateValue} tree.
 * @param where file name for error messages.
 */
export function decodeState(kind: StateKind, json: string, tensorBytes: Uint8Array | undefined, where: string): StateValue {
  let doc: { format?: unknown; version?: unknown; kind?: unknown; value?: unknown };
  try {
    doc = JSON.parse(json) as typeof doc;
  } catch (cause) {
    throw new Error(`${where} is not valid JSON (${(cause as Error).message}).`, { cause });
  }
  if (doc?.format !== STATE_FORMAT || typeof doc.version !== 'number' || doc.version > STATE_VERSION) {
    throw new Error(`${where} is not an accelerate-ts state file of version <= ${STATE_VERSION} (format ${JSON.stringify(doc?.format)}, version ${String(doc?.version)}).`);
  }
  if (doc.kind !== kind) throw new Error(`${where} holds a "${String(doc.kind)}" state where a "${kind}" state was expected.`);
  const parsed = tensorBytes ? parseSafetensors(tensorBytes) : undefined;
  const tensor = (key: unknown): HostTensor => {
    if (typeof key !== 'string' || !parsed?.has(key)) {
      throw new Error(`${where} references tensor ${JSON.stringify(key)}, which its .safetensors file does not hold.`);
    }
    // Copy out of the file buffer so states do not pin it.
    const t = parsed.tensor(key);
    return new HostTensor(t.data.slice(), t.shape, t.dtype);
  };
  const walk = (v: unknown): StateValue => {
    if (v === null || typeof v !== 'object') return v as StateValue;
    if (Array.isArray(v)) return v.map(walk);
    const o = v as Record<string, unknown>;
    const keys = Object.keys(o);
    if (keys.length === 1) {
      if (keys[0] === TENSOR) return tensor(o[TENSOR]);
      if (keys[0] === BYTES) {
        const t = tensor(o[BYTES]);
        return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
      }
      if (keys[0] === NUMBER) return Number(o[NUMBER]);
      if (keys[0] === OBJECT) return walkPlain(o[OBJECT] as Record<string, unknown>);
    }
    return walkPlain(o);
  };
  const walkPlain = (o: Record<string, unknown>): StateValue => {
    const out: Record<string, StateValue> = {};
    for (const [k, x] of Object.entries(o)) Object.defineProperty(out, k, { value: walk(x), enumerable: true, writable: true, configurable: true });
    return out;
  };
  return walk(doc.value);
}
