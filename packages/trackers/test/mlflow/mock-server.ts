// A local stand-in for an MLflow tracking server that enforces the REST API's
// documented request shapes, limits and error format ({error_code, message}),
// and the proxied artifact store (`mlflow server --serve-artifacts`):
// PUT/GET /api/2.0/mlflow-artifacts/artifacts/<path>, relative safe paths only.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';

export interface MockRun {
  info: { run_id: string; run_uuid: string; experiment_id: string; run_name: string; status: string; start_time: number; end_time?: number; lifecycle_stage: string; artifact_uri: string };
  metrics: Array<{ key: string; value: number; timestamp: number; step: number }>;
  params: Record<string, string>;
  tags: Record<string, string>;
}

export interface MockMlflow {
  url: string;
  experiments: Map<string, string>;
  runs: Map<string, MockRun>;
  requests: Array<{ method: string; path: string; body: unknown; contentType?: string }>;
  /** Uploaded artifacts by path under the artifact root (`<experiment>/<run>/artifacts/<file>`). */
  artifacts: Map<string, Buffer>;
  /** Answer the next `count` requests with this status (503 → retry tests). */
  failNext(status: number, count: number): void;
  close(): Promise<void>;
}

class ApiError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
  }
}

const isInt = (x: unknown) => typeof x === 'number' && Number.isSafeInteger(x);
const isStr = (x: unknown) => typeof x === 'string';
const RUN_STATUS = ['RUNNING', 'SCHEDULED', 'FINISHED', 'FAILED', 'KILLED'];

function need(body: Record<string, unknown>, field: string, check: (x: unknown) => boolean, what: string): void {
  if (body[field] === undefined) throw new ApiError(400, 'INVALID_PARAMETER_VALUE', `Missing value for required parameter '${field}'.`);
  if (!check(body[field])) throw new ApiError(400, 'INVALID_PARAMETER_VALUE', `Invalid value ${JSON.stringify(body[field])} for parameter '${field}' supplied: expected ${what}.`);
}

export interface MockMlflowOptions {
  /** Serve proxied artifacts (default true, as `mlflow server`); false answers 503 like `--no-serve-artifacts`. */
  serveArtifacts?: boolean;
  /** Artifact URI of new runs; default `mlflow-artifacts:/<experiment>/<run>/artifacts`. */
  artifactUri?: (experimentId: string, runId: string) => string;
}

/** The server's `validate_path_is_safe`: relative, no `..`, no backslashes, no empty or `.` parts. */
function safeArtifactPath(path: string): boolean {
  if (path === '' || path.startsWith('/') || path.includes('\\') || /^[a-z]:/i.test(path)) return false;
  return path.split('/').every((p) => p !== '' && p !== '.' && p !== '..');
}

