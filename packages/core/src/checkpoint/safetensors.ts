/**
 * The safetensors format, read and written without any backend: an 8-byte
 * little-endian header length, a JSON header
 * `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}`
 * and a data section the tensors cover contiguously.
 *
 * Reading is lazy and bounded: {@link SafetensorsFile.open} reads only the
 * header (at most {@link MAX_HEADER_SIZE} bytes, checked before anything is
 * allocated) and each tensor is fetched with positioned reads of exactly its
 * bytes. Every header is validated the way the reference Rust crate does it
 * (offsets sorted, contiguous from 0, covering the file exactly, byte sizes
 * equal to shape × dtype), plus duplicate keys, so a hostile file gives a
 * {@link SafetensorsError} and never a crash or a large allocation.
 *
 * Writing follows the reference implementation byte for byte: tensors sorted
 * by descending dtype alignment then by name, compact JSON, header padded with
 * spaces to a multiple of 8. Metadata keys are written sorted (the Rust crate
 * writes them in hash order, so only single-key metadata such as
 * `{"format": "pt"}` can be byte-identical).
 *
 * dtypes: the ten that {@link HostTensor} holds (F64 F32 F16 BF16 I64 I32 I16
 * I8 U8 BOOL) come back as HostTensors; the others of the format (U16, U32,
 * U64, the F8 variants, F4, F6, C64) are validated like the rest and read as
 * {@link RawTensor}s (bytes + dtype + shape) through `readRaw`, because a
 * HostTensor cannot represent them faithfully; `read` refuses them with an
 * error pointing at `readRaw`.
 * @module
 */
import * as fsp from 'node:fs/promises';
import { HostTensor, hostArrayConstructor, type DType, type HostArray } from '../tensor/host-tensor.js';
import { writeFileAtomic } from './atomic.js';

/** Largest header accepted or written, in bytes (the reference crate's limit). */
export const MAX_HEADER_SIZE = 100_000_000;

/** Bytes of the header-length prefix. */
const N_LEN = 8;

/**
 * Element types of the safetensors format, in increasing alignment order
 * (the order of the reference crate's `Dtype` enum, which the writer sorts by).
 */
export const SAFETENSORS_DTYPES = [
  'BOOL',
  'F4',
  'F6_E2M3',
  'F6_E3M2',
  'U8',
  'I8',
  'F8_E5M2',
  'F8_E4M3',
  'F8_E8M0',
  'F8_E4M3FNUZ',
  'F8_E5M2FNUZ',
  'I16',
  'U16',
  'F16',
  'BF16',
  'I32',
  'U32',
  'F32',
  'C64',
  'F64',
  'I64',
  'U64',
] as const;

/** A dtype name as written in safetensors headers. */
export type SafetensorsDType = (typeof SAFETENSORS_DTYPES)[number];

const DTYPE_BITS: Record<SafetensorsDType, number> = {
  BOOL: 8,
  F4: 4,
  F6_E2M3: 6,
  F6_E3M2: 6,
  U8: 8,
  I8: 8,
  F8_E5M2: 8,
  F8_E4M3: 8,
  F8_E8M0: 8,
  F8_E4M3FNUZ: 8,
  F8_E5M2FNUZ: 8,
  I16: 16,
  U16: 16,
  F16: 16,
  BF16: 16,
  I32: 32,
  U32: 32,
  F32: 32,
  C64: 64,
  F64: 64,
  I64: 64,
  U64: 64,
};

const DTYPE_RANK = new Map<string, number>(SAFETENSORS_DTYPES.map((d, i) => [d, i]));

const TO_HOST: Partial<Record<SafetensorsDType, DType>> = {
  BOOL: 'bool',
  U8: 'uint8',
  I8: 'int8',
  I16: 'int16',
  F16: 'float16',
  BF16: 'bfloat16',
  I32: 'int32',
  F32: 'float32',
  F64: 'float64',
  I64: 'int64',
};

const FROM_HOST: Record<DType, SafetensorsDType> = {
  bool: 'BOOL',
  uint8: 'U8',
  int8: 'I8',
  int16: 'I16',
  float16: 'F16',
  bfloat16: 'BF16',
  int32: 'I32',
  float32: 'F32',
  float64: 'F64',
  int64: 'I64',
};

/** Bits per element of a safetensors dtype (F4 is 4, F6 variants 6). */
export function safetensorsDTypeBits(dtype: SafetensorsDType): number {
  return DTYPE_BITS[dtype];
}

/** True when `name` is a dtype of the safetensors format. */
export function isSafetensorsDType(name: unknown): name is SafetensorsDType {
  return typeof name === 'string' && DTYPE_RANK.has(name);
}

/** The safetensors name of a {@link HostTensor} dtype (`float32` -> `F32`). */
export function hostDTypeToSafetensors(dtype: DType): SafetensorsDType {
  const st = FROM_HOST[dtype];
  if (st === undefined) throw new SafetensorsError('INVALID_TENSOR', `dtype ${JSON.stringify(dtype)} has no safetensors equivalent.`);
  return st;
}

/** The {@link HostTensor} dtype for a safetensors dtype, or `undefined` when HostTensor cannot hold it (U16, U32, U64, F8, F4, F6, C64). */
export function safetensorsToHostDType(dtype: SafetensorsDType): DType | undefined {
  return TO_HOST[dtype];
}

