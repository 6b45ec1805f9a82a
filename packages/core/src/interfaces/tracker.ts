/**
 * Experiment trackers (TensorBoard, MLflow, W&B, JSONL, …). Implemented in
 * `@accelerate/trackers` or by users; the Accelerator fans events out to them.
 * @module
 */

/** A scalar or text value a tracker can log. */
export type LogValue = number | string | boolean | Record<string, number>;

/** Accelerate's `GeneralTracker`, in TypeScript. */
export interface Tracker {
  /** Registry name (`tensorboard`, `mlflow`, …). */
  readonly name: string;
  /** True when the tracker needs `ProjectConfiguration.loggingDir`. */
  readonly requiresLoggingDirectory: boolean;
  /** When true (the default for most trackers) only the main process calls it. */
  readonly mainProcessOnly: boolean;
  /** Lazy initialisation, called by `initTrackers`. */
  start?(): void | Promise<void>;
  /** Record the run's hyper-parameters. */
  storeInitConfiguration(values: Record<string, unknown>): void | Promise<void>;
  /** Record metrics at `step`. */
  log(values: Record<string, LogValue>, step?: number): void | Promise<void>;
  /** Record images (PNG bytes or HWC uint8 arrays) at `step`. */
  logImages?(images: Record<string, Uint8Array>, step?: number): void | Promise<void>;
  /** Flush and close. */
  finish(): void | Promise<void>;
}
