/**
 * Experiment trackers (TensorBoard, MLflow, W&B, JSONL, …). Implemented in
 * `@accelerate/trackers` or by users; the Accelerator fans events out to them
 * through its `TrackerHub` (see the `tracking` module).
 * @module
 */
import type { HistogramData, TrackerEvent, TrackerImage } from '../tracking/events.js';

/** A scalar or text value a tracker can log. */
export type LogValue = number | string | boolean | Record<string, number>;

/** Options of {@link Tracker.logArtifact}. */
export interface ArtifactOptions {
  /** Name to store it under; default the file's base name. */
  name?: string;
  step?: number;
}

/**
 * Accelerate's `GeneralTracker`, in TypeScript.
 *
 * A tracker either implements the typed methods below (`log`,
 * `storeInitConfiguration`, …), or {@link Tracker.onEvent} to receive the raw
 * event stream (the JSONL tracker does); the hub calls `onEvent` instead of
 * the typed methods when it is present.
 */
export interface Tracker {
  /** Registry name (`tensorboard`, `mlflow`, …). */
  readonly name: string;
  /** True when the tracker needs `ProjectConfiguration.loggingDir`. */
  readonly requiresLoggingDirectory: boolean;
  /** When true (the default for most trackers) only the main process calls it. */
  readonly mainProcessOnly: boolean;
  /** The underlying client object (`accelerator.trackerHub.getTracker(name, { unwrap: true })`), when there is one. */
  readonly tracker?: unknown;
  /** Lazy initialisation, called by `initTrackers`. */
  start?(): void | Promise<void>;
  /** Record the run's hyper-parameters. */
  storeInitConfiguration(values: Record<string, unknown>): void | Promise<void>;
  /**
   * Record metrics at `step`. Values reaching a tracker through the hub are
   * finite numbers, strings, booleans or `{name: finite number}` groups.
   * `options` are this tracker's entry of `log_kwargs`.
   */
  log(values: Record<string, LogValue>, step?: number, options?: Record<string, unknown>): void | Promise<void>;
  /** Record images (PNG bytes, or raw HWC 8-bit pixels) at `step`. */
  logImages?(images: Record<string, TrackerImage>, step?: number): void | Promise<void>;
  /** Record text at `step` (when absent, text goes to {@link Tracker.log}). */
  logText?(values: Record<string, string>, step?: number): void | Promise<void>;
  /** Record binned histograms at `step`. */
  logHistograms?(values: Record<string, HistogramData>, step?: number): void | Promise<void>;
  /** Record a file produced by the run. */
  logArtifact?(path: string, options?: ArtifactOptions): void | Promise<void>;
  /** Receive every event of the stream as is (replaces the typed methods above). */
  onEvent?(event: TrackerEvent): void | Promise<void>;
  /** Flush and close. */
  finish(): void | Promise<void>;
}
