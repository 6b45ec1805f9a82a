/**
 * The Weights & Biases tracker over W&B's HTTP API (no Python, no wandb
 * package): the run is created with the GraphQL `upsertBucket` mutation
 * (config included) and history rows are streamed to the run's
 * `file_stream` endpoint (`wandb-history.jsonl` + `wandb-summary.json`),
 * which is how W&B clients upload. Runs on every process, like Accelerate's.
 * @module
 */
import { randomBytes } from 'node:crypto';
import { type TrackerEvent, type TrackerInit } from '@accelerate/core';
import { sanitizeLogValues } from '@accelerate/core/internal';
import { EventTracker, flattenGroups } from './base.js';
import { DeferredFlush, requestJson } from './http.js';

/** `initKwargs.wandb` options. Environment variables fill what is not given. */
export interface WandbTrackerOptions {
  /** API key; default env `WANDB_API_KEY`. */
  apiKey?: string;
  /** Team or user; default env `WANDB_ENTITY`, else the key's default entity. */
  entity?: string;
  /** Server; default env `WANDB_BASE_URL`, else `https://api.wandb.ai`. */
  baseUrl?: string;
  /** Run id (8+ lowercase letters/digits); default env `WANDB_RUN_ID`, else random. */
  runId?: string;
  /** Display name; default env `WANDB_NAME`. */
  name?: string;
  /** Run group; default env `WANDB_RUN_GROUP`. */
  group?: string;
  tags?: string[];
  /** Send buffered rows at least this often. Default 2000 ms. */
  flushIntervalMs?: number;
  timeoutMs?: number;
  retries?: number;
  /** `fetch` to use (tests). */
  fetch?: typeof fetch;
}

const UPSERT_BUCKET = `mutation UpsertBucket($id: String, $name: String, $project: String, $entity: String, $groupName: String, $displayName: String, $config: JSONString, $tags: [String!]) {
  upsertBucket(input: {id: $id, name: $name, groupName: $groupName, modelName: $project, entityName: $entity, displayName: $displayName, config: $config, tags: $tags}) {
    bucket { id name displayName project { name entity { name } } }
    inserted
  }
}`;

const VIEWER = 'query Viewer { viewer { entity } }';

/** Logs to Weights & Biases. */
export class WandbTracker extends EventTracker {
  static readonly trackerName = 'wandb';
  static readonly requiresLoggingDirectory = false;
  static readonly mainProcessOnly = false;
  /** `logWith: 'all'` includes W&B when `WANDB_API_KEY` is set. */
  static isAvailable(): boolean {
    return !!process.env.WANDB_API_KEY;
  }
  readonly name = 'wandb';
  readonly requiresLoggingDirectory = false;
  override readonly mainProcessOnly = false;
  /** Run id (the URL's last part). */
  readonly runId: string;
  /** Entity, once known. */
  entity: string | undefined;
  private readonly o: WandbTrackerOptions;
  private readonly apiKey: string;
  private readonly baseUrl: string;
  private rows: string[] = [];
  private sent = 0;
  private summary: Record<string, unknown> = {};
  private startTime = Date.now() / 1000;
  private readonly deferred: DeferredFlush;
  private inflight: Promise<void> = Promise.resolve();
  private started = false;

  constructor(init: TrackerInit) {
    super(init);
    this.o = init.options as WandbTrackerOptions;
    this.deferred = new DeferredFlush(() => this.flush(), this.o.flushIntervalMs ?? 2000);
    const key = this.o.apiKey ?? process.env.WANDB_API_KEY;
    if (!key) throw new Error('The wandb tracker needs an API key: set WANDB_API_KEY (or initKwargs.wandb.apiKey). Offline, log with \'jsonl\' and replay later with `accelerate replay <events.jsonl> --to wandb`.');
    this.apiKey = key;
    this.baseUrl = (this.o.baseUrl ?? process.env.WANDB_BASE_URL ?? 'https://api.wandb.ai').replace(/\/+$/, '');
    this.runId = this.o.runId ?? process.env.WANDB_RUN_ID ?? randomBytes(6).toString('hex').slice(0, 8);
    this.entity = this.o.entity ?? process.env.WANDB_ENTITY;
  }

