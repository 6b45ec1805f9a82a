/**
 * TensorBoard event files written by hand: TFRecord framing (length,
 * masked CRC-32C of the length, payload, masked CRC-32C of the payload) around
 * `tensorboard.Event` protobufs holding `Summary` values for scalars, text,
 * images, histograms and the hparams plugin.
 * @module
 */
import { closeSync, fsyncSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { HistogramData } from '@accelerate/core';
import { maskedCrc32c } from './crc32c.js';
import { ProtoWriter } from './protobuf.js';

const DT_STRING = 7;
const DT_FLOAT = 1;

/** One TFRecord: `uint64 length | uint32 masked_crc(length) | data | uint32 masked_crc(data)`, little-endian. */
export function tfRecord(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(16 + data.length);
  const dv = new DataView(out.buffer);
  dv.setBigUint64(0, BigInt(data.length), true);
  dv.setUint32(8, maskedCrc32c(out.subarray(0, 8)), true);
  out.set(data, 12);
  dv.setUint32(12 + data.length, maskedCrc32c(data), true);
  return out;
}

/** `Summary.Value` with a plugin's `SummaryMetadata`. */
function pluginMetadata(pluginName: string, content: Uint8Array = new Uint8Array(0), dataClass?: number): ProtoWriter {
  const pd = new ProtoWriter().string(1, pluginName);
  if (content.length) pd.bytes(2, content);
  const md = new ProtoWriter().message(1, pd);
  if (dataClass !== undefined) md.varint(4, dataClass);
  return md;
}

/** A scalar summary value (`simple_value`, float32 as TensorBoard stores it). */
export function scalarValue(tag: string, value: number): ProtoWriter {
  return new ProtoWriter().string(1, tag).float(2, value);
}

/**
 * A text-plugin summary value: a 1-element DT_STRING tensor, tagged `<tag>/text_summary`
 * as PyTorch's `SummaryWriter.add_text` (which Python Accelerate uses) tags it, so runs written
 * by either side show the same tag names in TensorBoard.
 */
export function textValue(tag: string, text: string): ProtoWriter {
  const shape = new ProtoWriter().message(2, new ProtoWriter().varint(1, 1));
  const tensor = new ProtoWriter().varint(1, DT_STRING).message(2, shape).string(8, text);
  return new ProtoWriter().string(1, `${tag}/text_summary`).message(9, pluginMetadata('text')).message(8, tensor);
}

/** An image summary value (`Summary.Image` with encoded PNG). */
export function imageValue(tag: string, png: Uint8Array, width: number, height: number, channels: number): ProtoWriter {
  const image = new ProtoWriter().varint(1, height).varint(2, width).varint(3, channels).bytes(4, png);
  return new ProtoWriter().string(1, tag).message(4, image);
}

/** A histogram summary value (`HistogramProto`). */
export function histogramValue(tag: string, h: HistogramData): ProtoWriter {
  const histo = new ProtoWriter().double(1, h.min).double(2, h.max).double(3, h.num).double(4, h.sum).double(5, h.sumSquares);
  histo.packedDoubles(6, h.bucketLimits).packedDoubles(7, h.bucketCounts);
  return new ProtoWriter().string(1, tag).message(5, histo);
}

/** A hyper-parameter value for the hparams plugin (`google.protobuf.Value`). */
export type HParamValue = number | string | boolean;

function protobufValue(v: HParamValue): ProtoWriter {
  if (typeof v === 'number') return new ProtoWriter().double(2, v);
  if (typeof v === 'boolean') return new ProtoWriter().varint(4, v);
  return new ProtoWriter().string(3, v);
}

// The hparams plugin stores its data in the metadata; the tensor is an empty float vector.
function nullTensor(): ProtoWriter {
  const shape = new ProtoWriter().message(2, new ProtoWriter().varint(1, 0));
  return new ProtoWriter().varint(1, DT_FLOAT).message(2, shape);
}

function hparamsSummaryValue(tag: string, pluginData: ProtoWriter): ProtoWriter {
  return new ProtoWriter().string(1, tag).message(9, pluginMetadata('hparams', pluginData.finish())).message(8, nullTensor());
}

/** `_hparams_/session_start_info`: this run's hyper-parameters (the plugin infers the experiment from all runs). */
export function sessionStartValue(hparams: Record<string, HParamValue>, startTimeSecs: number): ProtoWriter {
  const ssi = new ProtoWriter();
  for (const [k, v] of Object.entries(hparams)) ssi.message(1, new ProtoWriter().string(1, k).message(2, protobufValue(v)));
  ssi.double(5, startTimeSecs);
  return hparamsSummaryValue('_hparams_/session_start_info', new ProtoWriter().varint(1, 0).message(3, ssi));
}

/** `_hparams_/session_end_info` with `status` (1 success, 2 failure). */
export function sessionEndValue(status: 1 | 2, endTimeSecs: number): ProtoWriter {
  const sei = new ProtoWriter().varint(1, status).double(2, endTimeSecs);
  return hparamsSummaryValue('_hparams_/session_end_info', new ProtoWriter().varint(1, 0).message(4, sei));
}

/** A `tensorboard.Event` with a summary of `values`. */
export function summaryEvent(wallTime: number, step: number, values: ProtoWriter[]): Uint8Array {
  const summary = new ProtoWriter();
  for (const v of values) summary.message(1, v);
  return new ProtoWriter().double(1, wallTime).varint(2, step).message(5, summary).finish();
}

let fileCounter = 0;

/** Appends events to one `events.out.tfevents.*` file; every write reaches the file at once, so TensorBoard sees it live. */
export class EventFileWriter {
  /** Path of the file. */
  readonly path: string;
  private fd: number | undefined;

  constructor(dir: string, wallTime = Date.now() / 1000) {
    mkdirSync(dir, { recursive: true });
    this.path = join(dir, `events.out.tfevents.${Math.floor(wallTime)}.${hostname()}.${process.pid}.${fileCounter++}`);
    this.fd = openSync(this.path, 'w');
    this.writeRaw(new ProtoWriter().double(1, wallTime).string(3, 'brain.Event:2').finish());
  }

  /** Write one serialized `Event`. */
  writeRaw(event: Uint8Array): void {
    if (this.fd === undefined) throw new Error(`EventFileWriter: ${this.path} is closed.`);
    writeSync(this.fd, tfRecord(event));
  }

  /** Write a summary event. */
  write(wallTime: number, step: number, values: ProtoWriter[]): void {
    if (values.length) this.writeRaw(summaryEvent(wallTime, step, values));
  }

  /** Flush to disk and close. */
  close(): void {
    if (this.fd === undefined) return;
    fsyncSync(this.fd);
    closeSync(this.fd);
    this.fd = undefined;
  }
}
