/**
 * `accelerate merge-weights CHECKPOINT_DIR OUTPUT_PATH [--unsafe_serialization] [--remove_checkpoint_dir]`:
 * Python Accelerate's `merge_fsdp_weights` — the sharded model weights a
 * sharded strategy (FSDP) saved, merged into full tensors in
 * `OUTPUT_PATH/model.safetensors` (sharded with `model.safetensors.index.json`
 * above 10GB), loadable by Python's safetensors / transformers and by
 * `loadModelFiles`.
 *
 * `--unsafe_serialization` (Python: write `pytorch_model.bin` with
 * `torch.save`) is refused with an explanation: Node does not write pickles.
 * @module
 */
import { resolve } from 'node:path';
import { CheckpointError, mergeShardedWeights, type MergeShardedWeightsResult } from '@accelerate/core';
import type { Command } from 'commander';
import { CliError, type CliContext } from '../context.js';

/** Options of {@link runMergeWeights}, as the flags spell them. */
export interface MergeWeightsOptions {
  /** Python: write pytorch_model.bin (pickle). Refused: see {@link runMergeWeights}. */
  unsafe_serialization?: boolean;
  /** Delete CHECKPOINT_DIR once the merged weights are written. */
  remove_checkpoint_dir?: boolean;
  /** Largest output file (bytes or `"5GB"`); default 10GB. Not a Python flag; for tests and tools. */
  maxShardSize?: number | string;
}

/**
 * Merge the sharded weights in `checkpointDir` (a set's folder such as
 * `ckpt/pytorch_model_fsdp_0`, or a checkpoint folder holding exactly one
 * model set) into `outputPath`, reporting what was written on `ctx.stdout`.
 * @throws CliError for `--unsafe_serialization` (no pickle writer in Node), a
 * folder that is not a sharded checkpoint, or an incomplete / damaged one.
 */
export async function runMergeWeights(checkpointDir: string, outputPath: string, options: MergeWeightsOptions, ctx: CliContext): Promise<MergeShardedWeightsResult> {
  if (options.unsafe_serialization) {
    throw new CliError(
      'merge-weights: --unsafe_serialization asks for pytorch_model.bin, a torch.save pickle, which accelerate-ts does not write (pickle is Python-specific and loading it can run arbitrary code). ' +
        'Drop the flag to get model.safetensors, which Python loads with safetensors.torch.load_file or transformers\' from_pretrained; ' +
        "if you need the .bin, convert in Python: torch.save(safetensors.torch.load_file('OUT/model.safetensors'), 'OUT/pytorch_model.bin').",
    );
  }
  let r: MergeShardedWeightsResult;
  try {
    r = await mergeShardedWeights(resolve(checkpointDir), resolve(outputPath), {
      removeCheckpointDir: Boolean(options.remove_checkpoint_dir),
      ...(options.maxShardSize !== undefined ? { maxShardSize: options.maxShardSize } : {}),
    });
  } catch (err) {
    if (err instanceof CheckpointError) throw new CliError(`merge-weights: ${err.message.replace(/^mergeShardedWeights: /, '')}`);
    throw err;
  }
  const out = resolve(outputPath);
  const files = r.indexFile ? `${r.files.length} shards and ${r.indexFile}` : r.files[0];
  ctx.stdout(`Merged ${r.tensors} tensor(s) (${r.totalSize} bytes) of ${r.source}, saved by ${r.worldSize} process(es), into ${out}: ${files}.\n`);
  if (r.deletedStaleFiles.length) ctx.stdout(`Removed files of an earlier output: ${r.deletedStaleFiles.join(', ')}.\n`);
  if (r.removedCheckpointDir) ctx.stdout(`Removed ${resolve(checkpointDir)}.\n`);
  return r;
}

/** Adds `accelerate merge-weights` to the program. */
export function registerMergeWeightsCommand(program: Command, ctx: CliContext): void {
  program
    .command('merge-weights')
    .description("Merge the sharded model weights a sharded strategy (FSDP) saved into one model.safetensors (Python Accelerate's merge_fsdp_weights).")
    .argument('<checkpoint_directory>', "the sharded weights' folder (e.g. ckpt/pytorch_model_fsdp_0), or the checkpoint folder holding exactly one")
    .argument('<output_path>', 'folder to write model.safetensors into (created if missing; sharded with model.safetensors.index.json above 10GB)')
    .option('--unsafe_serialization', 'Python writes pytorch_model.bin (pickle); accelerate-ts refuses: it writes safetensors only')
    .option('--remove_checkpoint_dir', 'delete checkpoint_directory once the merged weights are written')
    .action(async (dir: string, out: string, opts: MergeWeightsOptions) => {
      await runMergeWeights(dir, out, opts, ctx);
    });
}
