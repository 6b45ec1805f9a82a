/**
 * The MLflow tracker, over MLflow's REST API (no Python, no MLflow client):
 * experiment get-or-create, `runs/create`, metrics batched through
 * `runs/log-batch` (at most 1000 metrics per call, flushed on size, on a
 * timer and at the end), params (100 per batch), `log-parameter`,
 * `set-tag`, and `runs/update` to close the run. Images (as PNG) and
 * artifact files are uploaded through the tracking server's proxied artifact
 * endpoint (`PUT /api/2.0/mlflow-artifacts/artifacts/<path>`, served by
 * `mlflow server` by default); a failed upload is a warning, never an error,
 * and the event stays in the JSONL stream for a later replay.
 * @module
 */
import { openAsBlob } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { type TrackerEvent, type TrackerImage, type TrackerInit } from '@accelerate/core';
import { sanitizeLogValues } from '@accelerate/core/internal';
import { EventTracker, flattenConfig, flattenGroups } from './base.js';
import { DeferredFlush, requestJson, TrackerHttpError } from './http.js';
import { imageToPng } from './tensorboard/tracker.js';

/** `initKwargs.mlflow` options. Environment variables fill what is not given. */
export interface MlflowTrackerOptions {
  /** Server URL; default env `MLFLOW_TRACKING_URI`. */
  trackingUri?: string;
  /** Experiment name; default env `MLFLOW_EXPERIMENT_NAME`, else the project name. */
  experimentName?: string;
  /** Run name; default env `MLFLOW_RUN_NAME`. */
  runName?: string;
  /** Tags set when the run is created. */
  tags?: Record<string, string>;
  /** Bearer token; default env `MLFLOW_TRACKING_TOKEN`. */
  token?: string;
  /** Basic auth; default env `MLFLOW_TRACKING_USERNAME` / `MLFLOW_TRACKING_PASSWORD`. */
  username?: string;
  password?: string;
  /** Metrics per `log-batch` call (MLflow allows 1000). Default 1000. */
  batchSize?: number;
  /** Send buffered metrics at least this often. Default 2000 ms. */
  flushIntervalMs?: number;
  /** Per-request timeout. Default 15000 ms. */
  timeoutMs?: number;
  /** Retries on network errors, 429 and 5xx. Default 3. */
  retries?: number;
  /** `fetch` to use (tests). */
  fetch?: typeof fetch;
}

/** MLflow's limits (REST API documentation). */
export const MLFLOW_LIMITS = { metricsPerBatch: 1000, paramsPerBatch: 100, tagsPerBatch: 100, entitiesPerBatch: 1000, paramValueLength: 6000, keyLength: 250 } as const;

interface Metric {
  key: string;
  value: number;
  timestamp: number;
  step: number;
}

/** Scheme of run artifact URIs that the tracking server proxies (`mlflow server --serve-artifacts`, the default since MLflow 2.0). */
const PROXIED_SCHEME = 'mlflow-artifacts:';

/**
 * Where a run's artifacts are uploaded: the path under
 * `/api/2.0/mlflow-artifacts/artifacts/` for a run whose artifact URI is
 * `mlflow-artifacts:[//host:port]/<path>`, or undefined for any other store
 * (`s3://`, `file:`, a server path), which only MLflow's Python client writes.
 */
export function mlflowProxiedArtifactRoot(artifactUri: string | undefined): string | undefined {
  if (!artifactUri?.startsWith(PROXIED_SCHEME)) return undefined;
  // mlflow-artifacts:/0/<run>/artifacts or mlflow-artifacts://host:5000/0/<run>/artifacts
  const rest = artifactUri.slice(PROXIED_SCHEME.length).replace(/^\/\/[^/]*/, '');
  return rest.replace(/^\/+|\/+$/g, '');
}

/** An artifact path MLflow accepts: relative, `/`-separated, no empty, `.` or `..` parts (the server's `validate_path_is_safe`). */
function artifactPath(...parts: string[]): string {
  const segments = parts
    .join('/')
    .split(/[\\/]+/)
    .filter((x) => x !== '' && x !== '.')
    .map((x) => (x === '..' ? '__' : x));
  return segments.join('/');
}

const MIME: Record<string, string> = { png: 'image/png', jpg: 'image/jpeg', jpeg: 'image/jpeg', json: 'application/json', txt: 'text/plain', csv: 'text/csv', yaml: 'text/yaml', yml: 'text/yaml', html: 'text/html' };

function mlflowError(status: number, body: unknown): string {
  const b = body as { error_code?: string; message?: string } | undefined;
  return b && typeof b === 'object' && b.error_code ? `${b.error_code}: ${b.message ?? ''}` : typeof body === 'string' ? body : JSON.stringify(body);
}

