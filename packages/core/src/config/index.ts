/**
 * Configuration: the `default_config.yaml` schema, reading/writing it, and
 * the resolved configuration with provenance.
 * @module
 */
export {
  CLUSTER_CONFIG_FIELDS,
  COMPUTE_ENVIRONMENTS,
  DEEPSPEED_MULTINODE_LAUNCHERS,
  DISTRIBUTED_TYPES,
  DYNAMO_BACKENDS,
  DYNAMO_MODES,
  FSDP_AUTO_WRAP_POLICIES,
  FSDP_BACKWARD_PREFETCH,
  FSDP_SHARDING_STRATEGIES,
  FSDP_STATE_DICT_TYPES,
  MIXED_PRECISIONS,
  SAGEMAKER_CONFIG_FIELDS,
  SAGEMAKER_DISTRIBUTED_TYPES,
  configFieldsFor,
  lookupSectionKey,
  toJsonSchema,
} from './schema.js';
export type {
  AccelerateConfigFile,
  ClusterConfigFile,
  ComputeEnvironment,
  ConfigDistributedType,
  ConfigFieldSpec,
  ConfigSection,
  ConfigValueType,
  JsonSchema,
  SageMakerConfigFile,
  SageMakerDistributedType,
} from './schema.js';
export { ConfigError, suggestClosest } from './errors.js';
export type { ConfigIssue, ConfigIssueKind } from './errors.js';
export { describeExpected, validateConfigDict } from './validate.js';
export type { ValidateOptions, ValidatedConfig } from './validate.js';
export {
  BOOL_FALSE_STRINGS,
  BOOL_TRUE_STRINGS,
  CONFIG_EXPORTED_ENV_VAR,
  CONFIG_FILE_ENV_VAR,
  DISTRIBUTED_TYPE_ENV_VAR,
  KNOWN_ACCELERATE_ENV_VARS,
  PROVENANCE_ENV_VAR,
  checkAccelerateEnvNames,
  parseBoolEnv,
  strToBoolOrUndefined,
} from './env.js';
export {
  DEEPSPEED_OFFLOAD_DEVICES,
  SECTION_META,
  SETTING_SECTIONS,
  SETTINGS,
  describeRow,
  exportSection,
  resolveSections,
  sectionFileFields,
  sectionLaunchFlags,
  sectionValues,
  settingEnvVars,
  settingRowByFlag,
  settingRows,
} from './settings.js';
export type {
  DeepSpeedSettings,
  DynamoSettings,
  ExportedOrigin,
  Fp8Settings,
  FsdpSettings,
  FsdpShardingStrategy,
  MegatronSettings,
  ParallelismSettings,
  ParseResult,
  ResolvedSection,
  ResolvedSections,
  SectionInputs,
  SectionLayers,
  SectionProblem,
  SectionRows,
  SectionSetting,
  SectionSource,
  SectionValues,
  SettingRow,
  SettingSectionName,
  SettingType,
} from './settings.js';
export {
  accelerateCacheDir,
  basicConfig,
  configFormatOf,
  configToDict,
  defaultConfigPath,
  findDefaultConfigFile,
  hfHome,
  loadConfigFile,
  parseConfigText,
  saveConfigFile,
  serializeConfig,
  writeBasicConfig,
} from './file.js';
export type { DetectedDevices, LoadConfigOptions, LoadedConfigFile, WriteBasicConfigResult } from './file.js';
export {
  CONFIG_SOURCES,
  SETTING_NAMES,
  encodeProvenanceEnv,
  formatProvenance,
  formatSections,
  resolveConfig,
  resolvedValues,
} from './resolve.js';
export { PROCESS_GROUP_TIMEOUT_ENV, parseTimeoutSeconds } from './timeout.js';
export type {
  ConfigSource,
  DynamoBackendName,
  ProvenanceMap,
  ResolveConfigOptions,
  ResolvedConfig,
  ResolvedSetting,
  ResolvedSettings,
  ResolvedValues,
} from './resolve.js';
