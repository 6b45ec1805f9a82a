/**
 * The CSV tracker: one wide table `metrics.csv` (columns `step`, `time`,
 * `rank`, then one per metric in order of first appearance) that pandas,
 * spreadsheets and `csv-parse` read as is, plus `hparams.json`.
 * @module
 */
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type TrackerEvent, type TrackerInit } from '@accelerate/core';
import { sanitizeLogValues, writeFileAtomicSync } from '@accelerate/core/internal';
import { EventTracker, flattenGroups } from './base.js';

/** `initKwargs.csv` options. */
export interface CsvTrackerOptions {
  /** File name. Default `metrics.csv`. */
  fileName?: string;
}

const FIXED = ['step', 'time', 'rank'];

/** One CSV field, quoted when it holds a comma, quote or line break (RFC 4180). */
export function csvField(v: unknown): string {
  if (v === undefined || v === null) return '';
  const s = typeof v === 'number' ? String(v) : String(v);
  return /[",\r\n]/.test(s) || s !== s.trim() ? `"${s.replace(/"/g, '""')}"` : s;
}

/** Records of an RFC 4180 text (what {@link csvField} writes). */
export function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') (field += '"'), (i += 2);
      else if (c === '"') (quoted = false), i++;
      else (field += c), i++;
    } else if (c === '"') (quoted = true), i++;
    else if (c === ',') row.push(field), (field = ''), i++;
    else if (c === '\n' || c === '\r') {
      row.push(field), rows.push(row), (row = []), (field = '');
      i += c === '\r' && text[i + 1] === '\n' ? 2 : 1;
    } else (field += c), i++;
  }
  if (field !== '' || row.length > 0) row.push(field), rows.push(row);
  return rows;
}

/** Writes metrics to `<loggingDir>/<project>/metrics.csv`. */
export class CsvTracker extends EventTracker {
  static readonly trackerName = 'csv';
  static readonly requiresLoggingDirectory = true;
  readonly name = 'csv';
  readonly requiresLoggingDirectory = true;
  /** Path of the CSV file. */
  readonly path: string;
  private columns: string[] = [...FIXED];
  private started = false;

  constructor(init: TrackerInit) {
    super(init);
    this.path = join(this.runDir(), (init.options as CsvTrackerOptions).fileName ?? 'metrics.csv');
  }

  /** The file path. */
  get tracker(): string {
    return this.path;
  }

  start(): void {
    this.started = true;
    mkdirSync(this.runDir(), { recursive: true });
    if (existsSync(this.path)) {
      // A resumed run keeps its columns.
      const header = parseCsv(readFileSync(this.path, 'utf8'))[0];
      if (header && FIXED.every((c, i) => header[i] === c)) this.columns = header;
      else writeFileSync(this.path, this.columns.join(',') + '\n');
    } else {
      writeFileSync(this.path, this.columns.join(',') + '\n');
    }
  }

  onEvent(event: TrackerEvent): void {
    if (!this.started) this.start();
    if (event.type === 'config') {
      mkdirSync(this.runDir(), { recursive: true });
      writeFileSync(join(this.runDir(), 'hparams.json'), JSON.stringify(event.values, null, 2) + '\n');
      return;
    }
    if (event.type !== 'metrics' && event.type !== 'text') return;
    const values = event.type === 'text' ? event.values : flattenGroups(sanitizeLogValues(event.values).values);
    const keys = Object.keys(values);
    if (keys.length === 0) return;
    const added = keys.filter((k) => !this.columns.includes(k));
    if (added.length > 0) this.addColumns(added);
    const row: Record<string, unknown> = { step: event.step, time: event.time, rank: event.rank, ...values };
    appendFileSync(this.path, this.columns.map((c) => csvField(row[c])).join(',') + '\n');
  }

  /** New metric: rewrite the file once with the wider header (earlier rows get empty cells). */
  private addColumns(added: string[]): void {
    const rows = existsSync(this.path) ? parseCsv(readFileSync(this.path, 'utf8')).slice(1) : [];
    this.columns = [...this.columns, ...added];
    const pad = added.map(() => '');
    const text = [this.columns, ...rows.map((r) => [...r, ...pad])].map((r) => r.map(csvField).join(',')).join('\n') + '\n';
    writeFileAtomicSync(this.path, text);
  }

  finish(): void {}
}
