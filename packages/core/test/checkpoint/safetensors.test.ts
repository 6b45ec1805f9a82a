import { afterAll, describe, expect, it } from 'vitest';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { HostTensor } from '../../src/tensor/host-tensor.js';
import { SeededRandom } from '../../src/testing/prng.js';
import {
  MAX_HEADER_SIZE,
  SafetensorsError,
  SafetensorsFile,
  compareCodePoints,
  parseSafetensors,
  serializeSafetensors,
  withSafetensorsFile,
  writeSafetensors,
  type RawTensor,
  type SafetensorsErrorCode,
} from '../../src/checkpoint/safetensors.js';
import { ALL_HOST_DTYPES, buildFile, bytesOf, hexOf, randomTensor, tempDir } from './helpers.js';

const tmp = tempDir('st-unit-');
afterAll(() => tmp.cleanup());
let fileNo = 0;
function tmpFile(bytes: Uint8Array): string {
  const p = join(tmp.dir, `f${fileNo++}.safetensors`);
  writeFileSync(p, bytes);
  return p;
}

function headerText(bytes: Uint8Array): string {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  return new TextDecoder().decode(bytes.subarray(8, 8 + n));
}

describe('safetensors writer layout', () => {
  it('sorts by descending dtype alignment then name, compact JSON, header padded with spaces to 8 bytes', () => {
    const bytes = serializeSafetensors(
      {
        b: HostTensor.fromNumbers([0, 1], [2], 'bool'),
        a: HostTensor.fromNumbers([0, 1, 2], [3], 'float32'),
        z0: new HostTensor(new Uint16Array([0x3fc0]), [], 'bfloat16'),
        e: new HostTensor(new BigInt64Array(0), [0, 3], 'int64'),
        h: new HostTensor(new Uint16Array([0x3c00]), [1], 'float16'),
        'é': HostTensor.fromNumbers([1], [1], 'float32'),
      },
      { format: 'pt', b: '2', a: '1' },
    );
    const text = headerText(bytes);
    const json =
      '{"__metadata__":{"a":"1","b":"2","format":"pt"},' +
      '"e":{"dtype":"I64","shape":[0,3],"data_offsets":[0,0]},' +
      '"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},' +
      '"é":{"dtype":"F32","shape":[1],"data_offsets":[12,16]},' +
      '"z0":{"dtype":"BF16","shape":[],"data_offsets":[16,18]},' +
      '"h":{"dtype":"F16","shape":[1],"data_offsets":[18,20]},' +
      '"b":{"dtype":"BOOL","shape":[2],"data_offsets":[20,22]}}';
    expect(text.trimEnd()).toBe(json);
    const jsonBytes = new TextEncoder().encode(json).length;
    expect(new TextEncoder().encode(text).length).toBe(Math.ceil(jsonBytes / 8) * 8);
    expect(bytes.length).toBe(8 + Math.ceil(jsonBytes / 8) * 8 + 22);
    // Data follows in header order.
    const data = bytes.subarray(bytes.length - 22);
    expect([...new Float32Array(data.slice(0, 12).buffer)]).toEqual([0, 1, 2]);
    expect([...data.subarray(20)]).toEqual([0, 1]);
  });

  it('omits __metadata__ when none is given and writes an empty file as just a header', () => {
    const bytes = serializeSafetensors({});
    expect(headerText(bytes)).toBe('{}      ');
    expect(bytes.length).toBe(16);
    const parsed = parseSafetensors(bytes);
    expect(parsed.keys()).toEqual([]);
    expect(parsed.metadata).toBeUndefined();
  });

  it('compares names by code point (UTF-8 byte order), not UTF-16 unit', () => {
    // U+FF21 is a BMP unit above the surrogates; U+1F600 is encoded with surrogates but is the larger code point.
    expect(compareCodePoints('\uff21', '\u{1f600}')).toBeLessThan(0);
    expect('\uff21' < '\u{1f600}').toBe(false);
    const bytes = serializeSafetensors({
      '\u{1f600}': HostTensor.fromNumbers([1], [1], 'float32'),
      '\uff21': HostTensor.fromNumbers([2], [1], 'float32'),
    });
    expect(parseSafetensors(bytes).offsetKeys()).toEqual(['\uff21', '\u{1f600}']);
  });

  it('stores bool as canonical 0/1 bytes', () => {
    const t = new HostTensor(new Uint8Array([0, 2, 255, 1]), [4], 'bool');
    const back = parseSafetensors(serializeSafetensors({ t })).tensor('t');
    expect([...back.data]).toEqual([0, 1, 1, 1]);
  });

  it('rejects tensors and metadata it cannot write, naming them', () => {
    const f = HostTensor.fromNumbers([1], [1], 'float32');
    const expectCode = (fn: () => unknown, code: SafetensorsErrorCode, text: string) => {
      try {
        fn();
        expect.unreachable();
      } catch (e) {
        expect(e).toBeInstanceOf(SafetensorsError);
        expect((e as SafetensorsError).code).toBe(code);
        expect((e as Error).message).toContain(text);
      }
    };
    expectCode(() => serializeSafetensors({ __metadata__: f }), 'INVALID_TENSOR', '"__metadata__"');
    expectCode(() => serializeSafetensors({ x: f }, { n: 3 as unknown as string }), 'INVALID_METADATA', '"n"');
    expectCode(
      () => serializeSafetensors({ r: { dtype: 'U16', shape: [3], bytes: new Uint8Array(4) } }),
      'SIZE_MISMATCH',
      '"r"',
    );
    expectCode(() => serializeSafetensors({ q: new HostTensor(new Float64Array(1), [1], 'float32') }), 'INVALID_TENSOR', 'Float32Array');
    expectCode(() => serializeSafetensors({ s: new HostTensor(new Float32Array(2), [-1, -2], 'float32') }), 'INVALID_SHAPE', '"s"');
    expectCode(() => serializeSafetensors({ ['a\ud800']: f }), 'INVALID_TENSOR', 'surrogate');
    expectCode(() => serializeSafetensors({ d: { dtype: 'F12', shape: [], bytes: new Uint8Array(1) } as unknown as RawTensor }), 'INVALID_DTYPE', 'F12');
  });
});