/** Logs to an MLflow tracking server. */
export class MlflowTracker extends EventTracker {
  static readonly trackerName = 'mlflow';
  static readonly requiresLoggingDirectory = false;
  /** `logWith: 'all'` includes MLflow when `MLFLOW_TRACKING_URI` is an http(s) URL. */
  static isAvailable(): boolean {
    return /^https?:\/\//.test(process.env.MLFLOW_TRACKING_URI ?? '');
  }
  readonly name = 'mlflow';
  readonly requiresLoggingDirectory = false;
  /** Server base URL (no trailing slash). */
  readonly trackingUri: string;
  /** Run id once `start()` has created the run. */
  runId: string | undefined;
  /** Experiment id once known. */
  experimentId: string | undefined;
  /** The run's artifact URI as the server created it (e.g. `mlflow-artifacts:/1/<run id>/artifacts`). */
  artifactUri: string | undefined;
  /** Artifact paths uploaded so far (relative to the run's artifact root), in order. */
  readonly uploaded: string[] = [];
  private readonly o: MlflowTrackerOptions;
  private buffer: Metric[] = [];
  private readonly deferred: DeferredFlush;
  private inflight: Promise<void> = Promise.resolve();
  private readonly warned = new Set<string>();

  constructor(init: TrackerInit) {
    super(init);
    this.o = init.options as MlflowTrackerOptions;
    this.deferred = new DeferredFlush(() => this.flush(), this.o.flushIntervalMs ?? 2000);
    const uri = this.o.trackingUri ?? process.env.MLFLOW_TRACKING_URI;
    if (!uri || !/^https?:\/\//.test(uri)) {
      throw new Error(
        `The mlflow tracker talks to an MLflow server over HTTP: set MLFLOW_TRACKING_URI (or initKwargs.mlflow.trackingUri) to its http(s) URL` +
          `${uri ? `; "${uri}" is not one (local file stores need the Python client: log with 'jsonl' and replay later)` : ''}.`,
      );
    }
    this.trackingUri = uri.replace(/\/+$/, '');
  }

  /** `{ runId, experimentId, trackingUri }`. */
  get tracker(): { runId?: string; experimentId?: string; trackingUri: string } {
    return { runId: this.runId, experimentId: this.experimentId, trackingUri: this.trackingUri };
  }

  private headers(): Record<string, string> {
    const token = this.o.token ?? process.env.MLFLOW_TRACKING_TOKEN;
    const user = this.o.username ?? process.env.MLFLOW_TRACKING_USERNAME;
    const pass = this.o.password ?? process.env.MLFLOW_TRACKING_PASSWORD;
    if (token) return { Authorization: `Bearer ${token}` };
    if (user) return { Authorization: `Basic ${Buffer.from(`${user}:${pass ?? ''}`).toString('base64')}` };
    return {};
  }

  /** Call `/api/2.0/mlflow/<endpoint>`. */
  async call(endpoint: string, body?: Record<string, unknown>, query?: Record<string, string>): Promise<Record<string, unknown>> {
    const qs = query ? `?${new URLSearchParams(query)}` : '';
    return (await requestJson(`${this.trackingUri}/api/2.0/mlflow/${endpoint}${qs}`, {
      body,
      headers: this.headers(),
      timeoutMs: this.o.timeoutMs,
      retries: this.o.retries,
      fetch: this.o.fetch,
      describeError: mlflowError,
    })) as Record<string, unknown>;
  }

  private async experiment(name: string): Promise<string> {
    try {
      const r = (await this.call('experiments/get-by-name', undefined, { experiment_name: name })) as { experiment: { experiment_id: string } };
      return r.experiment.experiment_id;
    } catch (e) {
      if (!(e instanceof TrackerHttpError) || (e.body as { error_code?: string })?.error_code !== 'RESOURCE_DOES_NOT_EXIST') throw e;
    }
    try {
      return ((await this.call('experiments/create', { name })) as { experiment_id: string }).experiment_id;
    } catch (e) {
      // Another process created it in between.
      if (e instanceof TrackerHttpError && (e.body as { error_code?: string })?.error_code === 'RESOURCE_ALREADY_EXISTS') return this.experiment(name);
      throw e;
    }
  }

  /** Find or create the experiment, then create the run. */
  async start(): Promise<void> {
    if (this.runId) return;
    this.experimentId = await this.experiment(this.o.experimentName ?? process.env.MLFLOW_EXPERIMENT_NAME ?? this.project);
    const runName = this.o.runName ?? process.env.MLFLOW_RUN_NAME;
    const tags = Object.entries({ ...(runName ? { 'mlflow.runName': runName } : {}), ...this.o.tags }).map(([key, value]) => ({ key, value: String(value) }));
    const body: Record<string, unknown> = { experiment_id: this.experimentId, start_time: Date.now(), tags };
    if (runName) body.run_name = runName;
    const r = (await this.call('runs/create', body)) as { run: { info: { run_id: string; artifact_uri?: string } } };
    this.runId = r.run.info.run_id;
    this.artifactUri = r.run.info.artifact_uri;
  }

