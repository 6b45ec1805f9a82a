/**
 * Environment variables: Accelerate's boolean parsing and the list of the
 * `ACCELERATE_*` names Accelerate (and `accelerate launch`) use, so that a
 * misspelt one is reported instead of silently ignored.
 * @module
 */
import { suggestClosest } from './errors.js';
import { settingEnvVars } from './settings.js';

export { BOOL_FALSE_STRINGS, BOOL_TRUE_STRINGS, parseBoolEnv, strToBoolOrUndefined } from './bool.js';

/**
 * Every `ACCELERATE_*` environment variable Accelerate reads or
 * `accelerate launch` writes (read from Accelerate's source), plus
 * {@link PROVENANCE_ENV_VAR} and {@link CONFIG_FILE_ENV_VAR}. Used to spot typos such as
 * `ACCELERATE_MIXED_PRECISON`.
 */
const LISTED_ACCELERATE_ENV_VARS: readonly string[] = [
  'ACCELERATE_LAUNCH_CALL',
  'ACCELERATE_MIXED_PRECISION',
  'ACCELERATE_GRADIENT_ACCUMULATION_STEPS',
  'ACCELERATE_GRADIENT_CLIPPING',
  'ACCELERATE_USE_CPU',
  'ACCELERATE_DEBUG_MODE',
  'ACCELERATE_PROCESS_GROUP_TIMEOUT',
  'ACCELERATE_DEBUG_RDV_FILE',
  'ACCELERATE_CPU_AFFINITY',
  'ACCELERATE_TORCH_DEVICE',
  'ACCELERATE_NUM_PROCESSES',
  'ACCELERATE_LOG_LEVEL',
  'ACCELERATE_ENABLE_RICH',
  'ACCELERATE_DOWNCAST_BF16',
  'ACCELERATE_IN_TPU_POD',
  'ACCELERATE_BYPASS_DEVICE_MAP',
  'ACCELERATE_INIT_INCLUDE_BUFFERS',
  'ACCELERATE_ALLOW_CP_STANDALONE',
  'ACCELERATE_USE_DEEPSPEED',
  'ACCELERATE_USE_FSDP',
  'ACCELERATE_USE_MEGATRON_LM',
  'ACCELERATE_USE_PARALLELISM_CONFIG',
  'ACCELERATE_USE_SAGEMAKER',
  'ACCELERATE_SAGEMAKER_DISTRIBUTED_TYPE',
  'ACCELERATE_CONFIG_DS_FIELDS',
  'ACCELERATE_DEEPSPEED_CONFIG_FILE',
  'ACCELERATE_DEEPSPEED_ZERO_STAGE',
  'ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE',
  'ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE',
  'ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_NVME_PATH',
  'ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_NVME_PATH',
  'ACCELERATE_DEEPSPEED_ZERO3_INIT',
  'ACCELERATE_DEEPSPEED_ZERO3_SAVE_16BIT_MODEL',
  'ACCELERATE_DEEPSPEED_MOE_LAYER_CLS_NAMES',
  'ACCELERATE_DYNAMO_BACKEND',
  'ACCELERATE_DYNAMO_MODE',
  'ACCELERATE_DYNAMO_USE_FULLGRAPH',
  'ACCELERATE_DYNAMO_USE_DYNAMIC',
  'ACCELERATE_DYNAMO_USE_REGIONAL_COMPILATION',
  'ACCELERATE_FP8_BACKEND',
  'ACCELERATE_FP8_USE_AUTOCAST_DURING_EVAL',
  'ACCELERATE_FP8_MARGIN',
  'ACCELERATE_FP8_INTERVAL',
  'ACCELERATE_FP8_FORMAT',
  'ACCELERATE_FP8_AMAX_HISTORY_LEN',
  'ACCELERATE_FP8_AMAX_COMPUTE_ALGO',
  'ACCELERATE_FP8_OVERRIDE_FPROP',
  'ACCELERATE_FP8_OVERRIDE_DGRAD',
  'ACCELERATE_FP8_OVERRIDE_WGRAD',
  'ACCELERATE_FP8_OPT_LEVEL',
  'ACCELERATE_FP8_ENABLE_FSDP_FLOAT8_ALL_GATHER',
  'ACCELERATE_FP8_PAD_INNER_DIM',
  'ACCELERATE_FP8_USE_MXFP8_BLOCK_SCALING',
  // Written by `accelerate launch` from the questionnaire's fp8 key names (never read: an Accelerate quirk).
  'ACCELERATE_FP8_AMAX_HISTORY_LENGTH',
  'ACCELERATE_FP8_AMAX_COMPUTE_ALGORITHM',
  'ACCELERATE_FP8_OPTIMIZATION_LEVEL',
  'ACCELERATE_CONFIG_PROVENANCE',
  'ACCELERATE_CONFIG_FILE',
  'ACCELERATE_CONFIG_EXPORTED',
  'ACCELERATE_DISTRIBUTED_TYPE',
];