/** Machine-readable kind of a {@link SafetensorsError}. */
export type SafetensorsErrorCode =
  | 'HEADER_TOO_SMALL'
  | 'HEADER_TOO_LARGE'
  | 'INVALID_HEADER_LENGTH'
  | 'INVALID_UTF8'
  | 'INVALID_JSON'
  | 'INVALID_HEADER'
  | 'DUPLICATE_KEY'
  | 'INVALID_METADATA'
  | 'INVALID_DTYPE'
  | 'INVALID_SHAPE'
  | 'INVALID_OFFSETS'
  | 'SIZE_MISMATCH'
  | 'MISALIGNED_SLICE'
  | 'OVERLAPPING_OFFSETS'
  | 'GAP_IN_DATA'
  | 'OUT_OF_BOUNDS'
  | 'TRAILING_DATA'
  | 'TRUNCATED'
  | 'TENSOR_NOT_FOUND'
  | 'UNSUPPORTED_DTYPE'
  | 'INVALID_TENSOR'
  | 'CLOSED';

/**
 * Every problem with safetensors content: malformed or hostile files, unknown
 * tensor names, tensors that cannot be written. `code` tells the kind,
 * `tensor` the tensor concerned (when there is one), `path` the file.
 */
export class SafetensorsError extends Error {
  override readonly name = 'SafetensorsError';
  /** Kind of problem. */
  readonly code: SafetensorsErrorCode;
  /** Tensor the problem concerns, if any. */
  readonly tensor?: string;
  /** File the problem concerns, if known. */
  readonly path?: string;

  constructor(code: SafetensorsErrorCode, message: string, details: { tensor?: string; path?: string; cause?: unknown } = {}) {
    super(details.path !== undefined ? `${details.path}: ${message}` : message, details.cause !== undefined ? { cause: details.cause } : undefined);
    this.code = code;
    if (details.tensor !== undefined) this.tensor = details.tensor;
    if (details.path !== undefined) this.path = details.path;
  }
}

/** Where a tensor lives and what it is, from the header. */
export interface SafetensorsTensorInfo {
  /** Tensor name (header key). */
  readonly name: string;
  /** dtype as written in the file. */
  readonly dtype: SafetensorsDType;
  /** The matching HostTensor dtype, `undefined` when only {@link RawTensor} can hold it. */
  readonly hostDType: DType | undefined;
  /** Shape (`[]` for a scalar). */
  readonly shape: readonly number[];
  /** Number of elements. */
  readonly numel: number;
  /** `data_offsets` from the header: [begin, end) relative to the data section. */
  readonly dataOffsets: readonly [number, number];
  /** Absolute offset of the first byte in the file. */
  readonly byteOffset: number;
  /** Bytes the tensor occupies. */
  readonly byteLength: number;
}

/** A tensor kept as raw little-endian bytes, for dtypes {@link HostTensor} cannot hold; also accepted by the writer. */
export interface RawTensor {
  readonly dtype: SafetensorsDType;
  readonly shape: readonly number[];
  readonly bytes: Uint8Array;
}

/** Tensors to write: a record or a map from name to tensor. */
export type SafetensorsTensors = Record<string, HostTensor | RawTensor> | ReadonlyMap<string, HostTensor | RawTensor>;

/** Options for the readers. */
export interface SafetensorsReadOptions {
  /** Largest header accepted, bytes; default and maximum {@link MAX_HEADER_SIZE}. */
  maxHeaderSize?: number;
}

/** A validated header. */
export interface ParsedHeader {
  headerLength: number;
  dataStart: number;
  dataLength: number;
  /** In data-offset order. */
  tensors: SafetensorsTensorInfo[];
  byName: Map<string, SafetensorsTensorInfo>;
  metadata: Record<string, string> | undefined;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

// ---------------------------------------------------------------------------
// Header parsing and validation

/** Names and strings compare by code point, i.e. UTF-8 byte order, as Rust and Python do. */
export function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    // Surrogates (0xD800-0xDFFF) encode code points above every BMP unit.
    const xs = x >= 0xd800 && x <= 0xdfff;
    const ys = y >= 0xd800 && y <= 0xdfff;
    if (xs !== ys) return xs ? 1 : -1;
    return x - y;
  }
  return a.length - b.length;
}

function readU64(bytes: Uint8Array, path: string | undefined): number {
  const view = new DataView(bytes.buffer, bytes.byteOffset, N_LEN);
  const hi = view.getUint32(4, true);
  const lo = view.getUint32(0, true);
  // Anything with high bits set is far above the limit; avoid precision loss.
  if (hi >= 0x200000) {
    throw new SafetensorsError(
      'HEADER_TOO_LARGE',
      `header length 0x${hi.toString(16)}${lo.toString(16).padStart(8, '0')} is larger than the ${MAX_HEADER_SIZE}-byte limit; the file is corrupt or not safetensors.`,
      { path },
    );
  }
  return hi * 2 ** 32 + lo;
}

