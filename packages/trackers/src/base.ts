/**
 * Shared base of the built-in trackers: every typed method
 * (`log`, `storeInitConfiguration`, …) becomes a {@link TrackerEvent} and
 * goes through one `onEvent` path, so a live run and a replay of its JSONL
 * stream write the same thing, with the event's own time and step.
 * @module
 */
import { join } from 'node:path';
import type { ArtifactOptions, HistogramData, LogValue, Tracker, TrackerEvent, TrackerImage, TrackerInit } from '@accelerate/core';

/** Base class of the built-in trackers. Subclasses implement {@link EventTracker.onEvent}. */
export abstract class EventTracker implements Tracker {
  abstract readonly name: string;
  abstract readonly requiresLoggingDirectory: boolean;
  readonly mainProcessOnly: boolean = true;
  /** Project name given to `initTrackers`. */
  readonly project: string;
  /** Global rank of this process. */
  readonly processIndex: number;
  protected readonly init: TrackerInit;

  constructor(init: TrackerInit) {
    this.init = init;
    this.project = init.project;
    this.processIndex = init.processIndex;
  }

  /** Handle one event of the stream (the only method subclasses must write). */
  abstract onEvent(event: TrackerEvent): void | Promise<void>;

  /** Close files or connections. */
  abstract finish(): void | Promise<void>;

  /** Folder `<loggingDir>/<project>`; throws a clear error when there is no logging directory. */
  protected runDir(): string {
    if (!this.init.loggingDir) {
      throw new Error(`The ${this.name} tracker writes files and needs a logging directory: set projectConfig.loggingDir (or projectDir) on the Accelerator.`);
    }
    return join(this.init.loggingDir, this.project);
  }

  protected stamp(): { time: number; rank: number } {
    return { time: Date.now() / 1000, rank: this.processIndex };
  }

  storeInitConfiguration(values: Record<string, unknown>): void | Promise<void> {
    return this.onEvent({ type: 'config', values, ...this.stamp() });
  }

  log(values: Record<string, LogValue>, step?: number, options?: Record<string, unknown>): void | Promise<void> {
    return this.onEvent({ type: 'metrics', values, step, kwargs: options ? { [this.name]: options } : undefined, ...this.stamp() });
  }

  logImages(images: Record<string, TrackerImage>, step?: number): void | Promise<void> {
    return this.onEvent({ type: 'images', images, step, ...this.stamp() });
  }

  logText(values: Record<string, string>, step?: number): void | Promise<void> {
    return this.onEvent({ type: 'text', values, step, ...this.stamp() });
  }

  logHistograms(values: Record<string, HistogramData>, step?: number): void | Promise<void> {
    return this.onEvent({ type: 'histograms', values, step, ...this.stamp() });
  }

  logArtifact(path: string, options: ArtifactOptions = {}): void | Promise<void> {
    return this.onEvent({ type: 'artifact', path, name: options.name ?? path.split(/[\\/]/).pop() ?? path, step: options.step, ...this.stamp() });
  }
}

/** `{a: {b: 1}}` → `{'a/b': 1}`; numbers stay numbers, everything else as given. */
export function flattenGroups(values: Record<string, LogValue>): Record<string, number | string | boolean> {
  const out: Record<string, number | string | boolean> = {};
  for (const [k, v] of Object.entries(values)) {
    if (v !== null && typeof v === 'object') for (const [ik, iv] of Object.entries(v)) out[`${k}/${ik}`] = iv;
    else out[k] = v;
  }
  return out;
}

/** Nested config objects flattened with `sep` (`{optim: {lr: 1}}` → `optim.lr`); arrays and other objects as JSON. */
export function flattenConfig(values: Record<string, unknown>, sep = '.', prefix = ''): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const [k, v] of Object.entries(values)) {
    const key = prefix ? `${prefix}${sep}${k}` : k;
    if (typeof v === 'number' || typeof v === 'string' || typeof v === 'boolean') out[key] = v;
    else if (typeof v === 'bigint') out[key] = Number(v);
    else if (v === null || v === undefined) out[key] = String(v);
    else if (typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) Object.assign(out, flattenConfig(v as Record<string, unknown>, sep, key));
    else out[key] = JSON.stringify(v) ?? String(v);
  }
  return out;
}
