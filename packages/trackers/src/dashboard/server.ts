/**
 * The live dashboard: `startDashboard({ logdir })` serves a page on
 * 127.0.0.1 that lists the runs under `logdir` (their JSONL event streams)
 * and plots every logged metric per rank, plus step time and throughput,
 * updating as events are appended (server-sent events; the server tails the
 * files). No external resources: the page and its SVG plotter are inline.
 * @module
 */
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readdirSync, readSync, statSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { join, relative, resolve, sep } from 'node:path';
import { parseEventLog, type TrackerEvent } from '@accelerate/core';
import { sanitizeLogValues } from '@accelerate/core/internal';
import { flattenGroups } from '../base.js';
import { dashboardPage } from './page.js';

/** Options of {@link startDashboard}. */
export interface DashboardOptions {
  /** Folder to scan for runs (`*.jsonl` event streams, any depth up to 8). */
  logdir: string;
  /** Port; 0 (default) picks a free one. */
  port?: number;
  /** Loopback address to bind: `127.0.0.1` (default), `localhost` or `::1`. Other addresses are refused. */
  host?: string;
  /** How often open streams check their files for new lines. Default 250 ms. */
  pollMs?: number;
}

/** A running dashboard. */
export interface Dashboard {
  /** Page URL (`http://127.0.0.1:<port>/`). */
  url: string;
  port: number;
  /** Stop serving and close open streams. */
  close(): Promise<void>;
}

/** One run: a JSONL stream and its per-rank siblings (`events.jsonl`, `events.rank1.jsonl`, …). */
export interface DashboardRun {
  /** Stable id: path of the rank-0 file relative to logdir, without `.jsonl`. */
  id: string;
  /** Display name (the folder, plus the file's base name when it is not `events`). */
  name: string;
  /** Files with their rank (from the file name). */
  files: Array<{ path: string; rank: number; size: number; mtime: number }>;
}

const RANK_FILE = /^(.*?)(?:\.rank(\d+))?\.jsonl$/;

/** Runs under `logdir`, newest first. */
export function listRuns(logdir: string): DashboardRun[] {
  const root = resolve(logdir);
  const groups = new Map<string, DashboardRun>();
  const walk = (dir: string, depth: number) => {
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const full = join(dir, e.name);
      if (e.isDirectory() && depth < 8 && !e.name.startsWith('.') && e.name !== 'node_modules') walk(full, depth + 1);
      else if (e.isFile()) {
        const m = RANK_FILE.exec(e.name);
        if (!m) continue;
        const rel = relative(root, join(dir, m[1])).split(sep).join('/');
        // A file can vanish between readdir and stat (a run being cleaned up): skip it, don't throw.
        const st = statSync(full, { throwIfNoEntry: false });
        if (!st) continue;
        let run = groups.get(rel);
        if (!run) {
          const folder = relative(root, dir).split(sep).join('/') || '.';
          run = { id: rel, name: m[1] === 'events' ? folder : `${folder}/${m[1]}`, files: [] };
          groups.set(rel, run);
        }
        run.files.push({ path: full, rank: m[2] ? Number(m[2]) : 0, size: st.size, mtime: st.mtimeMs });
      }
    }
  };
  walk(root, 0);
  const runs = [...groups.values()];
  for (const r of runs) r.files.sort((a, b) => a.rank - b.rank);
  const newest = (r: DashboardRun) => Math.max(...r.files.map((f) => f.mtime));
  return runs.sort((a, b) => newest(b) - newest(a) || a.id.localeCompare(b.id));
}

/** What the page receives per event: small, numbers only. */
type WireEvent =
  | { k: 'm'; step?: number; time: number; rank: number; v: Record<string, number> }
  | { k: 's'; time: number; rank: number; project: string }
  | { k: 'c'; time: number; rank: number; v: Record<string, unknown> }
  | { k: 'f'; time: number; rank: number; status: string };

function toWire(e: TrackerEvent): WireEvent | undefined {
  switch (e.type) {
    case 'metrics': {
      const v: Record<string, number> = {};
      for (const [k, x] of Object.entries(flattenGroups(sanitizeLogValues(e.values).values))) {
        if (typeof x === 'number') v[k] = x;
        else if (typeof x === 'boolean') v[k] = x ? 1 : 0;
      }
      return Object.keys(v).length ? { k: 'm', step: e.step, time: e.time, rank: e.rank, v } : undefined;
    }
    case 'start':
      return { k: 's', time: e.time, rank: e.rank, project: e.project };
    case 'config':
      return { k: 'c', time: e.time, rank: e.rank, v: e.values };
    case 'finish':
      return { k: 'f', time: e.time, rank: e.rank, status: e.status };
    default:
      return undefined;
  }
}

/** Reads the complete new lines of one file since the last call. */
class Tail {
  private offset = 0;
  private line = 1;
  constructor(readonly path: string) {}
  read(): TrackerEvent[] {
    let size: number;
    try {
      size = statSync(this.path).size;
    } catch {
      return [];
    }
    if (size < this.offset) (this.offset = 0), (this.line = 1); // truncated: start over
    if (size === this.offset) return [];
    const buf = Buffer.alloc(size - this.offset);
    const fd = openSync(this.path, 'r');
    try {
      readSync(fd, buf, 0, buf.length, this.offset);
    } finally {
      closeSync(fd);
    }
    const parsed = parseEventLog(buf, this.line);
    this.offset += parsed.consumed;
    this.line += parsed.lines;
    return parsed.events;
  }
}