/** Check the 8-byte prefix: the header length, bounded before anything is allocated. */
function checkHeaderLength(n: number, fileLength: number, maxHeaderSize: number, path: string | undefined): void {
  if (n > maxHeaderSize) {
    throw new SafetensorsError(
      'HEADER_TOO_LARGE',
      `header length ${n} is larger than the ${maxHeaderSize}-byte limit; the file is corrupt or not safetensors.`,
      { path },
    );
  }
  if (N_LEN + n > fileLength) {
    throw new SafetensorsError(
      'INVALID_HEADER_LENGTH',
      `header length ${n} runs past the end of the ${fileLength}-byte file; the file is truncated or not safetensors.`,
      { path },
    );
  }
}

/** First duplicated object key in already-valid JSON, with the key of the object holding it. */
function findDuplicateKey(text: string): { key: string; parent: string | undefined } | undefined {
  // One entry per open container: the keys seen so far (objects) or null (arrays).
  const stack: Array<{ keys: Set<string>; lastKey: string | undefined } | null> = [];
  let expectKey = false;
  const len = text.length;
  let i = 0;
  while (i < len) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      let j = i + 1;
      let escaped = false;
      while (j < len) {
        const d = text.charCodeAt(j);
        if (d === 0x5c /* \ */) {
          escaped = true;
          j += 2;
          continue;
        }
        if (d === 0x22) break;
        j++;
      }
      const top = stack[stack.length - 1];
      if (expectKey && top) {
        const key = escaped ? (JSON.parse(text.slice(i, j + 1)) as string) : text.slice(i + 1, j);
        if (top.keys.has(key)) {
          const parent = stack.length >= 2 ? stack[stack.length - 2]?.lastKey : undefined;
          return { key, parent };
        }
        top.keys.add(key);
        top.lastKey = key;
        expectKey = false;
      }
      i = j + 1;
      continue;
    }
    if (c === 0x7b /* { */) {
      stack.push({ keys: new Set(), lastKey: undefined });
      expectKey = true;
    } else if (c === 0x5b /* [ */) {
      stack.push(null);
      expectKey = false;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      stack.pop();
      expectKey = false;
    } else if (c === 0x2c /* , */) {
      expectKey = stack[stack.length - 1] != null;
    }
    i++;
  }
  return undefined;
}

function isPlainObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

const TWO_64 = 1n << 64n;

/** Parse and validate header JSON bytes against a data section of `dataLength` bytes. */
function parseHeaderBytes(headerBytes: Uint8Array, headerLength: number, dataLength: number, path: string | undefined): ParsedHeader {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(headerBytes);
  } catch (cause) {
    throw new SafetensorsError('INVALID_UTF8', 'header is not valid UTF-8; the file is corrupt or not safetensors.', { path, cause });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    const snippet = text.length > 60 ? `${text.slice(0, 60)}…` : text;
    throw new SafetensorsError(
      'INVALID_JSON',
      `header is not valid JSON (${(cause as Error).message}); it starts with ${JSON.stringify(snippet)}. The file is corrupt or not safetensors.`,
      { path, cause },
    );
  }
  if (!isPlainObject(json)) {
    throw new SafetensorsError(
      'INVALID_HEADER',
      `header must be a JSON object mapping tensor names to {dtype, shape, data_offsets}, got ${json === null ? 'null' : Array.isArray(json) ? 'an array' : typeof json}.`,
      { path },
    );
  }
  const dup = findDuplicateKey(text);
  if (dup) {
    const where = dup.parent === undefined ? 'the header' : `the entry ${JSON.stringify(dup.parent)}`;
    throw new SafetensorsError(
      'DUPLICATE_KEY',
      `key ${JSON.stringify(dup.key)} appears more than once in ${where}; each tensor name (and field) must be unique. Re-save the file with a writer that rejects duplicates.`,
      { path, tensor: dup.parent === undefined ? dup.key : dup.parent },
    );
  }

  let metadata: Record<string, string> | undefined;
  const tensors: SafetensorsTensorInfo[] = [];
  for (const name of Object.keys(json)) {
    const entry = json[name];
    if (name === '__metadata__') {
      if (entry === null) continue;
      if (!isPlainObject(entry)) {
        throw new SafetensorsError('INVALID_METADATA', `"__metadata__" must be an object of string values, got ${Array.isArray(entry) ? 'an array' : typeof entry}.`, { path });
      }
      const pairs: Array<[string, string]> = [];
      for (const k of Object.keys(entry)) {
        const v = entry[k];
        if (typeof v !== 'string') {
          throw new SafetensorsError(
            'INVALID_METADATA',
            `"__metadata__" value for ${JSON.stringify(k)} is ${v === null ? 'null' : typeof v}; safetensors metadata values must be strings (encode other values as JSON text).`,
            { path },
          );
        }
        pairs.push([k, v]);
      }
      metadata = Object.fromEntries(pairs);
      continue;
    }
    tensors.push(validateEntry(name, entry, path));
  }

  // The reference crate accepts header entries in any order and sorts by offsets.
  tensors.sort((a, b) => a.dataOffsets[0] - b.dataOffsets[0] || a.dataOffsets[1] - b.dataOffsets[1]);
  let cursor = 0;
  let previous: SafetensorsTensorInfo | undefined;
  const dataStart = N_LEN + headerLength;
  const byName = new Map<string, SafetensorsTensorInfo>();
  const placed: SafetensorsTensorInfo[] = [];
  for (const t of tensors) {
    const [begin, end] = t.dataOffsets;
    if (end > dataLength) {
      throw new SafetensorsError(
        'OUT_OF_BOUNDS',
        `tensor ${JSON.stringify(t.name)} has data_offsets [${begin}, ${end}] but the data section holds only ${dataLength} bytes; the file is truncated or its header is wrong.`,
        { path, tensor: t.name },
      );
    }
    if (begin < cursor) {
      throw new SafetensorsError(
        'OVERLAPPING_OFFSETS',
        `tensor ${JSON.stringify(t.name)} (data_offsets [${begin}, ${end}]) overlaps tensor ${JSON.stringify(previous?.name)} (ending at ${cursor}); tensors must occupy disjoint byte ranges.`,
        { path, tensor: t.name },
      );
    }
    if (begin > cursor) {
      throw new SafetensorsError(
        'GAP_IN_DATA',
        `tensor ${JSON.stringify(t.name)} starts at data offset ${begin} but the previous tensor ends at ${cursor}; the format requires tensors to cover the data section contiguously from 0 (bytes ${cursor}..${begin} are unaccounted for).`,
        { path, tensor: t.name },
      );
    }
    cursor = end;
    previous = t;
    const info: SafetensorsTensorInfo = { ...t, byteOffset: dataStart + begin };
    placed.push(info);
    byName.set(t.name, info);
  }
  if (cursor !== dataLength) {
    throw new SafetensorsError(
      'TRAILING_DATA',
      `tensors cover ${cursor} bytes of a ${dataLength}-byte data section; the format requires the last tensor to end exactly at the end of the file (extra or missing bytes mean a corrupt file).`,
      { path },
    );
  }
  return { headerLength, dataStart, dataLength, tensors: placed, byName, metadata };
}

