/**
 * The typed event stream every tracker consumes. `Accelerator.log`,
 * `storeInitConfiguration`, images, text, histograms and artifacts all become
 * one of these events; the JSONL tracker writes them one per line so a run can
 * be replayed later into any other tracker.
 * @module
 */

/** Version of the event format written in every {@link StartEvent}. */
export const EVENT_FORMAT_VERSION = 1;

/** Fields every event carries. */
export interface EventBase {
  /** Wall-clock time in seconds since the Unix epoch (fractional), like Python's `time.time()`. */
  time: number;
  /** Global rank of the process that produced the event. */
  rank: number;
}

/** First event of a session: which project, which format. A resumed run appends a new one. */
export interface StartEvent extends EventBase {
  type: 'start';
  format: 'accelerate-events';
  version: number;
  project: string;
  numProcesses?: number;
  host?: string;
  pid?: number;
}

/** Hyper-parameters (`initTrackers(project, config)`). */
export interface ConfigEvent extends EventBase {
  type: 'config';
  values: Record<string, unknown>;
}

/**
 * Values given to `Accelerator.log`, as given: numbers, strings, booleans,
 * `{name: number}` groups, and also anything bad (NaN, objects) so nothing a
 * user logged is lost. Trackers receive a sanitized copy.
 */
export interface MetricsEvent extends EventBase {
  type: 'metrics';
  values: Record<string, unknown>;
  step?: number;
  /** Per-tracker extra arguments (Accelerate's `log_kwargs`), keyed by tracker name. */
  kwargs?: Record<string, Record<string, unknown>>;
}

/** An image, normalised: PNG bytes, or raw 8-bit pixels in height x width x channels order. */
export type TrackerImage =
  | { format: 'png'; data: Uint8Array }
  | { format: 'raw'; width: number; height: number; channels: 1 | 3 | 4; data: Uint8Array };

/** Images logged at one step. */
export interface ImagesEvent extends EventBase {
  type: 'images';
  images: Record<string, TrackerImage>;
  step?: number;
}

/** Text logged at one step. */
export interface TextEvent extends EventBase {
  type: 'text';
  values: Record<string, string>;
  step?: number;
}

/** A histogram already binned (so the stream stays small): TensorBoard's `HistogramProto` fields. */
export interface HistogramData {
  min: number;
  max: number;
  num: number;
  sum: number;
  sumSquares: number;
  /** Right edge of each bucket, increasing. */
  bucketLimits: number[];
  /** Count of values in each bucket (`(limit[i-1], limit[i]]`, the first from `min`). */
  bucketCounts: number[];
}

/** Histograms logged at one step. */
export interface HistogramsEvent extends EventBase {
  type: 'histograms';
  values: Record<string, HistogramData>;
  step?: number;
}

/** A file the run produced (checkpoint, plot, predictions). The stream keeps its path, not its bytes. */
export interface ArtifactEvent extends EventBase {
  type: 'artifact';
  /** Name under which trackers store it (default: the file's base name). */
  name: string;
  /** Absolute path of the file when it was logged. */
  path: string;
  /** Size in bytes when it was logged. */
  size?: number;
  step?: number;
}

/** End of a session (`endTraining`). */
export interface FinishEvent extends EventBase {
  type: 'finish';
  status: 'finished' | 'failed' | 'killed';
}

/** One event of the stream. */
export type TrackerEvent =
  | StartEvent
  | ConfigEvent
  | MetricsEvent
  | ImagesEvent
  | TextEvent
  | HistogramsEvent
  | ArtifactEvent
  | FinishEvent;

/** The `type` of a {@link TrackerEvent}. */
export type TrackerEventType = TrackerEvent['type'];

/** Every event type, in the order a session produces them. */
export const TRACKER_EVENT_TYPES: readonly TrackerEventType[] = [
  'start',
  'config',
  'metrics',
  'images',
  'text',
  'histograms',
  'artifact',
  'finish',
];
