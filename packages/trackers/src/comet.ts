/**
 * The Comet tracker over Comet's REST API v2 (no Python, no comet_ml):
 * `write/experiment/create`, then `write/experiment/parameter` for the
 * config and `write/experiment/metric` for every value.
 * @module
 */
import { type TrackerEvent, type TrackerInit } from '@accelerate/core';
import { sanitizeLogValues } from '@accelerate/core/internal';
import { EventTracker, flattenConfig, flattenGroups } from './base.js';
import { requestJson } from './http.js';

/** `initKwargs.comet_ml` options. Environment variables fill what is not given. */
export interface CometTrackerOptions {
  /** API key; default env `COMET_API_KEY`. */
  apiKey?: string;
  /** Workspace; default env `COMET_WORKSPACE`. */
  workspace?: string;
  /** Project; default env `COMET_PROJECT_NAME`, else the project given to `initTrackers`. */
  projectName?: string;
  /** Experiment name. */
  experimentName?: string;
  /** REST base URL; default `https://www.comet.com/api/rest/v2`. */
  baseUrl?: string;
  timeoutMs?: number;
  retries?: number;
  /** `fetch` to use (tests). */
  fetch?: typeof fetch;
}

/** Logs to Comet. */
export class CometTracker extends EventTracker {
  static readonly trackerName = 'comet_ml';
  static readonly requiresLoggingDirectory = false;
  /** `logWith: 'all'` includes Comet when `COMET_API_KEY` is set. */
  static isAvailable(): boolean {
    return !!process.env.COMET_API_KEY;
  }
  readonly name = 'comet_ml';
  readonly requiresLoggingDirectory = false;
  /** Experiment key once created. */
  experimentKey: string | undefined;
  /** Link to the experiment, from the server. */
  link: string | undefined;
  private readonly o: CometTrackerOptions;
  private readonly apiKey: string;
  private readonly baseUrl: string;
  private readonly warned = new Set<string>();

  constructor(init: TrackerInit) {
    super(init);
    this.o = init.options as CometTrackerOptions;
    const key = this.o.apiKey ?? process.env.COMET_API_KEY;
    if (!key) throw new Error('The comet_ml tracker needs an API key: set COMET_API_KEY (or initKwargs.comet_ml.apiKey). Offline, log with \'jsonl\' and replay later.');
    this.apiKey = key;
    this.baseUrl = (this.o.baseUrl ?? 'https://www.comet.com/api/rest/v2').replace(/\/+$/, '');
  }

  /** `{ experimentKey, link }`. */
  get tracker(): { experimentKey?: string; link?: string } {
    return { experimentKey: this.experimentKey, link: this.link };
  }

  private call(path: string, body: Record<string, unknown>): Promise<Record<string, unknown>> {
    return requestJson(`${this.baseUrl}/${path}`, { body, headers: { Authorization: this.apiKey }, timeoutMs: this.o.timeoutMs, retries: this.o.retries, fetch: this.o.fetch }) as Promise<Record<string, unknown>>;
  }

  async start(): Promise<void> {
    if (this.experimentKey) return;
    const workspaceName = this.o.workspace ?? process.env.COMET_WORKSPACE;
    if (!workspaceName) throw new Error('comet_ml: set COMET_WORKSPACE (or initKwargs.comet_ml.workspace): Comet\'s REST API needs the workspace name.');
    const body: Record<string, unknown> = { workspaceName, projectName: this.o.projectName ?? process.env.COMET_PROJECT_NAME ?? this.project };
    if (this.o.experimentName) body.experimentName = this.o.experimentName;
    const r = (await this.call('write/experiment/create', body)) as { experimentKey?: string; link?: string };
    if (!r.experimentKey) throw new Error(`comet_ml: experiment/create returned no experimentKey (${JSON.stringify(r)}).`);
    this.experimentKey = r.experimentKey;
    this.link = r.link;
  }

  async onEvent(event: TrackerEvent): Promise<void> {
    const experimentKey = this.experimentKey;
    if (!experimentKey) throw new Error('comet_ml: the experiment was not created; call start() (initTrackers does) first.');
    if (event.type === 'config') {
      for (const [parameterName, v] of Object.entries(flattenConfig(event.values))) {
        await this.call('write/experiment/parameter', { experimentKey, parameterName, parameterValue: String(v) });
      }
    } else if (event.type === 'metrics') {
      for (const [metricName, v] of Object.entries(flattenGroups(sanitizeLogValues(event.values).values))) {
        if (typeof v === 'string') {
          if (!this.warned.has(metricName)) this.warned.add(metricName), this.init.warn(`comet_ml: "${metricName}" is text; Comet metrics are numbers, so it is skipped (it stays in the JSONL stream).`);
          continue;
        }
        const body: Record<string, unknown> = { experimentKey, metricName, metricValue: String(Number(v)), timestamp: Math.round(event.time * 1000) };
        if (event.step !== undefined) body.step = event.step;
        await this.call('write/experiment/metric', body);
      }
    }
  }

  finish(): void {}
}