function validateEntry(name: string, entry: unknown, path: string | undefined): SafetensorsTensorInfo {
  const q = JSON.stringify(name);
  if (!isPlainObject(entry)) {
    throw new SafetensorsError(
      'INVALID_HEADER',
      `header entry ${q} must be an object {dtype, shape, data_offsets}, got ${entry === null ? 'null' : Array.isArray(entry) ? 'an array' : typeof entry}.`,
      { path, tensor: name },
    );
  }
  const { dtype, shape, data_offsets: offsets } = entry;
  if (!isSafetensorsDType(dtype)) {
    throw new SafetensorsError(
      'INVALID_DTYPE',
      `tensor ${q} has dtype ${JSON.stringify(dtype) ?? 'undefined'}; expected one of ${SAFETENSORS_DTYPES.join(', ')}.`,
      { path, tensor: name },
    );
  }
  if (!Array.isArray(shape)) {
    throw new SafetensorsError('INVALID_SHAPE', `tensor ${q} has shape ${JSON.stringify(shape) ?? 'undefined'}; expected an array of non-negative integers.`, {
      path,
      tensor: name,
    });
  }
  let numel = 1n;
  let zero = false;
  for (const d of shape) {
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) {
      throw new SafetensorsError(
        'INVALID_SHAPE',
        `tensor ${q} has dimension ${JSON.stringify(d) ?? String(d)} in shape; every dimension must be a non-negative integer.`,
        { path, tensor: name },
      );
    }
    if (d === 0) zero = true;
    // Stop multiplying once past 64 bits (the reference crate's overflow check) so hostile shapes cannot grow the BigInt.
    else if (!zero && numel < TWO_64) numel *= BigInt(d);
  }
  if (zero) numel = 0n;
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => typeof o === 'number' && Number.isSafeInteger(o) && o >= 0)) {
    throw new SafetensorsError(
      'INVALID_OFFSETS',
      `tensor ${q} has data_offsets ${JSON.stringify(offsets) ?? 'undefined'}; expected [begin, end] with non-negative integers.`,
      { path, tensor: name },
    );
  }
  const [begin, end] = offsets as [number, number];
  if (end < begin) {
    throw new SafetensorsError('INVALID_OFFSETS', `tensor ${q} has data_offsets [${begin}, ${end}] whose end comes before its begin.`, {
      path,
      tensor: name,
    });
  }
  if (numel >= TWO_64) {
    throw new SafetensorsError('SIZE_MISMATCH', `tensor ${q} has shape [${shape.join(', ')}] whose element count overflows 64 bits.`, { path, tensor: name });
  }
  const bits = numel * BigInt(DTYPE_BITS[dtype]);
  if (bits % 8n !== 0n) {
    throw new SafetensorsError(
      'MISALIGNED_SLICE',
      `tensor ${q} (${dtype}, shape [${shape.join(', ')}]) takes ${bits} bits, not a whole number of bytes.`,
      { path, tensor: name },
    );
  }
  const bytes = bits / 8n;
  if (bytes !== BigInt(end - begin)) {
    throw new SafetensorsError(
      'SIZE_MISMATCH',
      `tensor ${q} (${dtype}, shape [${shape.join(', ')}]) needs ${bytes} bytes but data_offsets [${begin}, ${end}] give ${end - begin}; dtype, shape and offsets disagree.`,
      { path, tensor: name },
    );
  }
  return {
    name,
    dtype,
    hostDType: TO_HOST[dtype],
    shape: Object.freeze([...(shape as number[])]),
    numel: Number(numel),
    dataOffsets: Object.freeze([begin, end]) as readonly [number, number],
    byteOffset: begin,
    byteLength: end - begin,
  };
}

