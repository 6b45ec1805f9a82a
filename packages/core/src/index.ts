/**
 * `@accelerate/core`: state, configuration, data sharding, gradient
 * accumulation, collectives and the backend-agnostic `Accelerator`.
 *
 * This root is the public API: what applications, and third-party backend,
 * plugin and tracker authors, need. Its exact list of names is pinned by
 * `test/public-api.test.ts` (snapshot in `test/public-api.txt`), so a change
 * to the public surface shows up as a diff. What only accelerate-ts's own
 * packages need lives in `@accelerate/core/internal` (no stability promise).
 * @packageDocumentation
 */

// Tensors on the host
export {
  HostTensor,
  dtypeElementBytes,
  dtypeOfHostArray,
  hostArrayConstructor,
  isHostArray,
  type DType,
  type HostArray,
} from './tensor/host-tensor.js';

// Interfaces for backend, plugin, strategy and tracker authors
export * from './interfaces/backend.js';
export * from './interfaces/process-group.js';
export * from './interfaces/plugin.js';
export * from './interfaces/tracker.js';
export type { DistributionStrategy, StateDictType, StrategyContext, StrategyLogger } from './interfaces/strategy.js';
export * from './interfaces/checkpoint.js';

// State
export { AcceleratorState } from './state/accelerator-state.js';
export { PartialState, StaleStateError, type PartialStateOptions } from './state/partial-state.js';
export { GradientState, type ActiveLoader, type GradientAccumulationOptions } from './state/gradient-state.js';
export { DistributedType } from './state/distributed-type.js';
export { EnvironmentError, detectWorld, type EnvironmentVariables, type WorldInfo, type WorldSource } from './state/environment.js';

// The Accelerator
export { Accelerator, type AcceleratorOptions } from './accelerator/accelerator.js';
export type { DataLoaderConfiguration, ProjectConfiguration } from './accelerator/configurations.js';
export {
  AutocastKwargs,
  DistributedDataParallelKwargs,
  GradScalerKwargs,
  InitProcessGroupKwargs,
  KwargsHandler,
  type AnyKwargsHandler,
  type AutocastFields,
  type DistributedDataParallelOptions,
  type GradScalerFields,
  type InitProcessGroupOptions,
} from './accelerator/kwargs-handlers.js';
export type { PluginContainer, PluginContextOf, PluginHookName, PluginOption } from './accelerator/plugin-container.js';
export type { JoinUnevenInputsOptions } from './accelerator/join.js';
export type { Prepared, BackendTensorTypes, DeviceTensor, OnDevice } from './accelerator/prepared-types.js';
export { registerSeedHook, setSeed, takeSeed, type SeedModule, type SetSeedOptions } from './accelerator/seed.js';

// Data
export { Generator, type GeneratorState } from './data/random.js';
export {
  ArrayDataset,
  TensorDataset,
  fromArray,
  fromIterable,
  type AnyDataset,
  type Dataset,
  type IterableDataset,
} from './data/dataset.js';
export {
  BatchSampler,
  RandomSampler,
  SeedableRandomSampler,
  SequentialSampler,
  type BatchSamplerLike,
  type RandomSamplerOptions,
  type RandomSamplerState,
  type ResumableBatchSampler,
  type ResumePoint,
  type Sampler,
  type SeedableRandomSamplerOptions,
  type SkippedIndices,
} from './data/sampler.js';
export { collateBatch, defaultCollate, type Collated, type SelfCollating } from './data/collate.js';
export { DataLoader, type DataLoaderOptions } from './data/dataloader.js';
export {
  BatchSamplerShard,
  IterableDatasetShard,
  type BatchSamplerShardOptions,
  type IterableDatasetShardOptions,
  type ShardOptions,
} from './data/shard.js';
export {
  DataLoaderDispatcher,
  DataLoaderShard,
  PreparedDataLoader,
  SkipDataLoader,
  skipFirstBatches,
  type DataLoaderDispatcherOptions,
  type DataLoaderShardOptions,
  type DataLoaderStateDict,
  type DeviceTransform,
  type DispatchSliceFn,
  type PassProgress,
  type PreparedLoaderOptions,
  type SkipDataLoaderOptions,
} from './data/loaders.js';
export { prepareDataLoader, type PrepareDataLoaderOptions } from './data/prepare.js';
export type { BroadcastGroup } from './data/serialize.js';

// Collectives and operations on nested data
export {
  DistributedOperationException,
  broadcast,
  broadcastObjectList,
  gather,
  gatherObject,
  padAcrossProcesses,
  reduce,
  splitBetweenProcesses,
  type CollectiveContext,
  type PadAcrossProcessesOptions,
  type Reduction,
  type SelectableDataset,
  type SplitBetweenProcessesOptions,
} from './ops/collectives.js';
export {
  concatenate,
  convertToFp32,
  findBatchSize,
  listify,
  padInputTensors,
  recursivelyApply,
  sendToDevice,
  sliceTensors,
  type ConcatenateOptions,
  type PadInputTensorsOptions,
  type RecursivelyApplyOptions,
  type ReplaceLeaves,
  type SendToDeviceOptions,
} from './ops/structure.js';
export type { TensorOps } from './ops/tensor-ops.js';

