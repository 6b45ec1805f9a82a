/**
 * The table of built-in tracker classes by `logWith` name.
 * @module
 */
import type { TrackerClass } from '@accelerate/core';
import { JsonlTracker } from './jsonl.js';
import { CsvTracker } from './csv.js';
import { TensorBoardTracker } from './tensorboard/tracker.js';
import { MlflowTracker } from './mlflow.js';
import { WandbTracker } from './wandb.js';
import { CometTracker } from './comet.js';

/** Built-in tracker classes by `logWith` name (what the Accelerator's tracker hub loads). */
export const builtinTrackers: Record<string, TrackerClass> = {
  jsonl: JsonlTracker,
  csv: CsvTracker,
  tensorboard: TensorBoardTracker,
  mlflow: MlflowTracker,
  wandb: WandbTracker,
  comet_ml: CometTracker,
};