describe('safetensors round trips', () => {
  const rng = new SeededRandom(7);
  const tensors: Record<string, HostTensor> = {};
  for (const dt of ALL_HOST_DTYPES) {
    tensors[`${dt}.matrix`] = randomTensor(rng, dt, [3, 5]);
    tensors[`${dt}.scalar`] = randomTensor(rng, dt, []);
    tensors[`${dt}.empty`] = randomTensor(rng, dt, [0, 4]);
  }
  tensors['__proto__'] = HostTensor.fromNumbers([4, 5], [2], 'int32');
  tensors['float32.special'] = new HostTensor(new Float32Array([NaN, Infinity, -Infinity, -0, 1e-45]), [5], 'float32');
  tensors['int64.extremes'] = new HostTensor(new BigInt64Array([-(2n ** 63n), 2n ** 63n - 1n, 0n]), [3], 'int64');
  const meta = { format: 'pt', note: 'héllo "quoted"\n' };

  function checkAll(get: (name: string) => HostTensor) {
    for (const [name, t] of Object.entries(tensors)) {
      const back = get(name);
      expect(back.dtype, name).toBe(t.dtype);
      expect(back.shape, name).toEqual(t.shape);
      expect(hexOf(back), name).toBe(hexOf(t));
    }
  }

  it('every HostTensor dtype, scalars and empty tensors survive serialize -> parseSafetensors bit for bit', () => {
    const parsed = parseSafetensors(serializeSafetensors(tensors, meta));
    expect(parsed.metadata).toEqual(meta);
    expect(parsed.keys()).toEqual(Object.keys(tensors).sort(compareCodePoints));
    checkAll((n) => parsed.tensor(n));
    const all = parsed.tensors();
    expect(Object.keys(all).sort()).toEqual(Object.keys(tensors).sort());
    expect(Object.getPrototypeOf(all)).toBe(Object.prototype);
  });

  it('writeSafetensors -> SafetensorsFile reads the same, and readMany/readAll agree', async () => {
    const path = join(tmp.dir, 'all.safetensors');
    await writeSafetensors(path, tensors, meta);
    expect(readFileSync(path)).toEqual(Buffer.from(serializeSafetensors(tensors, meta)));
    const f = await SafetensorsFile.open(path);
    try {
      expect(f.metadata).toEqual(meta);
      const got: Record<string, HostTensor> = {};
      for (const n of f.keys()) got[n] = await f.read(n);
      checkAll((n) => got[n]);
      const many = await f.readMany(['int8.matrix', 'float64.scalar']);
      expect(Object.keys(many).sort()).toEqual(['float64.scalar', 'int8.matrix']);
      checkAll((n) => (n in many ? many[n] : got[n]));
      const all = await f.readAll();
      checkAll((n) => all[n]);
      // Fresh aligned arrays, not views of some shared file buffer.
      expect(all['float64.matrix'].data.byteOffset).toBe(0);
      expect(all['float64.matrix'].data.buffer.byteLength).toBe(15 * 8);
    } finally {
      await f.close();
    }
  });

  it('parseSafetensors returns zero-copy views when aligned and correct copies when not', () => {
    const bytes = serializeSafetensors(tensors);
    const parsed = parseSafetensors(bytes);
    const v = parsed.tensor('float64.matrix');
    expect(v.data.buffer).toBe(bytes.buffer);
    // Shift by one byte: nothing 8-byte aligned any more.
    const shifted = new Uint8Array(bytes.length + 1);
    shifted.set(bytes, 1);
    const p2 = parseSafetensors(shifted.subarray(1));
    const c = p2.tensor('float64.matrix');
    expect(c.data.buffer).not.toBe(shifted.buffer);
    expect(hexOf(c)).toBe(hexOf(tensors['float64.matrix']));
    checkAll((n) => p2.tensor(n));
  });

  it('dtypes HostTensor cannot hold are validated and read raw; read() points to readRaw', async () => {
    const raw: Record<string, RawTensor> = {
      u16: { dtype: 'U16', shape: [2], bytes: new Uint8Array([1, 2, 3, 4]) },
      u32: { dtype: 'U32', shape: [1], bytes: new Uint8Array([1, 2, 3, 4]) },
      u64: { dtype: 'U64', shape: [1], bytes: new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]) },
      e4m3: { dtype: 'F8_E4M3', shape: [3], bytes: new Uint8Array([0x38, 0x40, 0xb8]) },
      e5m2: { dtype: 'F8_E5M2', shape: [], bytes: new Uint8Array([0x3c]) },
      f4: { dtype: 'F4', shape: [4], bytes: new Uint8Array([0x21, 0x43]) },
      c64: { dtype: 'C64', shape: [1], bytes: new Uint8Array(8).fill(9) },
    };
    const bytes = serializeSafetensors({ ...raw, f: HostTensor.fromNumbers([1.5], [1], 'float32') });
    const parsed = parseSafetensors(bytes);
    const path = tmpFile(bytes);
    const file = await SafetensorsFile.open(path);
    try {
      for (const [name, r] of Object.entries(raw)) {
        expect(parsed.raw(name)).toEqual({ dtype: r.dtype, shape: r.shape, bytes: r.bytes });
        const fromFile = await file.readRaw(name);
        expect([...fromFile.bytes]).toEqual([...r.bytes]);
        expect(fromFile.dtype).toBe(r.dtype);
        expect(file.info(name).hostDType).toBeUndefined();
        expect(() => parsed.tensor(name)).toThrow(/readRaw/);
        await expect(file.read(name)).rejects.toMatchObject({ code: 'UNSUPPORTED_DTYPE', tensor: name });
      }
      expect([...(await file.readRaw('f')).bytes]).toEqual([...bytesOf(HostTensor.fromNumbers([1.5], [1], 'float32'))]);
      await expect(file.readAll()).rejects.toMatchObject({ code: 'UNSUPPORTED_DTYPE' });
    } finally {
      await file.close();
    }
  });
});