// Configuration
export {
  basicConfig,
  defaultConfigPath,
  findDefaultConfigFile,
  loadConfigFile,
  saveConfigFile,
  writeBasicConfig,
  type DetectedDevices,
  type LoadConfigOptions,
  type LoadedConfigFile,
  type WriteBasicConfigResult,
} from './config/file.js';
export {
  formatProvenance,
  resolveConfig,
  resolvedValues,
  type ConfigSource,
  type DynamoBackendName,
  type ProvenanceMap,
  type ResolveConfigOptions,
  type ResolvedConfig,
  type ResolvedSetting,
  type ResolvedSettings,
  type ResolvedValues,
} from './config/resolve.js';
export { validateConfigDict, type ValidateOptions, type ValidatedConfig } from './config/validate.js';
export { ConfigError, type ConfigIssue, type ConfigIssueKind } from './config/errors.js';
export {
  COMPUTE_ENVIRONMENTS,
  type AccelerateConfigFile,
  type ClusterConfigFile,
  type ComputeEnvironment,
  type ConfigDistributedType,
  type ConfigSection,
  type SageMakerConfigFile,
} from './config/schema.js';
export type {
  DeepSpeedSettings,
  DynamoSettings,
  Fp8Settings,
  FsdpSettings,
  MegatronSettings,
  ParallelismSettings,
  ResolvedSection,
  ResolvedSections,
  SectionInputs,
  SectionSetting,
  SectionSource,
  SectionValues,
  SettingSectionName,
} from './config/settings.js';
export { DYNAMO_BACKENDS } from './config/settings.js';

// Backend registry and discovery of installed packages
export {
  BackendRegistry,
  NoAvailableBackendError,
  defaultBackendRegistry,
  listBackends,
  registerBackend,
  resolveBackend,
  unregisterBackend,
  type BackendFailure,
  type BackendInfo,
  type BackendState,
} from './registry/backend-registry.js';
export {
  discoveryFailures,
  scanAcceleratePackages,
  type AccelerateManifest,
  type BackendManifest,
  type DiscoveredPackage,
  type DiscoveryFailure,
  type DiscoveryKind,
  type PluginManifest,
  type ScanOptions,
} from './registry/discovery.js';
export {
  discoverBackends,
  type BackendModuleEntry,
  type DiscoverBackendsOptions,
  type DiscoveredBackend,
} from './accelerator/backend-discovery.js';
export { loadStrategyPlugin, type StrategyPluginModule } from './accelerator/strategy-discovery.js';

// Checkpoints: model weights, safetensors, saveState / loadState types
export {
  SAFE_WEIGHTS_INDEX_NAME,
  SAFE_WEIGHTS_NAME,
  WEIGHTS_INDEX_NAME,
  WEIGHTS_NAME,
  loadModelFiles,
  saveModelFiles,
  type CheckpointFiles,
  type LoadModelOptions,
  type SaveModelOptions,
  type SaveModelResult,
  type StateDictTensor,
} from './checkpoint/save-model.js';
export {
  SAFETENSORS_DTYPES,
  SafetensorsError,
  SafetensorsFile,
  parseSafetensors,
  serializeSafetensors,
  withSafetensorsFile,
  writeSafetensors,
  type ParsedHeader,
  type ParsedSafetensors,
  type RawTensor,
  type SafetensorsDType,
  type SafetensorsErrorCode,
  type SafetensorsReadOptions,
  type SafetensorsTensorInfo,
  type SafetensorsTensors,
} from './checkpoint/safetensors.js';
export {
  SHARDED_INDEX_NAME,
  evenShardRange,
  mergeShardedWeights,
  openShardedTensors,
  shardedFileName,
  shardedModelFolder,
  shardedOptimizerFolder,
  writeShardedTensors,
  type MergeShardedWeightsOptions,
  type MergeShardedWeightsResult,
  type ShardedIndex,
  type ShardedPiece,
  type ShardedTensorInfo,
  type ShardedTensorSet,
} from './checkpoint/sharded.js';
export { CheckpointError, type CheckpointManifest, type ManifestContents, type ManifestFileEntry } from './checkpoint/manifest.js';
export type { Checkpointable } from './checkpoint/participants.js';
export type {
  LoadStateHook,
  LoadStateOptions,
  LoadStateResult,
  RemovableHandle,
  SaveStateHook,
  SaveStateOptions,
} from './checkpoint/save-state.js';

// Experiment tracking: the event stream and tracker classes
export {
  EVENT_FORMAT_VERSION,
  TRACKER_EVENT_TYPES,
  type ArtifactEvent,
  type ConfigEvent,
  type EventBase,
  type FinishEvent,
  type HistogramData,
  type HistogramsEvent,
  type ImagesEvent,
  type MetricsEvent,
  type StartEvent,
  type TextEvent,
  type TrackerEvent,
  type TrackerEventType,
  type TrackerImage,
} from './tracking/events.js';
export { decodeEvent, encodeEvent, parseEventLog, readEventLog, type EventLogError, type ParsedEventLog } from './tracking/codec.js';
export { registerTrackerClass, type TrackerClass, type TrackerInit } from './tracking/registry.js';
export type { ImageInput } from './tracking/values.js';
export type { DisabledTracker, LogWith, LogWithEntry, TrackerHub } from './tracking/hub.js';

// Launching from code
export {
  LaunchFailedError,
  debugLauncher,
  isLaunchedChild,
  launch,
  type DebugLauncherOptions,
  type LaunchOptions,
} from './launch/from-code.js';
export type { RankOutcome, SupervisionResult } from './launch/supervisor.js';

// Utilities: logging, progress bars, memory, environment
export {
  LOG_LEVELS,
  MultiProcessLogger,
  getLogger,
  setDefaultLogLevel,
  setLogSink,
  type GetLoggerOptions,
  type LogLevelName,
  type LogOptions,
  type LogRecord,
  type LogSink,
} from './utils/logging.js';
export { progressBar, type ProgressBar, type ProgressBarOptions, type ProgressStream } from './utils/progress.js';
export { findExecutableBatchSize, type FindExecutableBatchSizeOptions } from './utils/memory.js';
export { clearEnvironment, patchEnvironment } from './utils/environment.js';