  /** `{ entity, project, runId, url }`. */
  get tracker(): { entity?: string; project: string; runId: string; url?: string } {
    return { entity: this.entity, project: this.project, runId: this.runId, url: this.entity ? `${this.baseUrl.replace('api.', '')}/${this.entity}/${this.project}/runs/${this.runId}` : undefined };
  }

  private auth() {
    return { Authorization: `Basic ${Buffer.from(`api:${this.apiKey}`).toString('base64')}` };
  }

  private async graphql(query: string, variables: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
    const r = (await requestJson(`${this.baseUrl}/graphql`, { body: { query, variables }, headers: this.auth(), timeoutMs: this.o.timeoutMs, retries: this.o.retries, fetch: this.o.fetch })) as {
      data?: Record<string, unknown>;
      errors?: Array<{ message: string }>;
    };
    if (r.errors?.length) throw new Error(`wandb: ${r.errors.map((e) => e.message).join('; ')}`);
    return r.data ?? {};
  }

  private async upsert(config?: Record<string, unknown>): Promise<void> {
    const vars: Record<string, unknown> = {
      name: this.runId,
      project: this.project,
      entity: this.entity,
      displayName: this.o.name ?? process.env.WANDB_NAME,
      groupName: this.o.group ?? process.env.WANDB_RUN_GROUP,
      tags: this.o.tags,
    };
    // W&B stores config as {key: {value, desc}}.
    if (config) vars.config = JSON.stringify(Object.fromEntries(Object.entries(config).map(([k, v]) => [k, { value: v, desc: null }])));
    const data = (await this.graphql(UPSERT_BUCKET, vars)) as { upsertBucket?: { bucket?: { project?: { entity?: { name?: string } } } } };
    this.entity ??= data.upsertBucket?.bucket?.project?.entity?.name;
  }

  async start(): Promise<void> {
    if (this.started) return;
    if (!this.entity) this.entity = ((await this.graphql(VIEWER)) as { viewer?: { entity?: string } }).viewer?.entity;
    if (!this.entity) throw new Error('wandb: could not find the entity for this API key; set WANDB_ENTITY.');
    await this.upsert();
    this.started = true;
  }

  private fileStreamUrl(): string {
    return `${this.baseUrl}/files/${encodeURIComponent(this.entity!)}/${encodeURIComponent(this.project)}/${encodeURIComponent(this.runId)}/file_stream`;
  }

  async onEvent(event: TrackerEvent): Promise<void> {
    this.deferred.throwPending();
    if (event.type === 'start') this.startTime = event.time;
    if (event.type === 'config') return this.upsert(event.values);
    if (event.type === 'metrics' || event.type === 'text') {
      const values = event.type === 'text' ? event.values : flattenGroups(sanitizeLogValues(event.values).values);
      if (Object.keys(values).length === 0) return;
      const row = { ...values, _step: event.step ?? this.sent + this.rows.length, _timestamp: event.time, _runtime: Math.max(0, event.time - this.startTime) };
      Object.assign(this.summary, values);
      this.rows.push(JSON.stringify(row));
      if (this.rows.length >= 500) await this.flush();
      else this.deferred.schedule();
    }
    if (event.type === 'finish') {
      await this.flush();
      await this.post({ complete: true, exitcode: event.status === 'finished' ? 0 : 1 });
      this.completed = true;
    }
  }

  private completed = false;

  private post(body: Record<string, unknown>): Promise<unknown> {
    return requestJson(this.fileStreamUrl(), { body, headers: this.auth(), timeoutMs: this.o.timeoutMs, retries: this.o.retries, fetch: this.o.fetch });
  }


  /** Send buffered history rows and the summary now. */
  flush(): Promise<void> {
    this.deferred.cancel();
    const run = async () => {
      if (this.rows.length === 0) return;
      const content = this.rows.splice(0);
      await this.post({ files: { 'wandb-history.jsonl': { offset: this.sent, content }, 'wandb-summary.json': { offset: 0, content: [JSON.stringify(this.summary)] } } });
      this.sent += content.length;
    };
    this.inflight = this.inflight.then(run, run);
    return this.inflight;
  }

  async finish(): Promise<void> {
    await this.flush();
    if (!this.completed && this.started) {
      await this.post({ complete: true, exitcode: 0 });
      this.completed = true;
    }
  }
}