  /**
   * Upload bytes (or a file, as a Blob) to `path` under the run's artifacts with
   * `PUT /api/2.0/mlflow-artifacts/artifacts/<root>/<path>`. Retries network
   * errors, 429 and 5xx like the JSON calls. Throws when the run's artifact
   * store is not proxied by the server or the upload fails.
   */
  async uploadArtifact(path: string, data: Uint8Array | Blob, contentType = 'application/octet-stream'): Promise<void> {
    this.requireRun();
    const root = mlflowProxiedArtifactRoot(this.artifactUri);
    if (root === undefined) {
      throw new Error(
        `the run's artifact store is ${JSON.stringify(this.artifactUri ?? '(none reported)')}, which only MLflow's Python client can write; ` +
          'start the server with proxied artifacts (`mlflow server --serve-artifacts`, the default since MLflow 2.0) so uploads go through it',
      );
    }
    const rel = artifactPath(path);
    const encoded = `${root}/${rel}`.split('/').map(encodeURIComponent).join('/');
    const url = `${this.trackingUri}/api/2.0/mlflow-artifacts/artifacts/${encoded}`;
    const f = this.o.fetch ?? fetch;
    const retries = this.o.retries ?? 3;
    let delay = 250;
    for (let attempt = 0; ; attempt++) {
      let res: Response | undefined;
      let networkError: unknown;
      try {
        res = await f(url, {
          method: 'PUT',
          headers: { 'Content-Type': contentType, ...this.headers() },
          body: data,
          signal: AbortSignal.timeout(this.o.timeoutMs ?? 15_000),
        });
      } catch (e) {
        networkError = e;
      }
      const retryable = res === undefined || res.status === 429 || res.status >= 500;
      if (res?.ok) {
        await res.arrayBuffer(); // drain, so the connection can be reused
        this.uploaded.push(rel);
        return;
      }
      if (retryable && attempt < retries) {
        await res?.arrayBuffer();
        await new Promise((r) => setTimeout(r, delay));
        delay *= 2;
        continue;
      }
      if (!res) {
        const cause = (networkError as { cause?: { code?: string; message?: string } }).cause;
        throw new Error(`PUT ${url}: ${(networkError as Error).message}${cause ? ` (${cause.code ?? cause.message})` : ''}`);
      }
      const text = await res.text();
      let body: unknown = text;
      try {
        body = JSON.parse(text);
      } catch {
        /* plain text, e.g. the 503 of a server without --serve-artifacts */
      }
      throw new TrackerHttpError(`PUT ${url} failed: HTTP ${res.status} ${mlflowError(res.status, body)}`, res.status, body);
    }
  }

  /** Upload logged images as PNG under `images/<key>_step<step>.png` (keys may hold `/` folders). */
  private async uploadImages(images: Record<string, TrackerImage>, step: number | undefined): Promise<void> {
    for (const [key, img] of Object.entries(images)) {
      const path = artifactPath('images', `${key}${step !== undefined ? `_step${step}` : ''}.png`);
      try {
        await this.uploadArtifact(path, imageToPng(img).png, 'image/png');
      } catch (e) {
        this.uploadFailed(`image "${key}"${step !== undefined ? ` (step ${step})` : ''}`, e);
      }
    }
  }

  /** Upload a logged file, or every file of a logged folder, under the artifact's name. */
  private async uploadFiles(name: string, localPath: string): Promise<void> {
    try {
      const info = await stat(localPath);
      const files = info.isDirectory()
        ? (await readdir(localPath, { recursive: true, withFileTypes: true })).filter((d) => d.isFile()).map((d) => join(d.parentPath, d.name))
        : [localPath];
      for (const file of files) {
        const rel = info.isDirectory() ? artifactPath(name, relative(localPath, file).split(sep).join('/')) : artifactPath(name);
        const ext = /\.([a-z0-9]+)$/i.exec(file)?.[1]?.toLowerCase() ?? '';
        await this.uploadArtifact(rel, await openAsBlob(file), MIME[ext]);
      }
    } catch (e) {
      this.uploadFailed(`artifact "${name}" (${localPath})`, e);
    }
  }

  /** Uploads never stop training or the other events: the first failure is a warning, later ones are counted and summed up by finish(). */
  private uploadFailed(what: string, e: unknown): void {
    this.uploadFailures += 1;
    if (this.uploadFailures > 1) return;
    const reason = (e as Error)?.message ?? String(e);
    this.init.warn(`mlflow: could not upload ${what}: ${reason}. It stays in the JSONL stream (accelerate replay <events.jsonl> --to mlflow uploads it later).`);
  }