describe('SafetensorsFile reads lazily', () => {
  it('open reads only the header; read(name) reads exactly that tensor', async () => {
    const big = new HostTensor(new Float32Array(1 << 20), [1024, 1024], 'float32'); // 4 MiB, never read
    const small = HostTensor.fromNumbers([1, 2, 3], [3], 'int16');
    const path = tmpFile(serializeSafetensors({ big, small }, { format: 'pt' }));
    const f = await SafetensorsFile.open(path);
    try {
      const headerLen = f.headerLength;
      expect(f.bytesRead).toBe(8 + headerLen);
      expect(f.fileSize).toBe(8 + headerLen + (1 << 22) + 6);
      const info = f.info('small');
      expect(info).toMatchObject({ dtype: 'I16', hostDType: 'int16', shape: [3], numel: 3, byteLength: 6, dataOffsets: [1 << 22, (1 << 22) + 6] });
      expect(info.byteOffset).toBe(8 + headerLen + (1 << 22));
      const t = await f.read('small');
      expect(t.toArray()).toEqual([1, 2, 3]);
      expect(f.bytesRead).toBe(8 + headerLen + 6);
      await expect(f.read('nope')).rejects.toMatchObject({ code: 'TENSOR_NOT_FOUND', tensor: 'nope' });
    } finally {
      await f.close();
    }
    await expect(f.read('small')).rejects.toMatchObject({ code: 'CLOSED' });
    await f.close();
  });

  it('withSafetensorsFile closes the file after use', async () => {
    const path = tmpFile(serializeSafetensors({ x: HostTensor.fromNumbers([3], [1], 'int8') }));
    let kept: SafetensorsFile | undefined;
    const v = await withSafetensorsFile(path, async (f) => {
      kept = f;
      return (await f.read('x')).toArray();
    });
    expect(v).toEqual([3]);
    await expect(kept!.read('x')).rejects.toMatchObject({ code: 'CLOSED' });
  });

  it('a file that shrinks after open gives TRUNCATED, not garbage', async () => {
    const bytes = serializeSafetensors({ x: new HostTensor(new Float64Array(64), [64], 'float64') });
    const path = tmpFile(bytes);
    const f = await SafetensorsFile.open(path);
    try {
      writeFileSync(path, bytes.subarray(0, bytes.length - 100));
      await expect(f.read('x')).rejects.toMatchObject({ code: 'TRUNCATED' });
    } finally {
      await f.close();
    }
  });
});