/** {@link LISTED_ACCELERATE_ENV_VARS} plus every `ACCELERATE_*` variable of the settings table. */
export const KNOWN_ACCELERATE_ENV_VARS: readonly string[] = [
  ...new Set([...LISTED_ACCELERATE_ENV_VARS, ...settingEnvVars().filter((n) => n.startsWith('ACCELERATE_'))]),
];

/**
 * Set (to `1`) by `accelerate launch` in its ranks: the launcher resolved the
 * configuration (flags, config file, defaults) and exported every value, so a
 * rank's `resolveConfig` reads the environment only and does not parse
 * the config file again. accelerate-ts only.
 */
export const CONFIG_EXPORTED_ENV_VAR = 'ACCELERATE_CONFIG_EXPORTED';

/**
 * The distributed type a launcher resolved (e.g. `MULTI_CPU` from the config
 * file), exported so its ranks need not read the file. accelerate-ts only.
 */
export const DISTRIBUTED_TYPE_ENV_VAR = 'ACCELERATE_DISTRIBUTED_TYPE';

/**
 * Path of the config file a launcher used (`accelerate launch --config_file`),
 * exported to its children so that their resolved configuration reads the
 * same file. accelerate-ts only; Python Accelerate does not set it.
 */
export const CONFIG_FILE_ENV_VAR = 'ACCELERATE_CONFIG_FILE';

/**
 * Set by a launcher to tell its child processes where each `ACCELERATE_*`
 * value it exports came from (JSON: `{ "<VAR>": { "value", "source", "detail" } }`),
 * so the child's provenance report says "config file /x.yaml" or
 * "launch flag --mixed_precision" rather than just "env".
 */
export const PROVENANCE_ENV_VAR = 'ACCELERATE_CONFIG_PROVENANCE';

/**
 * Warnings for environment variables that look like Accelerate's
 * (`ACCELERATE_…`) but are not known, when a known name is close, e.g.
 * `ACCELERATE_MIXED_PRECISON is not an Accelerate variable and is ignored; did you mean ACCELERATE_MIXED_PRECISION?`.
 * Unknown names with no close match are left alone (other tools use the prefix too).
 */
export function checkAccelerateEnvNames(
  env: Readonly<Record<string, string | undefined>>,
  extraKnown: Iterable<string> = [],
): string[] {
  const known = new Set([...KNOWN_ACCELERATE_ENV_VARS, ...extraKnown]);
  const prefix = 'ACCELERATE_';
  const bare = [...known].filter((k) => k.startsWith(prefix)).map((k) => k.slice(prefix.length));
  const warnings: string[] = [];
  for (const name of Object.keys(env).sort()) {
    if (!name.toUpperCase().startsWith(prefix) || known.has(name)) continue;
    const near = suggestClosest(name.slice(prefix.length), bare);
    if (near !== undefined) {
      warnings.push(`${name} is not an Accelerate variable and is ignored; did you mean ${prefix}${near}?`);
    }
  }
  return warnings;
}
