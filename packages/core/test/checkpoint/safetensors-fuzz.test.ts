/**
 * Bounded fuzzing of the safetensors readers: 2,000 mutated or random inputs
 * from a fixed seed. Every input must give either a clean SafetensorsError or
 * a valid parse whose tensors fit inside the input; the in-memory and the
 * file reader must agree; no input may take long.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { HostTensor } from '../../src/tensor/host-tensor.js';
import { SeededRandom } from '../../src/testing/prng.js';
import {
  MAX_HEADER_SIZE,
  SAFETENSORS_DTYPES,
  SafetensorsError,
  SafetensorsFile,
  parseSafetensors,
  serializeSafetensors,
} from '../../src/checkpoint/safetensors.js';
import { ALL_HOST_DTYPES, randomTensor, tempDir } from './helpers.js';

const ITERATIONS = 2000;
const FILE_EVERY = 10; // every 10th input also goes through SafetensorsFile
const SEED = 20260724;

const rng = new SeededRandom(SEED);
const int = (n: number) => Math.floor(rng.random() * n);
const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)];

function randomBytes(n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = int(256);
  return b;
}

function baseFile(): Uint8Array {
  const tensors: Record<string, HostTensor> = {};
  const count = 1 + int(5);
  for (let i = 0; i < count; i++) {
    const rank = int(3);
    const shape = Array.from({ length: rank }, () => int(4));
    tensors[`layer.${i}.${pick(['weight', 'bias', 'ε'])}`] = randomTensor(rng, pick(ALL_HOST_DTYPES), shape);
  }
  return serializeSafetensors(tensors, rng.random() < 0.7 ? { format: 'pt' } : undefined);
}

function split(bytes: Uint8Array): { header: string; data: Uint8Array } {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  return { header: new TextDecoder().decode(bytes.subarray(8, 8 + n)), data: bytes.subarray(8 + n) };
}

function join8(header: string, data: Uint8Array, lengthOverride?: bigint): Uint8Array {
  const h = new TextEncoder().encode(header);
  const out = new Uint8Array(8 + h.length + data.length);
  new DataView(out.buffer).setBigUint64(0, lengthOverride ?? BigInt(h.length), true);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  return out;
}

const EVIL: unknown[] = [
  -1, 0, 1, 2, 3, 7, 8, 1.5, -0.5, 2 ** 31, 2 ** 32, 2 ** 53, 2 ** 53 + 2, 2 ** 64, 1e308, '7', '', null, true, [], {}, [0], [0, 1, 2], [1, 0], [-1, 8],
  [2 ** 62, 2 ** 62], ['0', '8'], { a: 1 }, 'F32', 'BOGUS',
];

type Mutator = (base: Uint8Array) => Uint8Array;
const mutators: Record<string, Mutator> = {
  byteFlip(base) {
    const b = base.slice();
    const { header } = split(base);
    const flips = 1 + int(8);
    for (let i = 0; i < flips; i++) {
      const inHeader = rng.random() < 0.7;
      const at = inHeader ? int(8 + header.length) : int(b.length);
      b[at] = int(256);
    }
    return b;
  },
  lengthPrefix(base) {
    const b = base.slice();
    const { header } = split(base);
    const n = header.length;
    const choices: bigint[] = [
      0n, 1n, BigInt(n + 1 + int(16)), BigInt(Math.max(0, n - 1 - int(16))), BigInt(rng.nextUint32()), 2n ** BigInt(int(64)),
      BigInt(MAX_HEADER_SIZE), BigInt(MAX_HEADER_SIZE + 1), BigInt(b.length), BigInt(b.length - 8), 2n ** 64n - 1n,
    ];
    new DataView(b.buffer).setBigUint64(0, pick(choices), true);
    return b;
  },
  truncateOrExtend(base) {
    if (rng.random() < 0.5) return base.slice(0, int(base.length));
    const extra = randomBytes(1 + int(64));
    const out = new Uint8Array(base.length + extra.length);
    out.set(base);
    out.set(extra, base.length);
    return out;
  },
  jsonField(base) {
    const { header, data } = split(base);
    const obj = JSON.parse(header) as Record<string, unknown>;
    const names = Object.keys(obj);
    const name = pick(names);
    const entry = obj[name];
    const op = int(9);
    if (name === '__metadata__' || op === 0) {
      obj.__metadata__ = pick([...EVIL, { format: pick(EVIL) }, { format: 'pt' }]);
    } else if (op === 1) {
      (entry as Record<string, unknown>).dtype = rng.random() < 0.6 ? pick(SAFETENSORS_DTYPES) : pick(EVIL);
    } else if (op === 2) {
      const shape = (entry as { shape: unknown[] }).shape;
      if (shape.length && rng.random() < 0.7) shape[int(shape.length)] = pick(EVIL);
      else (entry as Record<string, unknown>).shape = pick(EVIL);
    } else if (op === 3) {
      const off = (entry as { data_offsets: unknown[] }).data_offsets;
      if (rng.random() < 0.7) off[int(2)] = pick([...EVIL, (off[0] as number) + 1, (off[1] as number) - 1, (off[1] as number) + 8]);
      else (entry as Record<string, unknown>).data_offsets = pick(EVIL);
    } else if (op === 4) {
      delete (entry as Record<string, unknown>)[pick(['dtype', 'shape', 'data_offsets'])];
    } else if (op === 5) {
      const other = obj[pick(names)] as { data_offsets?: unknown };
      if (other && typeof other === 'object' && 'data_offsets' in other) {
        const t = (entry as { data_offsets: unknown }).data_offsets;
        (entry as { data_offsets: unknown }).data_offsets = other.data_offsets;
        other.data_offsets = t;
      }
    } else if (op === 8 && entry && typeof entry === 'object' && 'data_offsets' in entry) {
      // Move a tensor's byte range as a whole: gaps, overlaps, ranges past the end.
      const off = (entry as { data_offsets: number[] }).data_offsets;
      const k = (1 + int(16)) * (rng.random() < 0.5 ? -1 : 1);
      (entry as { data_offsets: number[] }).data_offsets = [off[0] + k, off[1] + k];
    } else if (op === 6) {
      obj[name] = pick(EVIL);
    } else {
      // Duplicate a key at the text level.
      const text = JSON.stringify(obj);
      const dupe = `${JSON.stringify(name)}:${JSON.stringify(entry)}`;
      const padded = (text.slice(0, -1) + ',' + dupe + '}').padEnd(Math.ceil((text.length + dupe.length + 1) / 8) * 8, ' ');
      return join8(padded, data);
    }
    let text = JSON.stringify(obj);
    if (rng.random() < 0.8) text = text.padEnd(Math.ceil(text.length / 8) * 8, ' ');
    return join8(text, data);
  },
  jsonText(base) {
    const { header, data } = split(base);
    const pieces = ['{', '}', '"', ',', ':', '[', ']', '\\', '\u0000', 'é', '0', '9', '-', 'e', ' ', '\\u0000', '\\ud800', 'null', '"__metadata__"'];
    let text = header;
    const edits = 1 + int(3);
    for (let i = 0; i < edits; i++) {
      const at = int(text.length + 1);
      if (rng.random() < 0.5) text = text.slice(0, at) + pick(pieces) + text.slice(at);
      else text = text.slice(0, at) + text.slice(at + 1 + int(4));
    }
    return join8(text, data);
  },
  randomBuffer() {
    const b = randomBytes(int(300));
    if (b.length >= 8 && rng.random() < 0.5) new DataView(b.buffer).setBigUint64(0, BigInt(int(b.length)), true);
    return b;
  },
  crossSplice(base) {
    const other = split(baseFile());
    const { header } = split(base);
    return rng.random() < 0.5 ? join8(header, other.data) : join8(other.header, split(base).data);
  },
  unchanged(base) {
    return base;
  },
};

type Outcome = { ok: true; keys: string[]; hex: Record<string, string> } | { ok: false; code: string };

function checkParse(bytes: Uint8Array): Outcome {
  let parsed;
  try {
    parsed = parseSafetensors(bytes);
  } catch (e) {
    if (!(e instanceof SafetensorsError)) throw new Error(`non-SafetensorsError thrown: ${(e as Error)?.stack ?? String(e)}`);
    return { ok: false, code: e.code };
  }
  let total = 0;
  const hex: Record<string, string> = {};
  for (const name of parsed.offsetKeys()) {
    const info = parsed.info(name);
    total += info.byteLength;
    const raw = parsed.raw(name);
    expect(raw.bytes.length).toBe(info.byteLength);
    if (info.hostDType !== undefined) {
      const t = parsed.tensor(name);
      expect(t.data.byteLength).toBe(info.byteLength);
      expect(t.numel).toBe(info.numel);
    }
    hex[name] = Buffer.from(raw.bytes).toString('hex');
  }
  // Nothing a valid parse describes can exceed the input.
  expect(total).toBeLessThanOrEqual(bytes.length);
  return { ok: true, keys: parsed.offsetKeys(), hex };
}

async function checkFile(path: string): Promise<Outcome> {
  let f: SafetensorsFile;
  try {
    f = await SafetensorsFile.open(path);
  } catch (e) {
    if (!(e instanceof SafetensorsError)) throw new Error(`non-SafetensorsError thrown by open: ${(e as Error)?.stack ?? String(e)}`);
    return { ok: false, code: e.code };
  }
  try {
    const hex: Record<string, string> = {};
    for (const name of f.offsetKeys()) hex[name] = Buffer.from((await f.readRaw(name)).bytes).toString('hex');
    expect(f.bytesRead).toBeLessThanOrEqual(f.fileSize);
    return { ok: true, keys: f.offsetKeys(), hex };
  } finally {
    await f.close();
  }
}

describe('safetensors fuzz', () => {
  const tmp = tempDir('st-fuzz-');
  afterAll(() => tmp.cleanup());

  it(`${ITERATIONS} mutated and random inputs (seed ${SEED}) give a SafetensorsError or a valid parse, never anything else`, async () => {
    const bases = Array.from({ length: 8 }, baseFile);
    const names = Object.keys(mutators);
    const counts: Record<string, number> = {};
    let slowest = 0;
    for (let i = 0; i < ITERATIONS; i++) {
      const mutator = names[i % names.length];
      const input = mutators[mutator](pick(bases));
      const t0 = performance.now();
      let outcome: Outcome;
      try {
        outcome = checkParse(input);
      } catch (e) {
        throw new Error(`iteration ${i} (${mutator}), input ${Buffer.from(input.subarray(0, 200)).toString('hex')}: ${(e as Error).message}`);
      }
      slowest = Math.max(slowest, performance.now() - t0);
      const key = outcome.ok ? 'valid' : outcome.code;
      counts[key] = (counts[key] ?? 0) + 1;
      if (i % FILE_EVERY === 0) {
        const path = join(tmp.dir, `in${i}.safetensors`);
        writeFileSync(path, input);
        const fromFile = await checkFile(path);
        expect(fromFile, `iteration ${i} (${mutator}): file reader disagrees with buffer reader`).toEqual(outcome);
      }
    }
    console.log(`[safetensors fuzz] ${ITERATIONS} inputs, seed ${SEED}, slowest ${slowest.toFixed(1)} ms; outcomes ${JSON.stringify(counts)}`);
    expect(slowest).toBeLessThan(1000);
    // The fuzzer must exercise both sides: valid parses and a spread of rejections.
    expect(counts.valid).toBeGreaterThan(100);
    expect(Object.keys(counts).length).toBeGreaterThan(12);
    expect((counts.OVERLAPPING_OFFSETS ?? 0) + (counts.GAP_IN_DATA ?? 0)).toBeGreaterThan(0);
  });
});