describe('writeSafetensors is atomic', () => {
  it('replaces an existing file and leaves no temporary files; a failed write leaves the old file', async () => {
    const { dir, cleanup } = tempDir('st-atomic-');
    try {
      const path = join(dir, 'w.safetensors');
      await writeSafetensors(path, { a: HostTensor.fromNumbers([1], [1], 'float32') });
      await writeSafetensors(path, { b: HostTensor.fromNumbers([2, 3], [2], 'float32') });
      expect(parseSafetensors(readFileSync(path)).keys()).toEqual(['b']);
      expect(readdirSync(dir)).toEqual(['w.safetensors']);
      const before = readFileSync(path);
      await expect(writeSafetensors(path, { __metadata__: HostTensor.fromNumbers([1], [1], 'float32') })).rejects.toBeInstanceOf(SafetensorsError);
      expect(readFileSync(path)).toEqual(before);
      expect(readdirSync(dir)).toEqual(['w.safetensors']);
    } finally {
      cleanup();
    }
  });
});

// Hostile or broken files: every reader gives a SafetensorsError with the code and a message naming the culprit.
const F32x2 = { dtype: 'F32', shape: [2], data_offsets: [0, 8] };
const hostile: Array<{ what: string; bytes: () => Uint8Array; code: SafetensorsErrorCode; text: string | RegExp }> = [
  { what: 'fewer than 8 bytes', bytes: () => new Uint8Array(5), code: 'HEADER_TOO_SMALL', text: '8-byte' },
  {
    what: 'header length above 100 MB',
    bytes: () => buildFile({ a: F32x2 }, 8, BigInt(MAX_HEADER_SIZE + 1)),
    code: 'HEADER_TOO_LARGE',
    text: String(MAX_HEADER_SIZE + 1),
  },
  { what: 'header length near 2^64', bytes: () => buildFile({}, 0, 2n ** 64n - 1n), code: 'HEADER_TOO_LARGE', text: 'limit' },
  { what: 'header length past EOF', bytes: () => buildFile({ a: F32x2 }, 8, 5000n), code: 'INVALID_HEADER_LENGTH', text: 'runs past the end' },
  {
    what: 'header not UTF-8',
    bytes: () => {
      const b = buildFile('{"a":1}  ');
      b[10] = 0xff;
      return b;
    },
    code: 'INVALID_UTF8',
    text: 'UTF-8',
  },
  { what: 'bad JSON', bytes: () => buildFile('{"a": {"dtype": "F32",', 0), code: 'INVALID_JSON', text: 'not valid JSON' },
  { what: 'NUL padding instead of spaces', bytes: () => buildFile('{}\0\0\0\0\0\0', 0), code: 'INVALID_JSON', text: 'not valid JSON' },
  { what: 'header is an array', bytes: () => buildFile([1, 2], 0), code: 'INVALID_HEADER', text: 'an array' },
  { what: 'header is a number', bytes: () => buildFile('7', 0), code: 'INVALID_HEADER', text: 'number' },
  { what: 'entry is not an object', bytes: () => buildFile({ w: [0, 8] }, 8), code: 'INVALID_HEADER', text: '"w"' },
  {
    what: 'duplicate tensor names',
    bytes: () => buildFile('{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', 8),
    code: 'DUPLICATE_KEY',
    text: '"w" appears more than once in the header',
  },
  {
    what: 'duplicate field in an entry',
    bytes: () => buildFile('{"w":{"dtype":"F32","shape":[2],"dtype":"I32","data_offsets":[0,8]}}', 8),
    code: 'DUPLICATE_KEY',
    text: '"dtype" appears more than once in the entry "w"',
  },
  {
    what: 'duplicate metadata key (escaped spelling)',
    bytes: () => buildFile('{"__metadata__":{"k":"1","\\u006b":"2"}}', 0),
    code: 'DUPLICATE_KEY',
    text: '"k"',
  },
  { what: 'metadata value not a string', bytes: () => buildFile({ __metadata__: { epoch: 3 } }, 0), code: 'INVALID_METADATA', text: '"epoch" is number' },
  { what: 'metadata is an array', bytes: () => buildFile({ __metadata__: ['pt'] }, 0), code: 'INVALID_METADATA', text: 'an array' },
  { what: 'unknown dtype', bytes: () => buildFile({ w: { ...F32x2, dtype: 'F12' } }, 8), code: 'INVALID_DTYPE', text: 'tensor "w" has dtype "F12"' },
  { what: 'lower-case dtype', bytes: () => buildFile({ w: { ...F32x2, dtype: 'f32' } }, 8), code: 'INVALID_DTYPE', text: '"w"' },
  { what: 'negative dimension', bytes: () => buildFile({ w: { ...F32x2, shape: [-2] } }, 8), code: 'INVALID_SHAPE', text: 'tensor "w" has dimension -2' },
  { what: 'fractional dimension', bytes: () => buildFile({ w: { ...F32x2, shape: [1.5] } }, 8), code: 'INVALID_SHAPE', text: '1.5' },
  { what: 'string dimension', bytes: () => buildFile({ w: { ...F32x2, shape: ['2'] } }, 8), code: 'INVALID_SHAPE', text: '"2"' },
  { what: 'shape missing', bytes: () => buildFile({ w: { dtype: 'F32', data_offsets: [0, 8] } }, 8), code: 'INVALID_SHAPE', text: '"w"' },
  { what: 'dimension beyond 2^53', bytes: () => buildFile('{"w":{"dtype":"U8","shape":[9007199254740993],"data_offsets":[0,8]}}', 8), code: 'INVALID_SHAPE', text: '"w"' },
  { what: 'offsets not a pair', bytes: () => buildFile({ w: { ...F32x2, data_offsets: [0, 4, 8] } }, 8), code: 'INVALID_OFFSETS', text: '"w"' },
  { what: 'negative offset', bytes: () => buildFile({ w: { ...F32x2, data_offsets: [-8, 0] } }, 8), code: 'INVALID_OFFSETS', text: '"w"' },
  { what: 'end before begin', bytes: () => buildFile({ w: { dtype: 'F32', shape: [0], data_offsets: [8, 0] } }, 8), code: 'INVALID_OFFSETS', text: 'end comes before its begin' },
  {
    what: 'dtype/shape/bytes disagree',
    bytes: () => buildFile({ w: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, 8),
    code: 'SIZE_MISMATCH',
    text: 'tensor "w" (F32, shape [3]) needs 12 bytes but data_offsets [0, 8] give 8',
  },
  {
    what: 'shape product overflowing 64 bits',
    bytes: () => buildFile({ w: { dtype: 'F32', shape: [2 ** 40, 2 ** 40, 2 ** 40], data_offsets: [0, 8] } }, 8),
    code: 'SIZE_MISMATCH',
    text: 'overflows 64 bits',
  },
  { what: 'sub-byte dtype, odd count', bytes: () => buildFile({ w: { dtype: 'F4', shape: [3], data_offsets: [0, 2] } }, 2), code: 'MISALIGNED_SLICE', text: '"w"' },
  {
    what: 'offsets past the data section',
    bytes: () => buildFile({ w: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, 8),
    code: 'OUT_OF_BOUNDS',
    text: 'tensor "w" has data_offsets [0, 16] but the data section holds only 8 bytes',
  },
  {
    what: 'overlapping tensors',
    bytes: () => buildFile({ a: F32x2, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, 12),
    code: 'OVERLAPPING_OFFSETS',
    text: 'tensor "b" (data_offsets [4, 12]) overlaps tensor "a"',
  },
  {
    what: 'two tensors sharing bytes',
    bytes: () => buildFile({ a: F32x2, b: F32x2 }, 8),
    code: 'OVERLAPPING_OFFSETS',
    text: 'overlaps',
  },
  {
    what: 'gap between tensors',
    bytes: () => buildFile({ a: F32x2, b: { dtype: 'F32', shape: [2], data_offsets: [12, 20] } }, 20),
    code: 'GAP_IN_DATA',
    text: 'tensor "b" starts at data offset 12 but the previous tensor ends at 8',
  },
  {
    what: 'data not starting at 0',
    bytes: () => buildFile({ a: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, 12),
    code: 'GAP_IN_DATA',
    text: '"a"',
  },
  { what: 'trailing bytes after the last tensor', bytes: () => buildFile({ a: F32x2 }, 9), code: 'TRAILING_DATA', text: 'cover 8 bytes of a 9-byte data section' },
];

describe('hostile files give a clear SafetensorsError', () => {
  for (const c of hostile) {
    it(`${c.what} -> ${c.code}`, async () => {
      const bytes = c.bytes();
      let err: unknown;
      try {
        parseSafetensors(bytes);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(SafetensorsError);
      expect((err as SafetensorsError).code).toBe(c.code);
      expect((err as Error).message).toMatch(typeof c.text === 'string' ? new RegExp(c.text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')) : c.text);
      const path = tmpFile(bytes);
      const fromFile = await SafetensorsFile.open(path).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(fromFile).toBeInstanceOf(SafetensorsError);
      expect((fromFile as SafetensorsError).code).toBe(c.code);
      expect((fromFile as SafetensorsError).path).toBe(path);
      expect((fromFile as Error).message.startsWith(`${path}: `)).toBe(true);
    });
  }

  it('accepts header entries in any order as long as offsets are contiguous (as the reference crate does)', () => {
    const bytes = buildFile(
      { b: { dtype: 'I8', shape: [2], data_offsets: [8, 10] }, __metadata__: null, a: F32x2, e: { dtype: 'F64', shape: [0], data_offsets: [10, 10] } },
      new Uint8Array([0, 0, 0x80, 0x3f, 0, 0, 0, 0x40, 5, 0xfb]),
    );
    const p = parseSafetensors(bytes);
    expect(p.offsetKeys()).toEqual(['a', 'b', 'e']);
    expect(p.metadata).toBeUndefined();
    expect(p.tensor('a').toArray()).toEqual([1, 2]);
    expect(p.tensor('b').toArray()).toEqual([5, -5]);
    expect(p.tensor('e').shape).toEqual([0]);
  });

  it('ignores unknown fields in an entry, as the reference crate does', () => {
    const p = parseSafetensors(buildFile({ a: { ...F32x2, note: 'x' } }, 8));
    expect(p.info('a').shape).toEqual([2]);
  });

  it('rejects a header above a caller-chosen limit before reading it', async () => {
    const bytes = serializeSafetensors({ a: HostTensor.fromNumbers([1], [1], 'float32') });
    expect(() => parseSafetensors(bytes, { maxHeaderSize: 16 })).toThrow(/header length \d+ is larger than the 16-byte limit/);
    await expect(SafetensorsFile.open(tmpFile(bytes), { maxHeaderSize: 16 })).rejects.toMatchObject({ code: 'HEADER_TOO_LARGE' });
  });

  it('fs errors for missing files pass through unchanged', async () => {
    await expect(SafetensorsFile.open(join(tmp.dir, 'missing.safetensors'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
