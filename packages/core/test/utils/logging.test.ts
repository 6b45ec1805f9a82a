import { afterEach, describe, expect, it } from 'vitest';
import {
  getLogger,
  setLogSink,
  setRankInfoProvider,
  type LogRecord,
  type RankInfo,
} from '../../src/utils/logging.js';
import { patchEnvironment } from '../../src/utils/environment.js';

function capture(): LogRecord[] {
  const records: LogRecord[] = [];
  setLogSink((r) => records.push(r));
  return records;
}

const rank = (processIndex: number, numProcesses = 2, extra: Partial<RankInfo> = {}): RankInfo => ({
  processIndex,
  localProcessIndex: processIndex,
  numProcesses,
  isMainProcess: processIndex === 0,
  ...extra,
});

afterEach(() => {
  setLogSink(undefined);
  setRankInfoProvider(undefined);
});

describe('getLogger', () => {
  it('throws before the state provides rank information', () => {
    const logger = getLogger('ts-test-nostate', { logLevel: 'info' });
    expect(() => logger.info('hi')).toThrow(/accelerate state is not initialised.*Create a PartialState or an Accelerator/);
  });

  it('prefixes [RANK p] and writes on the main process only by default', () => {
    const records = capture();
    const logger = getLogger('ts-test-main', { logLevel: 'INFO' });
    setRankInfoProvider(() => rank(0));
    logger.info('from main');
    setRankInfoProvider(() => rank(1));
    logger.info('dropped on rank 1');
    logger.info('kept on rank 1', { mainProcessOnly: false });
    expect(records.map((r) => r.message)).toEqual(['[RANK 0] from main', '[RANK 1] kept on rank 1']);
    expect(records[1]).toMatchObject({ level: 'info', name: 'ts-test-main', processIndex: 1 });
  });

  it('filters by level: explicit option, then ACCELERATE_LOG_LEVEL, then warning', () => {
    const records = capture();
    setRankInfoProvider(() => rank(0));
    const saved = process.env.ACCELERATE_LOG_LEVEL;
    delete process.env.ACCELERATE_LOG_LEVEL;
    const def = getLogger('ts-test-default');
    if (saved !== undefined) process.env.ACCELERATE_LOG_LEVEL = saved;
    def.info('hidden');
    def.warning('shown');
    const fromEnv = patchEnvironment({ ACCELERATE_LOG_LEVEL: 'debug' }, () => getLogger('ts-test-env'));
    fromEnv.debug('debug shown');
    expect(records.map((r) => r.message)).toEqual(['[RANK 0] shown', '[RANK 0] debug shown']);
    expect(getLogger('ts-test-env')).toBe(fromEnv);
    expect(() => getLogger('ts-test-bad', { logLevel: 'loud' })).toThrow(/unknown log level "loud"/);
  });

  it('warningOnce writes each message once', () => {
    const records = capture();
    setRankInfoProvider(() => rank(0, 1));
    const logger = getLogger('ts-test-once');
    logger.warningOnce('careful');
    logger.warningOnce('careful');
    logger.warningOnce('other');
    expect(records.map((r) => r.message)).toEqual(['[RANK 0] careful', '[RANK 0] other']);
  });

  it('logInOrder writes rank by rank with barriers in between', async () => {
    const records = capture();
    const P = 3;
    // Simulate 3 ranks in one process: a shared barrier and a provider that answers for the rank running now.
    let arrived = 0;
    let release: (() => void)[] = [];
    const barrier = () =>
      new Promise<void>((resolve) => {
        release.push(resolve);
        if (++arrived === P) {
          arrived = 0;
          const waiting = release;
          release = [];
          waiting.forEach((r) => r());
        }
      });
    const logger = getLogger('ts-test-order', { logLevel: 'info' });
    // Start the ranks out of order; the barriers must still make them write 0, 1, 2.
    const runs = [2, 0, 1].map((p) => {
      const info = rank(p, P, { waitForEveryone: barrier });
      setRankInfoProvider(() => info);
      return logger.logInOrder('info', `hello from ${p}`);
    });
    await Promise.all(runs);
    expect(records.map((r) => r.message)).toEqual(['[RANK 0] hello from 0', '[RANK 1] hello from 1', '[RANK 2] hello from 2']);
  });
});
