/**
 * `@accelerate/cli`: the `accelerate` command. The command implementations
 * are exported so they can be called (and tested) without a subprocess.
 * @packageDocumentation
 */
export { CliError, processContext, type CliContext } from './context.js';
export { inquirerPrompter, scriptedPrompter, type Choice, type Prompter } from './prompter.js';
export { COMMANDS, createProgram, markPassThrough, normalizeArgv, runCli, type RegisterCommand } from './program.js';
export {
  registerConfigCommand,
  runConfigDefault,
  runConfigQuestionnaire,
  runConfigUpdate,
  type ConfigCommandOptions,
  type ConfigDefaultOptions,
} from './commands/config.js';
export { askClusterConfig } from './commands/questionnaire.js';
export {
  collectEnvInfo,
  describeTfjsEngines,
  formatEnvInfo,
  packageVersion,
  probePackage,
  registerEnvCommand,
  runEnv,
  type EnvInfo,
  type EnvOptions,
  type PackageStatus,
  type TfjsEnginesInfo,
} from './commands/env.js';
export {
  BACKEND_ENV,
  checkTfjsMultiProcess,
  launchOption,
  registerLaunchCommand,
  requestedBackend,
  runLaunchCommand,
  type LaunchCommandOptions,
} from './commands/launch.js';
export { registerTestCommand, runTest, testLaunchArgs, testScriptPath, TEST_SUCCESS_MESSAGE, type TestOptions } from './commands/test.js';
export { registerTrackingCommands, runReplay, runDashboard } from './commands/tracking.js';
export {
  exportCheckpointToPython,
  importCheckpointFromPython,
  pythonFor,
  registerCheckpointCommand,
  type ExportPythonResult,
  type ImportPythonResult,
} from './commands/checkpoint.js';
export {
  ESTIMATE_DTYPES,
  SUPPORTED_MODEL_TYPES,
  estimateMemory,
  formatEstimate,
  loadModelShape,
  registerEstimateMemoryCommand,
  runEstimateMemory,
  type EstimateDType,
  type EstimateMemoryOptions,
  type EstimateRow,
  type TensorShape,
  type MemoryEstimate,
  type ModelShape,
} from './commands/estimate-memory.js';
export { registerMergeWeightsCommand, runMergeWeights, type MergeWeightsOptions } from './commands/merge-weights.js';
