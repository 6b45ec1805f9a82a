/**
 * The TensorBoard tracker, on our own event-file writer (no TensorFlow, no
 * protobuf library). Writes `<loggingDir>/<project>/events.out.tfevents.*`:
 * numbers and booleans as scalars, strings as text, `{name: number}` groups as
 * one chart with a run per name (like `add_scalars`), images as PNG,
 * histograms, and the config as hparams plugin data plus `hparams.yml`.
 * @module
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { type TrackerEvent, type TrackerImage, type TrackerInit } from '@accelerate/core';
import { sanitizeLogValues } from '@accelerate/core/internal';
import { EventTracker, flattenConfig } from '../base.js';
import { encodePng, pngInfo } from './png.js';
import {
  EventFileWriter,
  histogramValue,
  imageValue,
  scalarValue,
  sessionEndValue,
  sessionStartValue,
  textValue,
} from './tfevents.js';
import type { ProtoWriter } from './protobuf.js';

/** `initKwargs.tensorboard` options. */
export interface TensorBoardTrackerOptions {
  /** Also write the config to `hparams.yml` beside the event file (Accelerate does). Default true. */
  hparamsFile?: boolean;
}

/** PNG bytes and size of a normalised image. */
export function imageToPng(img: TrackerImage): { png: Uint8Array; width: number; height: number; channels: number } {
  if (img.format === 'png') return { png: img.data, ...pngInfo(img.data) };
  return { png: encodePng(img.data, img.width, img.height, img.channels), width: img.width, height: img.height, channels: img.channels };
}

/** Writes TensorBoard event files. */
export class TensorBoardTracker extends EventTracker {
  static readonly trackerName = 'tensorboard';
  static readonly requiresLoggingDirectory = true;
  readonly name = 'tensorboard';
  readonly requiresLoggingDirectory = true;
  /** The run's folder (`--logdir` for TensorBoard can be it or any parent). */
  readonly logDir: string;
  private writer: EventFileWriter | undefined;
  private readonly children = new Map<string, EventFileWriter>();

  constructor(init: TrackerInit) {
    super(init);
    this.logDir = this.runDir();
  }

  /** The main event-file writer (its `path` is the file). */
  get tracker(): EventFileWriter | undefined {
    return this.writer;
  }

  start(): void {
    this.writer ??= new EventFileWriter(this.logDir);
  }

  private child(name: string): EventFileWriter {
    let w = this.children.get(name);
    if (!w) {
      w = new EventFileWriter(join(this.logDir, name.replace(/[\\/]/g, '_')));
      this.children.set(name, w);
    }
    return w;
  }

  onEvent(event: TrackerEvent): void {
    this.start();
    const w = this.writer!;
    const step = event.type !== 'start' && event.type !== 'config' && event.type !== 'finish' ? (event.step ?? 0) : 0;
    switch (event.type) {
      case 'config': {
        const flat = flattenConfig(event.values, '/');
        w.write(event.time, 0, [sessionStartValue(flat, event.time)]);
        if ((this.init.options as TensorBoardTrackerOptions).hparamsFile !== false) {
          writeFileSync(join(this.logDir, 'hparams.yml'), stringify(JSON.parse(JSON.stringify(event.values))));
        }
        return;
      }
      case 'metrics': {
        const values: ProtoWriter[] = [];
        for (const [k, v] of Object.entries(sanitizeLogValues(event.values).values)) {
          if (typeof v === 'number') values.push(scalarValue(k, v));
          else if (typeof v === 'boolean') values.push(scalarValue(k, v ? 1 : 0));
          else if (typeof v === 'string') values.push(textValue(k, v));
          else for (const [inner, iv] of Object.entries(v)) this.child(`${k}_${inner}`).write(event.time, step, [scalarValue(k, iv)]);
        }
        w.write(event.time, step, values);
        return;
      }
      case 'text':
        w.write(event.time, step, Object.entries(event.values).map(([k, v]) => textValue(k, v)));
        return;
      case 'images':
        w.write(
          event.time,
          step,
          Object.entries(event.images).map(([k, img]) => {
            const { png, width, height, channels } = imageToPng(img);
            return imageValue(k, png, width, height, channels);
          }),
        );
        return;
      case 'histograms':
        w.write(event.time, step, Object.entries(event.values).map(([k, h]) => histogramValue(k, h)));
        return;
      case 'artifact':
        w.write(event.time, step, [textValue(`artifacts/${event.name}`, event.path)]);
        return;
      case 'finish':
        w.write(event.time, 0, [sessionEndValue(event.status === 'finished' ? 1 : 2, event.time)]);
        return;
      case 'start':
        return;
    }
  }

  finish(): void {
    this.writer?.close();
    for (const c of this.children.values()) c.close();
    this.children.clear();
    this.writer = undefined;
  }
}