// ---------------------------------------------------------------------------
// Shared reader surface

function setOwn<T>(obj: Record<string, T>, key: string, value: T): void {
  // Plain assignment would treat "__proto__" as the prototype.
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

/** Reverse the byte order of each `width`-byte element in place (big-endian hosts). @internal */
export function swapBytes(bytes: Uint8Array, width: number): void {
  if (width <= 1) return;
  for (let i = 0; i + width <= bytes.length; i += width) {
    for (let a = i, b = i + width - 1; a < b; a++, b--) {
      const t = bytes[a];
      bytes[a] = bytes[b];
      bytes[b] = t;
    }
  }
}

function notFound(name: string, keys: Iterable<string>, path: string | undefined): SafetensorsError {
  const all = [...keys];
  const shown = all.slice(0, 8).map((k) => JSON.stringify(k));
  return new SafetensorsError(
    'TENSOR_NOT_FOUND',
    `no tensor named ${JSON.stringify(name)}; the file has ${all.length} tensor(s)${all.length ? `: ${shown.join(', ')}${all.length > 8 ? ', …' : ''}` : ''}.`,
    { path, tensor: name },
  );
}

function unsupported(info: SafetensorsTensorInfo, path: string | undefined): SafetensorsError {
  return new SafetensorsError(
    'UNSUPPORTED_DTYPE',
    `tensor ${JSON.stringify(info.name)} has dtype ${info.dtype}, which a HostTensor cannot hold; read it with readRaw()/raw() to get its bytes.`,
    { path, tensor: info.name },
  );
}

/** What both readers offer: names, metadata and per-tensor info from a validated header. */
export abstract class SafetensorsReader {
  /** @internal */
  protected constructor(
    protected readonly header: ParsedHeader,
    protected readonly source: string | undefined,
  ) {}

  /** Tensor names, sorted (as Python's `safe_open(...).keys()`). */
  keys(): string[] {
    return [...this.header.byName.keys()].sort(compareCodePoints);
  }

  /** Tensor names in the order their bytes appear in the file. */
  offsetKeys(): string[] {
    return this.header.tensors.map((t) => t.name);
  }

  /** True when the file holds a tensor called `name`. */
  has(name: string): boolean {
    return this.header.byName.has(name);
  }

  /** Number of tensors. */
  get size(): number {
    return this.header.tensors.length;
  }

  /** `__metadata__` of the header (string to string), or `undefined` when absent. */
  get metadata(): Readonly<Record<string, string>> | undefined {
    return this.header.metadata;
  }

  /** Bytes of the JSON header (without the 8-byte length prefix). */
  get headerLength(): number {
    return this.header.headerLength;
  }

  /** dtype, shape and byte range of `name`. */
  info(name: string): SafetensorsTensorInfo {
    const info = this.header.byName.get(name);
    if (!info) throw notFound(name, this.keys(), this.source);
    return info;
  }

  protected hostInfo(name: string): SafetensorsTensorInfo & { hostDType: DType } {
    const info = this.info(name);
    if (info.hostDType === undefined) throw unsupported(info, this.source);
    return info as SafetensorsTensorInfo & { hostDType: DType };
  }
}

// ---------------------------------------------------------------------------
// In-memory buffers

/** A parsed in-memory safetensors buffer; tensors are views into it where alignment allows. */
export class ParsedSafetensors extends SafetensorsReader {
  /** @internal use {@link parseSafetensors}. */
  constructor(
    header: ParsedHeader,
    private readonly bytes: Uint8Array,
  ) {
    super(header, undefined);
  }

  /**
   * Tensor `name` as a HostTensor. Zero-copy (a view sharing the buffer) when
   * its bytes are aligned for its element type on a little-endian host,
   * otherwise a copy.
   */
  tensor(name: string): HostTensor {
    const info = this.hostInfo(name);
    const Ctor = hostArrayConstructor(info.hostDType) as unknown as {
      new (n: number): HostArray;
      new (b: ArrayBufferLike, o: number, n: number): HostArray;
      BYTES_PER_ELEMENT: number;
    };
    const width = Ctor.BYTES_PER_ELEMENT;
    const at = this.bytes.byteOffset + info.byteOffset;
    let data: HostArray;
    if (LITTLE_ENDIAN && at % width === 0) {
      data = new Ctor(this.bytes.buffer, at, info.numel);
    } else {
      data = new Ctor(info.numel);
      const dst = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      dst.set(this.bytes.subarray(info.byteOffset, info.byteOffset + info.byteLength));
      if (!LITTLE_ENDIAN) swapBytes(dst, width);
    }
    return new HostTensor(data, info.shape, info.hostDType);
  }

  /** Tensor `name` as raw little-endian bytes (a view into the buffer); works for every dtype. */
  raw(name: string): RawTensor {
    const info = this.info(name);
    return { dtype: info.dtype, shape: info.shape, bytes: this.bytes.subarray(info.byteOffset, info.byteOffset + info.byteLength) };
  }

  /** Every tensor, keyed by name in file order; throws for dtypes only {@link raw} can read. */
  tensors(): Record<string, HostTensor> {
    const out: Record<string, HostTensor> = {};
    for (const name of this.offsetKeys()) setOwn(out, name, this.tensor(name));
    return out;
  }
}

/**
 * Parse a whole safetensors file held in memory. The header is validated
 * against the buffer exactly as {@link SafetensorsFile.open} validates a file.
 * @throws SafetensorsError for anything malformed.
 */
export function parseSafetensors(bytes: Uint8Array, options: SafetensorsReadOptions = {}): ParsedSafetensors {
  if (!(bytes instanceof Uint8Array)) {
    throw new SafetensorsError('INVALID_HEADER', `parseSafetensors expects a Uint8Array (e.g. a Buffer), got ${bytes === null ? 'null' : typeof bytes}.`);
  }
  const maxHeaderSize = Math.min(options.maxHeaderSize ?? MAX_HEADER_SIZE, MAX_HEADER_SIZE);
  if (bytes.length < N_LEN) {
    throw new SafetensorsError('HEADER_TOO_SMALL', `buffer has ${bytes.length} bytes, fewer than the 8-byte header length; it is not a safetensors file.`);
  }
  const n = readU64(bytes, undefined);
  checkHeaderLength(n, bytes.length, maxHeaderSize, undefined);
  const header = parseHeaderBytes(bytes.subarray(N_LEN, N_LEN + n), n, bytes.length - N_LEN - n, undefined);
  return new ParsedSafetensors(header, bytes);
}

// ---------------------------------------------------------------------------
// Files

// fs reads and writes take at most 2 GiB - 1 bytes per call.
const IO_CHUNK = 1 << 30;

async function readExactly(fh: fsp.FileHandle, target: Uint8Array, position: number, path: string, what: string): Promise<void> {
  let done = 0;
  while (done < target.length) {
    const want = Math.min(IO_CHUNK, target.length - done);
    const { bytesRead } = await fh.read(target, done, want, position + done);
    if (bytesRead === 0) {
      throw new SafetensorsError(
        'TRUNCATED',
        `file ended after ${position + done} bytes while reading ${what}; it was truncated or changed after it was opened.`,
        { path },
      );
    }
    done += bytesRead;
  }
}

/**
 * A safetensors file opened for lazy reading: the header is parsed and
 * validated at open, and tensors are read on demand with positioned reads
 * of just their bytes. Close it with {@link SafetensorsFile.close}.
 */
export class SafetensorsFile extends SafetensorsReader {
  private handle: fsp.FileHandle | undefined;
  private bytesReadCount: number;

  private constructor(
    readonly path: string,
    handle: fsp.FileHandle,
    header: ParsedHeader,
    /** File size in bytes at open. */
    readonly fileSize: number,
    bytesRead: number,
  ) {
    super(header, path);
    this.handle = handle;
    this.bytesReadCount = bytesRead;
  }

  /**
   * Open `path` and read its header only: first the 8-byte length, which is
   * checked against the limit and the file size before the header buffer is
   * allocated, then the JSON header.
   * @throws SafetensorsError for malformed files; fs errors (ENOENT, EACCES) as they are.
   */
  static async open(path: string, options: SafetensorsReadOptions = {}): Promise<SafetensorsFile> {
    const maxHeaderSize = Math.min(options.maxHeaderSize ?? MAX_HEADER_SIZE, MAX_HEADER_SIZE);
    const fh = await fsp.open(path, 'r');
    try {
      const { size } = await fh.stat();
      if (size < N_LEN) {
        throw new SafetensorsError('HEADER_TOO_SMALL', `file has ${size} bytes, fewer than the 8-byte header length; it is not a safetensors file.`, { path });
      }
      const prefix = new Uint8Array(N_LEN);
      await readExactly(fh, prefix, 0, path, 'the header length');
      const n = readU64(prefix, path);
      checkHeaderLength(n, size, maxHeaderSize, path);
      const headerBytes = new Uint8Array(n);
      await readExactly(fh, headerBytes, N_LEN, path, 'the header');
      const header = parseHeaderBytes(headerBytes, n, size - N_LEN - n, path);
      return new SafetensorsFile(path, fh, header, size, N_LEN + n);
    } catch (err) {
      await fh.close().catch(() => undefined);
      throw err;
    }
  }

  /** Bytes read from the file so far (header included): lets callers check that reads stay lazy. */
  get bytesRead(): number {
    return this.bytesReadCount;
  }

  private fh(): fsp.FileHandle {
    if (!this.handle) throw new SafetensorsError('CLOSED', 'the file is closed; open it again with SafetensorsFile.open().', { path: this.path });
    return this.handle;
  }

  private async readInto(info: SafetensorsTensorInfo, target: Uint8Array): Promise<void> {
    await readExactly(this.fh(), target, info.byteOffset, this.path, `tensor ${JSON.stringify(info.name)}`);
    this.bytesReadCount += target.length;
  }

  /** Tensor `name` as a HostTensor in a freshly allocated, aligned typed array. */
  async read(name: string): Promise<HostTensor> {
    const info = this.hostInfo(name);
    const Ctor = hostArrayConstructor(info.hostDType) as unknown as { new (n: number): HostArray };
    const data = new Ctor(info.numel);
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    await this.readInto(info, bytes);
    if (!LITTLE_ENDIAN) swapBytes(bytes, data.BYTES_PER_ELEMENT);
    return new HostTensor(data, info.shape, info.hostDType);
  }

  /** Tensor `name` as raw little-endian bytes; works for every dtype of the format. */
  async readRaw(name: string): Promise<RawTensor> {
    const info = this.info(name);
    const bytes = new Uint8Array(info.byteLength);
    await this.readInto(info, bytes);
    return { dtype: info.dtype, shape: info.shape, bytes };
  }

  /** Several tensors, read in file order; the result is keyed by name. */
  async readMany(names: Iterable<string>): Promise<Record<string, HostTensor>> {
    const infos = [...new Set(names)].map((n) => this.hostInfo(n));
    infos.sort((a, b) => a.byteOffset - b.byteOffset);
    const out: Record<string, HostTensor> = {};
    for (const info of infos) setOwn(out, info.name, await this.read(info.name));
    return out;
  }

  /** Every tensor, in file order; throws for dtypes only {@link readRaw} can read. */
  async readAll(): Promise<Record<string, HostTensor>> {
    return this.readMany(this.offsetKeys());
  }

  /** Release the file handle; later reads throw. Safe to call twice. */
  async close(): Promise<void> {
    const fh = this.handle;
    this.handle = undefined;
    if (fh) await fh.close();
  }
}

/**
 * Open `path`, run `fn` on it, and close it whatever happens.
 */
export async function withSafetensorsFile<T>(path: string, fn: (file: SafetensorsFile) => Promise<T> | T, options?: SafetensorsReadOptions): Promise<T> {
  const file = await SafetensorsFile.open(path, options);
  try {
    return await fn(file);
  } finally {
    await file.close();
  }
}

// ---------------------------------------------------------------------------
// Writing

interface PreparedEntry {
  name: string;
  dtype: SafetensorsDType;
  shape: readonly number[];
  bytes: Uint8Array;
}

interface Prepared {
  /** Length prefix + padded header. */
  head: Uint8Array;
  entries: PreparedEntry[];
  totalSize: number;
}

function hasLoneSurrogate(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        i++;
        continue;
      }
      return true;
    }
    if (c >= 0xdc00 && c <= 0xdfff) return true;
  }
  return false;
}

