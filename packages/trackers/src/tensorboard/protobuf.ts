/**
 * A minimal protocol-buffers encoder: enough to hand-write TensorBoard's
 * `Event`/`Summary` messages without a protobuf dependency.
 * @module
 */

const WIRE_VARINT = 0;
const WIRE_64 = 1;
const WIRE_LEN = 2;
const WIRE_32 = 5;

/** Builds one protobuf message; nested messages are other writers. Fields with default values are written only when asked. */
export class ProtoWriter {
  private readonly chunks: Uint8Array[] = [];
  private length = 0;

  private push(bytes: Uint8Array): this {
    this.chunks.push(bytes);
    this.length += bytes.length;
    return this;
  }

  private varintBytes(value: bigint): Uint8Array {
    // Negative int64 values are written as their 64-bit two's complement (10 bytes), as protobuf does.
    let v = BigInt.asUintN(64, value);
    const out: number[] = [];
    do {
      let b = Number(v & 0x7fn);
      v >>= 7n;
      if (v !== 0n) b |= 0x80;
      out.push(b);
    } while (v !== 0n);
    return Uint8Array.from(out);
  }

  private key(field: number, wire: number): this {
    return this.push(this.varintBytes(BigInt((field << 3) | wire)));
  }

  /** int32 / int64 / enum / bool field. */
  varint(field: number, value: number | bigint | boolean): this {
    const v = typeof value === 'boolean' ? (value ? 1n : 0n) : BigInt(value);
    return this.key(field, WIRE_VARINT).push(this.varintBytes(v));
  }

  /** `double` field. */
  double(field: number, value: number): this {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, value, true);
    return this.key(field, WIRE_64).push(b);
  }

  /** `float` field. */
  float(field: number, value: number): this {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, value, true);
    return this.key(field, WIRE_32).push(b);
  }

  /** `bytes` field. */
  bytes(field: number, value: Uint8Array): this {
    return this.key(field, WIRE_LEN).push(this.varintBytes(BigInt(value.length))).push(value);
  }

  /** `string` field (UTF-8). */
  string(field: number, value: string): this {
    return this.bytes(field, new TextEncoder().encode(value));
  }

  /** Embedded message field. */
  message(field: number, value: ProtoWriter): this {
    return this.bytes(field, value.finish());
  }

  /** `repeated double` field, packed. */
  packedDoubles(field: number, values: readonly number[]): this {
    const b = new Uint8Array(values.length * 8);
    const dv = new DataView(b.buffer);
    values.forEach((v, i) => dv.setFloat64(i * 8, v, true));
    return this.bytes(field, b);
  }

  /** The encoded message. */
  finish(): Uint8Array {
    const out = new Uint8Array(this.length);
    let o = 0;
    for (const c of this.chunks) {
      out.set(c, o);
      o += c.length;
    }
    return out;
  }
}
