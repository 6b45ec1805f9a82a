/**
 * JSONL encoding of the event stream: one event per line, lossless for what
 * JSON cannot hold (NaN and infinities, bytes, bigints), so a replay gives the
 * trackers exactly what the run logged.
 *
 * Tagged values are single-key objects: `{"$f":"NaN"}` (also `"Infinity"`,
 * `"-Infinity"`), `{"$b64":"…"}` (a `Uint8Array`), `{"$bigint":"123"}`, and
 * `{"$unrepresentable":"function"}` for what cannot be stored. Object
 * properties whose value is `undefined` are left out, as JSON does. A user key
 * that starts with `$` is written with one more `$` in front, so user data
 * never looks like a tag.
 * @module
 */
import { readFileSync } from 'node:fs';
import { TRACKER_EVENT_TYPES, type TrackerEvent } from './events.js';

function isTypedArray(x: unknown): x is ArrayLike<number | bigint> & ArrayBufferView {
  return ArrayBuffer.isView(x) && !(x instanceof DataView);
}

/** A value made JSON-safe with the tags described in the module doc. */
export function toJsonSafe(value: unknown, seen: Set<object> = new Set()): unknown {
  switch (typeof value) {
    case 'number':
      return Number.isFinite(value) ? value : { $f: String(value) };
    case 'string':
    case 'boolean':
      return value;
    case 'bigint':
      return { $bigint: value.toString() };
    case 'undefined':
    case 'function':
    case 'symbol':
      return { $unrepresentable: typeof value };
  }
  if (value === null) return null;
  const obj = value as object;
  if (obj instanceof Uint8Array) return { $b64: Buffer.from(obj.buffer, obj.byteOffset, obj.byteLength).toString('base64') };
  if (seen.has(obj)) return { $unrepresentable: 'cycle' };
  seen.add(obj);
  try {
    if (isTypedArray(obj)) return Array.from(obj as ArrayLike<number | bigint>, (v) => toJsonSafe(v, seen));
    if (Array.isArray(obj)) return obj.map((v) => toJsonSafe(v, seen));
    if (obj instanceof Date) return obj.toISOString();
    if (obj instanceof Map) return toJsonSafe(Object.fromEntries(obj), seen);
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(obj)) {
      if (v === undefined) continue; // like JSON: an absent optional field, not a value
      out[k.startsWith('$') ? `$${k}` : k] = toJsonSafe(v, seen);
    }
    return out;
  } finally {
    seen.delete(obj);
  }
}

/** Inverse of {@link toJsonSafe}. `$unrepresentable` tags stay as they are (the value is gone). */
export function fromJsonSafe(value: unknown): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map(fromJsonSafe);
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj);
  if (keys.length === 1) {
    const [k] = keys;
    const v = obj[k];
    if (k === '$f' && typeof v === 'string') return Number(v);
    if (k === '$b64' && typeof v === 'string') return new Uint8Array(Buffer.from(v, 'base64'));
    if (k === '$bigint' && typeof v === 'string') return BigInt(v);
    if (k === '$unrepresentable') return obj;
  }
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obj)) out[k.startsWith('$$') ? k.slice(1) : k] = fromJsonSafe(v);
  return out;
}

/** One JSONL line (without the newline) for `event`. */
export function encodeEvent(event: TrackerEvent): string {
  return JSON.stringify(toJsonSafe(event));
}

/** The event on one JSONL line; throws a clear error for a line that is not an event. */
export function decodeEvent(line: string): TrackerEvent {
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch (e) {
    throw new SyntaxError(`not a JSON line: ${(e as Error).message}`);
  }
  const event = fromJsonSafe(parsed) as Partial<TrackerEvent> | null;
  if (!event || typeof event !== 'object' || Array.isArray(event)) throw new TypeError('not an event: the line is not a JSON object');
  if (!TRACKER_EVENT_TYPES.includes(event.type as TrackerEvent['type'])) {
    throw new TypeError(`not an event: type ${JSON.stringify(event.type)} is not one of ${TRACKER_EVENT_TYPES.join(', ')}`);
  }
  if (typeof event.time !== 'number' || typeof event.rank !== 'number') {
    throw new TypeError(`not an event: ${event.type} event without numeric "time" and "rank"`);
  }
  return event as TrackerEvent;
}

/** A line of an event log that could not be read. */
export interface EventLogError {
  /** 1-based line number. */
  line: number;
  message: string;
}

/** What {@link parseEventLog} found. */
export interface ParsedEventLog {
  events: TrackerEvent[];
  /** Lines skipped because they were not events (a torn write, a foreign line). */
  errors: EventLogError[];
  /** Bytes consumed: a final line without its newline (still being written) is left for the next read. */
  consumed: number;
  /** Lines consumed (to number lines on the next read). */
  lines: number;
}

/**
 * Events in a chunk of an event log. Complete lines only: an unterminated
 * last line is not consumed, so a reader tailing a live file can call again
 * from `offset + consumed` when more bytes arrive. Bad lines are reported in
 * `errors`, never thrown, so a crash mid-write does not hide the rest.
 */
export function parseEventLog(chunk: Uint8Array | string, firstLine = 1): ParsedEventLog {
  const buf = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  const events: TrackerEvent[] = [];
  const errors: EventLogError[] = [];
  let start = 0;
  let line = firstLine;
  for (;;) {
    const nl = buf.indexOf(10, start);
    if (nl < 0) break;
    const text = buf.toString('utf8', start, nl).trim();
    if (text) {
      try {
        events.push(decodeEvent(text));
      } catch (e) {
        errors.push({ line, message: (e as Error).message });
      }
    }
    start = nl + 1;
    line++;
  }
  return { events, errors, consumed: start, lines: line - firstLine };
}

/**
 * Every event in the JSONL file at `path`, including a final line without a
 * newline (a run that died mid-write); unreadable lines are in `errors`.
 */
export function readEventLog(path: string): { events: TrackerEvent[]; errors: EventLogError[] } {
  let data = readFileSync(path);
  if (data.length > 0 && data[data.length - 1] !== 10) data = Buffer.concat([data, Buffer.from('\n')]);
  const { events, errors } = parseEventLog(data);
  return { events, errors };
}