function isRawTensor(t: unknown): t is RawTensor {
  return typeof t === 'object' && t !== null && !(t instanceof HostTensor) && 'bytes' in t && 'dtype' in t && 'shape' in t;
}

function entryBytes(name: string, t: HostTensor | RawTensor): PreparedEntry {
  const q = JSON.stringify(name);
  if (t instanceof HostTensor) {
    const st = FROM_HOST[t.dtype];
    if (st === undefined) {
      throw new SafetensorsError('INVALID_TENSOR', `tensor ${q} has dtype ${JSON.stringify(t.dtype)}, which safetensors cannot store.`, { tensor: name });
    }
    if (!t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new SafetensorsError('INVALID_SHAPE', `tensor ${q} has shape [${t.shape.join(', ')}]; every dimension must be a non-negative integer.`, {
        tensor: name,
      });
    }
    const Ctor = hostArrayConstructor(t.dtype);
    if (!(t.data instanceof Ctor)) {
      throw new SafetensorsError(
        'INVALID_TENSOR',
        `tensor ${q} says dtype ${t.dtype} but holds a ${t.data.constructor.name}; build it with a ${Ctor.name}.`,
        { tensor: name },
      );
    }
    let bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    if (t.dtype === 'bool' && bytes.some((b) => b > 1)) {
      // torch reads bool bytes as-is; store canonical 0/1.
      bytes = bytes.map((b) => (b !== 0 ? 1 : 0));
    }
    if (!LITTLE_ENDIAN && t.data.BYTES_PER_ELEMENT > 1) {
      bytes = bytes.slice();
      swapBytes(bytes, t.data.BYTES_PER_ELEMENT);
    }
    return { name, dtype: st, shape: t.shape, bytes };
  }
  if (!isRawTensor(t)) {
    throw new SafetensorsError('INVALID_TENSOR', `value for ${q} is not a HostTensor or a RawTensor {dtype, shape, bytes}.`, { tensor: name });
  }
  if (!isSafetensorsDType(t.dtype)) {
    throw new SafetensorsError('INVALID_DTYPE', `tensor ${q} has dtype ${JSON.stringify(t.dtype)}; expected one of ${SAFETENSORS_DTYPES.join(', ')}.`, {
      tensor: name,
    });
  }
  if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new SafetensorsError('INVALID_SHAPE', `tensor ${q} has shape ${JSON.stringify(t.shape)}; expected non-negative integers.`, { tensor: name });
  }
  if (!(t.bytes instanceof Uint8Array)) {
    throw new SafetensorsError('INVALID_TENSOR', `tensor ${q} must carry its data as a Uint8Array in "bytes".`, { tensor: name });
  }
  const numel = t.shape.reduce((a, b) => a * b, 1);
  const bits = numel * DTYPE_BITS[t.dtype];
  if (bits % 8 !== 0 || bits / 8 !== t.bytes.length) {
    throw new SafetensorsError(
      'SIZE_MISMATCH',
      `tensor ${q} (${t.dtype}, shape [${t.shape.join(', ')}]) needs ${bits / 8} bytes but has ${t.bytes.length}.`,
      { tensor: name },
    );
  }
  return { name, dtype: t.dtype, shape: t.shape, bytes: t.bytes };
}