export async function startMockMlflow(options: MockMlflowOptions = {}): Promise<MockMlflow> {
  const experiments = new Map<string, string>([['Default', '0']]);
  const runs = new Map<string, MockRun>();
  const requests: MockMlflow['requests'] = [];
  const artifacts = new Map<string, Buffer>();
  let failing = { status: 0, count: 0 };
  let nextId = 1;

  const getRun = (body: Record<string, unknown>): MockRun => {
    need(body, 'run_id', isStr, 'a string');
    const run = runs.get(body.run_id as string);
    if (!run) throw new ApiError(404, 'RESOURCE_DOES_NOT_EXIST', `Run '${body.run_id}' not found.`);
    return run;
  };
  const setParam = (run: MockRun, p: unknown) => {
    const { key, value } = p as { key: unknown; value: unknown };
    if (!isStr(key) || !isStr(value)) throw new ApiError(400, 'INVALID_PARAMETER_VALUE', `Param key and value must be strings, got ${JSON.stringify(p)}.`);
    if ((key as string).length > 250) throw new ApiError(400, 'INVALID_PARAMETER_VALUE', `Param key '${key}' exceeds the limit of 250 characters.`);
    if ((value as string).length > 6000) throw new ApiError(400, 'INVALID_PARAMETER_VALUE', `Param value for '${key}' exceeds the limit of 6000 characters.`);
    if (key as string in run.params && run.params[key as string] !== value) {
      throw new ApiError(400, 'INVALID_PARAMETER_VALUE', `Changing param values is not allowed. Param with key='${key}' was already logged with value='${run.params[key as string]}' for run ID='${run.info.run_id}'. Attempted logging new value '${value}'.`);
    }
    run.params[key as string] = value as string;
  };
  const setTag = (run: MockRun, t: unknown) => {
    const { key, value } = t as { key: unknown; value: unknown };
    if (!isStr(key) || !isStr(value)) throw new ApiError(400, 'INVALID_PARAMETER_VALUE', `Tag key and value must be strings, got ${JSON.stringify(t)}.`);
    run.tags[key as string] = value as string;
  };

  const routes: Record<string, (body: Record<string, unknown>, query: URLSearchParams) => unknown> = {
    'GET experiments/get-by-name': (_b, q) => {
      const name = q.get('experiment_name');
      if (!name) throw new ApiError(400, 'INVALID_PARAMETER_VALUE', "Missing value for required parameter 'experiment_name'.");
      const id = experiments.get(name);
      if (id === undefined) throw new ApiError(404, 'RESOURCE_DOES_NOT_EXIST', `Could not find experiment with name '${name}'`);
      return { experiment: { experiment_id: id, name, lifecycle_stage: 'active' } };
    },
    'POST experiments/create': (b) => {
      need(b, 'name', (x) => isStr(x) && (x as string).length > 0, 'a non-empty string');
      if (experiments.has(b.name as string)) throw new ApiError(400, 'RESOURCE_ALREADY_EXISTS', `Experiment '${b.name}' already exists.`);
      const id = String(nextId++);
      experiments.set(b.name as string, id);
      return { experiment_id: id };
    },
    'POST runs/create': (b) => {
      need(b, 'experiment_id', isStr, 'a string');
      if (![...experiments.values()].includes(b.experiment_id as string)) throw new ApiError(404, 'RESOURCE_DOES_NOT_EXIST', `No Experiment with id=${b.experiment_id} exists`);
      if (b.start_time !== undefined) need(b, 'start_time', isInt, 'an int64 timestamp in milliseconds');
      if (b.run_name !== undefined) need(b, 'run_name', isStr, 'a string');
      if (b.tags !== undefined) need(b, 'tags', Array.isArray, 'a list of {key, value}');
      const id = `run${nextId++}`.padEnd(32, '0');
      const run: MockRun = {
        info: {
          run_id: id,
          run_uuid: id,
          experiment_id: b.experiment_id as string,
          run_name: (b.run_name as string) ?? 'mock-run',
          status: 'RUNNING',
          start_time: (b.start_time as number) ?? Date.now(),
          lifecycle_stage: 'active',
          artifact_uri: options.artifactUri?.(b.experiment_id as string, id) ?? `mlflow-artifacts:/${b.experiment_id}/${id}/artifacts`,
        },
        metrics: [],
        params: {},
        tags: {},
      };
      for (const t of (b.tags as unknown[]) ?? []) setTag(run, t);
      runs.set(id, run);
      return { run: { info: run.info, data: {} } };
    },
    'POST runs/log-batch': (b) => {
      const run = getRun(b);
      const metrics = (b.metrics as unknown[]) ?? [];
      const params = (b.params as unknown[]) ?? [];
      const tags = (b.tags as unknown[]) ?? [];
      if (metrics.length > 1000) throw new ApiError(400, 'INVALID_PARAMETER_VALUE', `A batch logging request can contain at most 1000 metrics. Got ${metrics.length} metrics.`);
      if (params.length > 100) throw new ApiError(400, 'INVALID_PARAMETER_VALUE', `A batch logging request can contain at most 100 params. Got ${params.length} params.`);
      if (tags.length > 100) throw new ApiError(400, 'INVALID_PARAMETER_VALUE', `A batch logging request can contain at most 100 tags. Got ${tags.length} tags.`);
      if (metrics.length + params.length + tags.length > 1000) throw new ApiError(400, 'INVALID_PARAMETER_VALUE', 'A batch logging request can contain at most 1000 metrics, params and tags in total.');
      for (const m of metrics) {
        const { key, value, timestamp, step } = m as Record<string, unknown>;
        if (!isStr(key) || typeof value !== 'number' || !isInt(timestamp) || (step !== undefined && !isInt(step))) {
          throw new ApiError(400, 'INVALID_PARAMETER_VALUE', `Invalid metric ${JSON.stringify(m)}: key string, value double, timestamp int64 and step int64 required.`);
        }
      }
      for (const p of params) setParam(run, p);
      for (const t of tags) setTag(run, t);
      for (const m of metrics) {
        const x = m as MockRun['metrics'][number];
        run.metrics.push({ key: x.key, value: x.value, timestamp: x.timestamp, step: x.step ?? 0 });
      }
      return {};
    },
    'POST runs/log-parameter': (b) => {
      const run = getRun(b);
      need(b, 'key', isStr, 'a string');
      need(b, 'value', isStr, 'a string');
      setParam(run, { key: b.key, value: b.value });
      return {};
    },
    'POST runs/set-tag': (b) => {
      const run = getRun(b);
      need(b, 'key', isStr, 'a string');
      need(b, 'value', isStr, 'a string');
      setTag(run, { key: b.key, value: b.value });
      return {};
    },
    'POST runs/update': (b) => {
      const run = getRun(b);
      if (b.status !== undefined) need(b, 'status', (x) => RUN_STATUS.includes(x as string), `one of ${RUN_STATUS.join(', ')}`);
      if (b.end_time !== undefined) need(b, 'end_time', isInt, 'an int64 timestamp in milliseconds');
      if (b.status) run.info.status = b.status as string;
      if (b.end_time) run.info.end_time = b.end_time as number;
      return { run_info: run.info };
    },
    'GET runs/get': (_b, q) => {
      const run = getRun({ run_id: q.get('run_id') ?? undefined });
      return { run: { info: run.info, data: { params: Object.entries(run.params).map(([key, value]) => ({ key, value })), tags: Object.entries(run.tags).map(([key, value]) => ({ key, value })) } } };
    },
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    const artifactsPrefix = '/api/2.0/mlflow-artifacts/artifacts/';
    if (url.pathname.startsWith(artifactsPrefix)) {
      const path = decodeURIComponent(url.pathname.slice(artifactsPrefix.length));
      requests.push({ method: req.method ?? '', path: `mlflow-artifacts/${path}`, body: Buffer.concat(chunks), contentType: req.headers['content-type'] });
      if (failing.count > 0) {
        failing.count--;
        return send(failing.status, { error_code: 'TEMPORARILY_UNAVAILABLE', message: 'Injected failure.' });
      }
      if (options.serveArtifacts === false) {
        res.writeHead(503, { 'Content-Type': 'text/html; charset=utf-8' });
        res.end(`Endpoint: /api/2.0/mlflow-artifacts/artifacts/<path:artifact_path> disabled due to the mlflow server running with \`--no-serve-artifacts\`. To enable artifacts server functionality, run \`mlflow server\` with \`--serve-artifacts\``);
        return;
      }
      if (!safeArtifactPath(path)) return send(400, { error_code: 'INVALID_PARAMETER_VALUE', message: `Invalid path: ${path}` });
      if (req.method === 'PUT') {
        // Artifacts of a run live under the root its artifact_uri names.
        const run = [...runs.values()].find((r) => path.startsWith(`${r.info.artifact_uri.replace(/^mlflow-artifacts:\/*/, '')}/`));
        if (!run) return send(400, { error_code: 'INVALID_PARAMETER_VALUE', message: `No run owns the artifact path ${path}.` });
        artifacts.set(path, Buffer.concat(chunks));
        return send(200, {});
      }
      if (req.method === 'GET') {
        const data = artifacts.get(path);
        if (!data) return send(404, { error_code: 'RESOURCE_DOES_NOT_EXIST', message: `No such file or directory: '${path}'` });
        res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
        res.end(data);
        return;
      }
      return send(405, { error_code: 'BAD_REQUEST', message: `Method ${req.method} not allowed on ${url.pathname}.` });
    }
    const prefix = '/api/2.0/mlflow/';
    const endpoint = url.pathname.startsWith(prefix) ? url.pathname.slice(prefix.length) : url.pathname;
    let body: Record<string, unknown> = {};
    try {
      if (req.method === 'POST') {
        if (!(req.headers['content-type'] ?? '').includes('application/json')) throw new ApiError(400, 'BAD_REQUEST', 'Content-Type must be application/json.');
        const parsed = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
        if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new ApiError(400, 'MALFORMED_REQUEST', 'Request body must be a JSON object.');
        body = parsed;
      }
      requests.push({ method: req.method ?? '', path: endpoint, body });
      if (failing.count > 0) {
        failing.count--;
        throw new ApiError(failing.status, 'TEMPORARILY_UNAVAILABLE', 'Injected failure.');
      }
      const route = routes[`${req.method} ${endpoint}`];
      if (!route) throw new ApiError(404, 'ENDPOINT_NOT_FOUND', `No API endpoint ${req.method} ${url.pathname}.`);
      send(200, route(body, url.searchParams));
    } catch (e) {
      if (e instanceof ApiError) send(e.status, { error_code: e.code, message: e.message });
      else send(400, { error_code: 'MALFORMED_REQUEST', message: (e as Error).message });
    }
  };

  const server: Server = createServer((req, res) => void handle(req, res));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    experiments,
    runs,
    requests,
    artifacts,
    failNext(status, count) {
      failing = { status, count };
    },
    close: () => new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    }),
  };
}
