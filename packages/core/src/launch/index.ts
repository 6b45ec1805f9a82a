/**
 * Launching distributed runs: `accelerate launch`'s flags merged with the
 * config file, the per-rank environment it produces, the supervisor that
 * runs a machine's ranks, and `launch` / `debugLauncher` for starting a
 * function in several processes from code.
 * @module
 */
export {
  LAUNCH_FLAGS,
  LaunchError,
  coerceLaunchValue,
  launchFlag,
  parseLaunchFlagValue,
  type LaunchFlagGroup,
  type LaunchFlagSpec,
  type LaunchFlagSupport,
  type LaunchFlagType,
  type LaunchValue,
} from './flags.js';
export {
  flattenedConfigKey,
  launchArgsFromFlags,
  launchProblemsMessage,
  parseTee,
  resolveLaunchArgs,
  type LaunchArgs,
  type LaunchParadigm,
  type LaunchValueOrigin,
  type ResolveLaunchOptions,
  type ResolvedLaunch,
  type TeeStreams,
} from './args.js';
export {
  buildLaunchPlan,
  rankEnvironment,
  resolveScriptCommand,
  type BuildLaunchPlanOptions,
  type LaunchPlan,
  type RankPlan,
  type ScriptCommand,
  type ScriptCommandOptions,
} from './plan.js';
export { findFreePort, isPortInUse } from './port.js';
export {
  describeEnd,
  formatFailureSummary,
  superviseRanks,
  type RankOutcome,
  type RankProcessSpec,
  type SuperviseOptions,
  type SupervisionResult,
} from './supervisor.js';
export {
  LAUNCH_CALL_ENV_VAR,
  LaunchFailedError,
  debugLauncher,
  isLaunchedChild,
  launch,
  type DebugLauncherOptions,
  type LaunchOptions,
} from './from-code.js';
export { prepareLaunch, runLaunch, type PrepareLaunchOptions, type PreparedLaunch } from './run.js';
