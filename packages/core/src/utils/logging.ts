/**
 * Multi-process aware logging (Accelerate's `get_logger`): messages carry a
 * `[RANK p]` prefix and, by default, only the main process writes them.
 *
 * Rank information comes from a provider that the state module installs with
 * {@link setRankInfoProvider}, so utils does not depend on state.
 * @module
 */

/** What the logger needs to know about this process. */
export interface RankInfo {
  processIndex: number;
  localProcessIndex: number;
  numProcesses: number;
  isMainProcess: boolean;
  /** Barrier across processes; needed for {@link MultiProcessLogger.logInOrder}. */
  waitForEveryone?: () => Promise<void>;
}

/** Log levels, with Python logging's numeric values. */
export const LOG_LEVELS = { debug: 10, info: 20, warning: 30, error: 40, critical: 50 } as const;

/** A level name. */
export type LogLevelName = keyof typeof LOG_LEVELS;

/** One message that passed the level and process filters. */
export interface LogRecord {
  level: LogLevelName;
  /** Logger name. */
  name: string;
  /** Message including the `[RANK p]` prefix. */
  message: string;
  processIndex: number;
}

/** Where records go. */
export type LogSink = (record: LogRecord) => void;

let rankInfoProvider: (() => RankInfo | undefined) | undefined;

/**
 * Install (or, with undefined, remove) the function loggers ask for rank
 * information. The state module sets it when the process state is created.
 */
export function setRankInfoProvider(provider: (() => RankInfo | undefined) | undefined): void {
  rankInfoProvider = provider;
}

const defaultSink: LogSink = (record) => {
  process.stderr.write(`${record.level.toUpperCase()}:${record.name}:${record.message}\n`);
};

let sink: LogSink = defaultSink;

/** Send records somewhere else (tests, a structured logger); undefined restores the default (stderr). */
export function setLogSink(newSink: LogSink | undefined): void {
  sink = newSink ?? defaultSink;
}

/**
 * Level used by loggers created without `logLevel` while env
 * `ACCELERATE_LOG_LEVEL` is unset. `warning`, like Python's root logger.
 */
let defaultLevel: LogLevelName = 'warning';

/** Change {@link getLogger}'s fallback level. */
export function setDefaultLogLevel(level: LogLevelName | string): void {
  defaultLevel = parseLogLevel(level, 'setDefaultLogLevel');
}

/** A level from a name (case-insensitive; `warn` and `fatal` accepted). */
export function parseLogLevel(level: string, where = 'log level'): LogLevelName {
  const v = level.trim().toLowerCase();
  if (v === 'warn') return 'warning';
  if (v === 'fatal') return 'critical';
  if (v in LOG_LEVELS) return v as LogLevelName;
  throw new RangeError(
    `${where}: unknown log level ${JSON.stringify(level)}; use one of ${Object.keys(LOG_LEVELS).join(', ')} (any case).`,
  );
}

/** Per-call options. */
export interface LogOptions {
  /** Write only on the main process (default true). Set false to write on every process. */
  mainProcessOnly?: boolean;
}

function currentRank(): RankInfo {
  const info = rankInfoProvider?.();
  if (!info) {
    throw new Error(
      'The accelerate state is not initialised, so the logger does not know this process\'s rank. ' +
        'Create a PartialState or an Accelerator before logging with a logger from getLogger().',
    );
  }
  return info;
}

/** A logger that knows about ranks. Get one with {@link getLogger}. */
export class MultiProcessLogger {
  /** Logger name. */
  readonly name: string;
  /** Messages below this level are dropped. */
  level: LogLevelName;
  private readonly warnedOnce = new Set<string>();

  constructor(name: string, level: LogLevelName) {
    this.name = name;
    this.level = level;
  }

  /** True when messages at `level` pass this logger's level. */
  isEnabledFor(level: LogLevelName): boolean {
    return LOG_LEVELS[level] >= LOG_LEVELS[this.level];
  }

  /** Log `message` at `level`, on the main process only unless `mainProcessOnly` is false. */
  log(level: LogLevelName, message: string, options: LogOptions = {}): void {
    this.emit(currentRank(), level, message, options.mainProcessOnly ?? true);
  }

  private emit(info: RankInfo, level: LogLevelName, message: string, mainProcessOnly: boolean): void {
    if (!this.isEnabledFor(level)) return;
    if (mainProcessOnly && !info.isMainProcess) return;
    sink({ level, name: this.name, message: `[RANK ${info.processIndex}] ${message}`, processIndex: info.processIndex });
  }

  debug(message: string, options?: LogOptions): void {
    this.log('debug', message, options);
  }

  info(message: string, options?: LogOptions): void {
    this.log('info', message, options);
  }

  warning(message: string, options?: LogOptions): void {
    this.log('warning', message, options);
  }

  /** Alias of {@link MultiProcessLogger.warning}. */
  warn(message: string, options?: LogOptions): void {
    this.log('warning', message, options);
  }

  error(message: string, options?: LogOptions): void {
    this.log('error', message, options);
  }

  critical(message: string, options?: LogOptions): void {
    this.log('critical', message, options);
  }

  /** {@link MultiProcessLogger.warning}, but each distinct message is written at most once by this logger. */
  warningOnce(message: string, options?: LogOptions): void {
    if (this.warnedOnce.has(message)) return;
    this.warnedOnce.add(message);
    this.warning(message, options);
  }

  /**
   * Log on every process, one rank after the other (rank 0 first), with a
   * barrier between turns (Accelerate's `in_order=True`). Every process must
   * call it. Needs `waitForEveryone` in the rank info.
   */
  async logInOrder(level: LogLevelName, message: string): Promise<void> {
    const info = currentRank();
    if (info.numProcesses > 1 && !info.waitForEveryone) {
      throw new Error('logInOrder: the rank info has no waitForEveryone barrier; the state module must provide one.');
    }
    for (let i = 0; i < info.numProcesses; i++) {
      if (i === info.processIndex) this.emit(info, level, message, false);
      if (info.numProcesses > 1) await info.waitForEveryone!();
    }
  }
}

const loggers = new Map<string, MultiProcessLogger>();

/** Options of {@link getLogger}. */
export interface GetLoggerOptions {
  /** Level for this logger; default env `ACCELERATE_LOG_LEVEL`, else the default level (`warning`). */
  logLevel?: LogLevelName | string;
}

/**
 * The multi-process logger called `name` (one instance per name). Its level
 * is `options.logLevel`, else env `ACCELERATE_LOG_LEVEL` (read now), else
 * the default level; an explicit level on a later call updates the instance.
 *
 * @example
 * const logger = getLogger('train');
 * logger.info('starting', { mainProcessOnly: false }); // "[RANK 1] starting" on every rank
 */
export function getLogger(name: string, options: GetLoggerOptions = {}): MultiProcessLogger {
  const fromEnv = process.env.ACCELERATE_LOG_LEVEL;
  const requested = options.logLevel ?? (fromEnv !== undefined && fromEnv !== '' ? fromEnv : undefined);
  const where = options.logLevel !== undefined ? 'getLogger' : 'ACCELERATE_LOG_LEVEL';
  let logger = loggers.get(name);
  if (!logger) {
    logger = new MultiProcessLogger(name, requested !== undefined ? parseLogLevel(requested, where) : defaultLevel);
    loggers.set(name, logger);
  } else if (requested !== undefined) {
    logger.level = parseLogLevel(requested, where);
  }
  return logger;
}
