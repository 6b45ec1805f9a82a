/** Fixtures shared by the checkpoint tests. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HostTensor, hostArrayConstructor, type DType, type HostArray } from '../../src/tensor/host-tensor.js';
import { SeededRandom } from '../../src/testing/prng.js';
import { numberToFloat16Bits, numberToBfloat16Bits } from '../../src/ops/float16.js';

export const ALL_HOST_DTYPES: DType[] = ['float64', 'float32', 'float16', 'bfloat16', 'int64', 'int32', 'int16', 'int8', 'uint8', 'bool'];

/** A tensor of `dtype` and `shape` with seeded random values covering the dtype's range. */
export function randomTensor(rng: SeededRandom, dtype: DType, shape: number[]): HostTensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const Ctor = hostArrayConstructor(dtype) as unknown as { new (n: number): HostArray };
  const data = new Ctor(n);
  for (let i = 0; i < n; i++) {
    const u = rng.nextUint32();
    switch (dtype) {
      case 'float64':
      case 'float32':
        data[i] = rng.normal(0, 3);
        break;
      case 'float16':
        data[i] = numberToFloat16Bits(rng.normal(0, 3));
        break;
      case 'bfloat16':
        data[i] = numberToBfloat16Bits(rng.normal(0, 3));
        break;
      case 'int64':
        (data as BigInt64Array)[i] = BigInt.asIntN(64, (BigInt(u) << 32n) | BigInt(rng.nextUint32()));
        break;
      case 'int32':
        data[i] = u | 0;
        break;
      case 'int16':
        data[i] = (u & 0xffff) - 0x8000;
        break;
      case 'int8':
        data[i] = (u & 0xff) - 0x80;
        break;
      case 'uint8':
        data[i] = u & 0xff;
        break;
      case 'bool':
        data[i] = u & 1;
        break;
    }
  }
  return new HostTensor(data, shape, dtype);
}

/** Raw little-endian bytes of a tensor's data. */
export function bytesOf(t: HostTensor): Uint8Array {
  return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

/** Hex of a tensor's bytes. */
export function hexOf(t: HostTensor): string {
  return Buffer.from(bytesOf(t)).toString('hex');
}

/** A fresh temporary folder and its cleanup. */
export function tempDir(prefix = 'ckpt-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * A file built by hand: `header` (an object, or raw text) padded to 8 bytes,
 * then `data`. `headerLength` overrides the length prefix.
 */
export function buildFile(header: unknown, data: Uint8Array | number = 0, headerLength?: bigint): Uint8Array {
  const text = typeof header === 'string' ? header : JSON.stringify(header);
  let json = new TextEncoder().encode(text);
  const padded = Math.ceil(json.length / 8) * 8;
  const h = new Uint8Array(padded).fill(0x20);
  h.set(json);
  json = h;
  const body = typeof data === 'number' ? new Uint8Array(data) : data;
  const out = new Uint8Array(8 + json.length + body.length);
  new DataView(out.buffer).setBigUint64(0, headerLength ?? BigInt(json.length), true);
  out.set(json, 8);
  out.set(body, 8 + json.length);
  return out;
}