function tensorEntries(tensors: SafetensorsTensors): Array<[string, HostTensor | RawTensor]> {
  if (tensors instanceof Map) return [...tensors.entries()];
  if (typeof tensors !== 'object' || tensors === null) {
    throw new SafetensorsError('INVALID_TENSOR', `tensors must be a record or Map of name -> HostTensor, got ${tensors === null ? 'null' : typeof tensors}.`);
  }
  return Object.entries(tensors as Record<string, HostTensor | RawTensor>);
}

function prepare(tensors: SafetensorsTensors, metadata: Record<string, string> | undefined): Prepared {
  const entries: PreparedEntry[] = [];
  for (const [name, t] of tensorEntries(tensors)) {
    if (name === '__metadata__') {
      throw new SafetensorsError('INVALID_TENSOR', 'a tensor cannot be called "__metadata__": the header reserves that key; rename it.', { tensor: name });
    }
    if (hasLoneSurrogate(name)) {
      throw new SafetensorsError('INVALID_TENSOR', `tensor name ${JSON.stringify(name)} contains an unpaired UTF-16 surrogate and cannot be written as UTF-8.`, {
        tensor: name,
      });
    }
    entries.push(entryBytes(name, t));
  }
  // Descending dtype alignment, then name: the reference writer's order, which keeps every tensor aligned.
  entries.sort((a, b) => DTYPE_RANK.get(b.dtype)! - DTYPE_RANK.get(a.dtype)! || compareCodePoints(a.name, b.name));

  const parts: string[] = [];
  if (metadata !== undefined) {
    if (!isPlainObject(metadata)) {
      throw new SafetensorsError('INVALID_METADATA', `metadata must be an object of string values, got ${Array.isArray(metadata) ? 'an array' : typeof metadata}.`);
    }
    const keys = Object.keys(metadata).sort(compareCodePoints);
    const items: string[] = [];
    for (const k of keys) {
      const v = metadata[k];
      if (typeof v !== 'string') {
        throw new SafetensorsError('INVALID_METADATA', `metadata value for ${JSON.stringify(k)} is ${v === null ? 'null' : typeof v}; safetensors metadata values must be strings.`);
      }
      if (hasLoneSurrogate(k) || hasLoneSurrogate(v)) {
        throw new SafetensorsError('INVALID_METADATA', `metadata entry ${JSON.stringify(k)} contains an unpaired UTF-16 surrogate and cannot be written as UTF-8.`);
      }
      items.push(`${JSON.stringify(k)}:${JSON.stringify(v)}`);
    }
    parts.push(`"__metadata__":{${items.join(',')}}`);
  }
  let offset = 0;
  for (const e of entries) {
    const end = offset + e.bytes.length;
    parts.push(`${JSON.stringify(e.name)}:{"dtype":"${e.dtype}","shape":[${e.shape.join(',')}],"data_offsets":[${offset},${end}]}`);
    offset = end;
  }
  const json = new TextEncoder().encode(`{${parts.join(',')}}`);
  const padded = Math.ceil(json.length / N_LEN) * N_LEN;
  if (padded > MAX_HEADER_SIZE) {
    throw new SafetensorsError('HEADER_TOO_LARGE', `header would take ${padded} bytes, above the ${MAX_HEADER_SIZE}-byte limit readers enforce; split the tensors over several files.`);
  }
  const head = new Uint8Array(N_LEN + padded);
  new DataView(head.buffer).setBigUint64(0, BigInt(padded), true);
  head.set(json, N_LEN);
  head.fill(0x20, N_LEN + json.length);
  return { head, entries, totalSize: head.length + offset };
}

