/**
 * `@accelerate/trackers`: the built-in experiment trackers of accelerate-ts
 * (JSONL event stream, CSV, TensorBoard, MLflow, Weights & Biases, Comet),
 * `replay` of a JSONL stream into any of them, and a live local dashboard.
 *
 * The Accelerator loads {@link builtinTrackers} by itself when `logWith`
 * names one of them; import classes from here to pass instances or to use
 * them on their own.
 * @packageDocumentation
 */
export { builtinTrackers } from './builtins.js';
export { EventTracker, flattenConfig, flattenGroups } from './base.js';
export { JsonlTracker, type JsonlTrackerOptions } from './jsonl.js';
export { CsvTracker, csvField, parseCsv, type CsvTrackerOptions } from './csv.js';
export { TensorBoardTracker, imageToPng, type TensorBoardTrackerOptions } from './tensorboard/tracker.js';
export { EventFileWriter, tfRecord } from './tensorboard/tfevents.js';
export { ProtoWriter } from './tensorboard/protobuf.js';
export { crc32c, maskedCrc32c } from './tensorboard/crc32c.js';
export { encodePng, pngInfo, crc32 } from './tensorboard/png.js';
export { MlflowTracker, MLFLOW_LIMITS, type MlflowTrackerOptions } from './mlflow.js';
export { WandbTracker, type WandbTrackerOptions } from './wandb.js';
export { CometTracker, type CometTrackerOptions } from './comet.js';
export { requestJson, TrackerHttpError, type RequestOptions } from './http.js';
export { startDashboard, listRuns, type Dashboard, type DashboardOptions, type DashboardRun } from './dashboard/server.js';
export { replay, type ReplayOptions, type ReplayResult } from './replay.js';