/**
 * The request target as a URL, or undefined when it is not a plain origin-form path
 * (`/path?query`): absolute forms (`http://[`), `*` and garbage get a 400 rather than a throw.
 */
function parseTarget(target: string | undefined): URL | undefined {
  if (!target || !target.startsWith('/') || target.startsWith('//')) return undefined;
  try {
    return new URL(target, 'http://127.0.0.1');
  } catch {
    return undefined;
  }
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1']);

/** Serve the dashboard for `logdir` on the loopback interface. */
export async function startDashboard(options: DashboardOptions): Promise<Dashboard> {
  const host = options.host ?? '127.0.0.1';
  if (!LOOPBACK.has(host)) {
    throw new Error(`startDashboard: host "${host}" is not a loopback address; the dashboard only listens on 127.0.0.1, localhost or ::1 (use an SSH tunnel to reach it remotely).`);
  }
  const logdir = resolve(options.logdir);
  const pollMs = options.pollMs ?? 250;
  const streams = new Set<ServerResponse>();
  const timers = new Set<NodeJS.Timeout>();
  let port = 0;

  const allowedHost = (h: string | undefined) => !!h && [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`].includes(h);

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    // Refuse other Host names: a web page elsewhere must not reach the dashboard through DNS rebinding.
    if (!allowedHost(req.headers.host)) {
      res.writeHead(403, { 'Content-Type': 'text/plain' }).end('forbidden host\n');
      return;
    }
    const url = parseTarget(req.url);
    if (!url) {
      res.writeHead(400, { 'Content-Type': 'text/plain', Connection: 'close' }).end('bad request target\n');
      return;
    }
    if (req.method !== 'GET') {
      res.writeHead(405, { Allow: 'GET' }).end();
      return;
    }
    if (url.pathname === '/') {
      const nonce = randomBytes(16).toString('base64');
      res.writeHead(200, {
        'Content-Type': 'text/html; charset=utf-8',
        'Content-Security-Policy': `default-src 'none'; script-src 'nonce-${nonce}'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:`,
        'Cache-Control': 'no-store',
      });
      res.end(dashboardPage(nonce, logdir));
      return;
    }
    if (url.pathname === '/api/runs') {
      const runs = listRuns(logdir).map((r) => ({ id: r.id, name: r.name, ranks: r.files.map((f) => f.rank), size: r.files.reduce((a, f) => a + f.size, 0), mtime: Math.max(...r.files.map((f) => f.mtime)) }));
      res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' }).end(JSON.stringify(runs));
      return;
    }
    if (url.pathname === '/api/stream') {
      const id = url.searchParams.get('run') ?? '';
      // Only ids from the listing: never a path built from the query.
      const run = listRuns(logdir).find((r) => r.id === id);
      if (!run) {
        res.writeHead(404, { 'Content-Type': 'application/json' }).end(JSON.stringify({ error: `no run "${id}" under ${logdir}` }));
        return;
      }
      res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-store', Connection: 'keep-alive' });
      streams.add(res);
      const tails = new Map(run.files.map((f) => [f.path, new Tail(f.path)]));
      const pump = () => {
        if (res.destroyed || res.writableEnded) return;
        // Rank files that appear later join the stream.
        for (const f of listRuns(logdir).find((r) => r.id === id)?.files ?? []) if (!tails.has(f.path)) tails.set(f.path, new Tail(f.path));
        const out: WireEvent[] = [];
        for (const t of tails.values()) for (const e of t.read()) {
          const w = toWire(e);
          if (w) out.push(w);
        }
        if (out.length) res.write(`event: events\ndata: ${JSON.stringify(out)}\n\n`);
      };
      pump();
      res.write(`event: ready\ndata: {}\n\n`);
      // A timer callback that throws would crash the process (and a training run under `launch --dashboard`): end this stream instead.
      const timer = setInterval(() => {
        try {
          pump();
        } catch {
          stop();
          res.destroy();
        }
      }, pollMs);
      timers.add(timer);
      const stop = () => {
        clearInterval(timer);
        timers.delete(timer);
        streams.delete(res);
      };
      req.on('close', stop);
      return;
    }
    res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
  };

  // No request, however malformed, may take the process down: a handler error ends that one response.
  const safeHandle = (req: IncomingMessage, res: ServerResponse) => {
    res.on('error', () => res.destroy());
    try {
      handle(req, res);
    } catch {
      if (!res.headersSent) res.writeHead(500, { 'Content-Type': 'text/plain', Connection: 'close' }).end('internal error\n');
      else res.destroy();
    }
  };
  const server = createServer(safeHandle);
  // Requests Node's parser rejects (bad request line, header, size): answer 400 when the socket can still take it, else drop it.
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout' : '400 Bad Request';
    // Only when nothing was sent yet on this connection, so a 400 never lands inside another response.
    if (socket.writable && (socket as Socket).bytesWritten === 0) socket.write(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    socket.destroy();
  });
  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(options.port ?? 0, host, () => ok());
  });
  port = (server.address() as { port: number }).port;
  // After listening, a server error (e.g. EMFILE on accept) must not end the process: the dashboard is a side show.
  server.on('error', (e) => process.stderr.write(`WARNING:accelerate.dashboard:${(e as Error).message}\n`));
  const shownHost = host === '::1' ? '[::1]' : host;
  return {
    url: `http://${shownHost}:${port}/`,
    port,
    close: () =>
      new Promise<void>((ok) => {
        for (const t of timers) clearInterval(t);
        for (const s of streams) s.end();
        server.closeAllConnections();
        server.close(() => ok());
      }),
  };
}
