/**
 * `optim`: optimizers and learning-rate schedulers, as `torch.optim`.
 * @module
 */
export * from './optimizer.js';
export * from './lr-scheduler.js';
export * as lrScheduler from './lr-scheduler.js';