/**
 * The bytes of a safetensors file holding `tensors` (and `metadata`, string
 * values only), laid out exactly as the reference writer does.
 * @throws SafetensorsError for tensors or metadata that cannot be written.
 */
export function serializeSafetensors(tensors: SafetensorsTensors, metadata?: Record<string, string>): Uint8Array {
  const { head, entries, totalSize } = prepare(tensors, metadata);
  const out = new Uint8Array(totalSize);
  out.set(head, 0);
  let at = head.length;
  for (const e of entries) {
    out.set(e.bytes, at);
    at += e.bytes.length;
  }
  return out;
}

async function writeFully(fh: fsp.FileHandle, bytes: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < bytes.length) {
    const want = Math.min(IO_CHUNK, bytes.length - done);
    const { bytesWritten } = await fh.write(bytes, done, want, position + done);
    done += bytesWritten;
  }
}

/**
 * Write `tensors` to `path` as safetensors, atomically (see
 * {@link writeFileAtomic}) and streaming tensor by tensor, so no buffer of
 * the whole file is built.
 * @throws SafetensorsError for tensors or metadata that cannot be written.
 */
export async function writeSafetensors(path: string, tensors: SafetensorsTensors, metadata?: Record<string, string>): Promise<void> {
  const { head, entries } = prepare(tensors, metadata);
  await writeFileAtomic(path, async (fh) => {
    await writeFully(fh, head, 0);
    let at = head.length;
    for (const e of entries) {
      await writeFully(fh, e.bytes, at);
      at += e.bytes.length;
    }
  });
}
