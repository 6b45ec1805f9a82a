/**
 * The JSONL tracker: the run's event stream, one event per line, written
 * synchronously so nothing is lost if the process dies. It is the default
 * tracker (the hub adds it whenever trackers run and a logging directory is
 * set) and what `replay` and the dashboard read.
 * @module
 */
import { closeSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { encodeEvent, type TrackerEvent, type TrackerInit } from '@accelerate/core';
import { EventTracker } from './base.js';

/** `initKwargs.jsonl` options. */
export interface JsonlTrackerOptions {
  /** Write on every process (`events.rank<k>.jsonl` for rank k > 0), so the dashboard can plot per rank. Default false. */
  allRanks?: boolean;
  /** File name for rank 0. Default `events.jsonl`. */
  fileName?: string;
}

/** Writes every event as one JSON line under `<loggingDir>/<project>/`. */
export class JsonlTracker extends EventTracker {
  static readonly trackerName = 'jsonl';
  static readonly requiresLoggingDirectory = true;
  /** Built on every process; instances on other ranks step back unless `allRanks` is set. */
  static readonly mainProcessOnly = false;
  readonly name = 'jsonl';
  readonly requiresLoggingDirectory = true;
  override readonly mainProcessOnly: boolean;
  /** Absolute path of the file this process writes. */
  readonly path: string;
  private fd: number | undefined;

  constructor(init: TrackerInit) {
    super(init);
    const o = init.options as JsonlTrackerOptions;
    this.mainProcessOnly = !o.allRanks;
    const base = o.fileName ?? 'events.jsonl';
    const file = init.processIndex > 0 ? base.replace(/\.jsonl$/, '') + `.rank${init.processIndex}.jsonl` : base;
    this.path = join(this.runDir(), file);
  }

  /** The file descriptor, opened in append mode (a resumed run continues its file). */
  get tracker(): number | undefined {
    return this.fd;
  }

  start(): void {
    if (this.fd !== undefined) return;
    mkdirSync(this.runDir(), { recursive: true });
    this.fd = openSync(this.path, 'a');
  }

  onEvent(event: TrackerEvent): void {
    if (this.fd === undefined) this.start();
    writeSync(this.fd!, encodeEvent(event) + '\n');
  }

  finish(): void {
    if (this.fd === undefined) return;
    closeSync(this.fd);
    this.fd = undefined;
  }
}