  private uploadFailures = 0;

  private reportUploadFailures(): void {
    if (this.uploadFailures > 1) {
      this.init.warn(`mlflow: ${this.uploadFailures} image/artifact uploads failed in this run (the first one's reason was shown); they stay in the JSONL stream.`);
    }
    this.uploadFailures = 0;
  }

  private warnOnce(key: string, message: string): void {
    if (this.warned.has(key)) return;
    this.warned.add(key);
    this.init.warn(message);
  }

  private requireRun(): string {
    if (!this.runId) throw new Error('mlflow: the run was not created; call start() (initTrackers does) first.');
    return this.runId;
  }

  /** Log one parameter (`runs/log-parameter`). */
  async logParameter(key: string, value: string | number | boolean): Promise<void> {
    await this.call('runs/log-parameter', { run_id: this.requireRun(), key, value: String(value) });
  }

  /** Set one tag (`runs/set-tag`). */
  async setTag(key: string, value: string): Promise<void> {
    await this.call('runs/set-tag', { run_id: this.requireRun(), key, value });
  }

  async onEvent(event: TrackerEvent): Promise<void> {
    this.deferred.throwPending();
    switch (event.type) {
      case 'config':
        return this.storeParams(event.values);
      case 'metrics': {
        const flat = flattenGroups(sanitizeLogValues(event.values).values);
        for (const [key, v] of Object.entries(flat)) {
          if (typeof v === 'string') {
            this.warnOnce(`text:${key}`, `mlflow: "${key}" is text; MLflow metrics are numbers, so it is skipped (it stays in the JSONL stream).`);
            continue;
          }
          this.buffer.push({ key, value: typeof v === 'boolean' ? Number(v) : v, timestamp: Math.round(event.time * 1000), step: event.step ?? 0 });
        }
        if (this.buffer.length >= this.batchSize()) await this.flush();
        else if (this.buffer.length > 0) this.deferred.schedule();
        return;
      }
      case 'text':
        for (const [key, v] of Object.entries(event.values)) await this.setTag(key, v.slice(0, 5000));
        return;
      case 'images':
        this.requireRun();
        return this.uploadImages(event.images, event.step);
      case 'artifact':
        this.requireRun();
        return this.uploadFiles(event.name, event.path);
      case 'finish':
        this.reportUploadFailures();
        await this.flush();
        await this.call('runs/update', { run_id: this.requireRun(), status: event.status === 'finished' ? 'FINISHED' : event.status === 'killed' ? 'KILLED' : 'FAILED', end_time: Math.round(event.time * 1000) });
        this.closed = true;
        return;
      default:
        return;
    }
  }

  private closed = false;

  private batchSize(): number {
    return Math.min(this.o.batchSize ?? MLFLOW_LIMITS.metricsPerBatch, MLFLOW_LIMITS.metricsPerBatch);
  }

  private async storeParams(values: Record<string, unknown>): Promise<void> {
    const params: Array<{ key: string; value: string }> = [];
    for (const [key, v] of Object.entries(flattenConfig(values))) {
      const value = String(v);
      if (value.length > MLFLOW_LIMITS.paramValueLength || key.length > MLFLOW_LIMITS.keyLength) {
        this.init.warn(`mlflow: parameter "${key.slice(0, 60)}" is too long for MLflow (key <= ${MLFLOW_LIMITS.keyLength}, value <= ${MLFLOW_LIMITS.paramValueLength} characters); it is skipped.`);
        continue;
      }
      params.push({ key, value });
    }
    for (let i = 0; i < params.length; i += MLFLOW_LIMITS.paramsPerBatch) {
      await this.call('runs/log-batch', { run_id: this.requireRun(), params: params.slice(i, i + MLFLOW_LIMITS.paramsPerBatch) });
    }
  }


  /** Send buffered metrics now, in `log-batch` calls of at most 1000. */
  flush(): Promise<void> {
    this.deferred.cancel();
    const run = async () => {
      while (this.buffer.length > 0) {
        const batch = this.buffer.splice(0, this.batchSize());
        await this.call('runs/log-batch', { run_id: this.requireRun(), metrics: batch });
      }
    };
    this.inflight = this.inflight.then(run, run);
    return this.inflight;
  }

  /** Send what is buffered; close the run as FINISHED unless a finish event already did. */
  async finish(): Promise<void> {
    this.reportUploadFailures();
    await this.flush();
    if (!this.closed && this.runId) {
      await this.call('runs/update', { run_id: this.runId, status: 'FINISHED', end_time: Date.now() });
      this.closed = true;
    }
  }
}
