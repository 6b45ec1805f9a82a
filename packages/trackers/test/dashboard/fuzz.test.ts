// Malformed requests over raw TCP must never take the dashboard down: each gets a 4xx or a
// closed socket, and a normal request still works afterwards. The server runs in its own
// process (from src, through tsx) so a crash shows as that process exiting.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { repoRoot, tempDir } from '../helpers.js';

let child: ChildProcess;
let port = 0;
let stderr = '';
let exited: { code: number | null; signal: string | null } | undefined;

beforeAll(async () => {
  const logdir = tempDir('dash-fuzz');
  mkdirSync(join(logdir, 'demo'));
  writeFileSync(join(logdir, 'demo/events.jsonl'), '');
  const server = join(repoRoot, 'packages/trackers/src/dashboard/server.ts');
  const code = `import { startDashboard } from ${JSON.stringify(server)};
const d = await startDashboard({ logdir: ${JSON.stringify(logdir)}, pollMs: 50 });
console.log('PORT ' + d.port);`;
  child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stderr!.on('data', (d) => (stderr += d));
  child.on('exit', (code, signal) => (exited = { code, signal }));
  port = await new Promise<number>((resolve, reject) => {
    let out = '';
    const t = setTimeout(() => reject(new Error(`dashboard did not start: ${stderr}`)), 30_000);
    child.stdout!.on('data', (d) => {
      out += d;
      const m = /PORT (\d+)/.exec(out);
      if (m) clearTimeout(t), resolve(Number(m[1]));
    });
    child.on('exit', () => reject(new Error(`dashboard exited: ${stderr}`)));
  });
}, 40_000);

afterAll(() => {
  child?.kill('SIGKILL');
});

/** Send raw bytes, collect what comes back until the server closes or 1.5 s pass. */
function raw(bytes: string | Buffer): Promise<{ reply: string; closed: boolean }> {
  return new Promise((resolve) => {
    let reply = '';
    let done = false;
    const s = connect(port, '127.0.0.1');
    const finish = (closed: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      resolve({ reply, closed });
    };
    const timer = setTimeout(() => finish(false), 1500);
    s.on('connect', () => s.write(bytes, () => s.end()));
    s.on('data', (d) => (reply += d.toString('latin1')));
    s.on('error', () => finish(true));
    s.on('close', () => finish(true));
  });
}

/** A small deterministic PRNG so a failing case can be reproduced. */
function rng(seed: number) {
  return () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
}

describe('dashboard fuzzing over raw sockets', () => {
  it('answers malformed request lines, headers and paths with 4xx or a close, and keeps serving', async () => {
    const host = () => `Host: 127.0.0.1:${port}\r\n`;
    const cases: Array<string | Buffer> = [
      `GET http://[ HTTP/1.1\r\n${host()}\r\n`, // the reported crash
      `GET http://127.0.0.1:${port}/ HTTP/1.1\r\n${host()}\r\n`,
      `GET //evil HTTP/1.1\r\n${host()}\r\n`,
      `GET * HTTP/1.1\r\n${host()}\r\n`,
      `GET %zz HTTP/1.1\r\n${host()}\r\n`,
      `GET /api/stream?run=%E0%A4%A HTTP/1.1\r\n${host()}\r\n`,
      `GET /api/stream?run=../../../etc/passwd HTTP/1.1\r\n${host()}\r\n`,
      `GET /\0 HTTP/1.1\r\n${host()}\r\n`,
      `GET / HTTP/9.9\r\n${host()}\r\n`,
      `GET / HTTP/1.1\r\nHost: [\r\n\r\n`,
      `GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nHost: localhost:${port}\r\n\r\n`,
      `GET / HTTP/1.1\r\n${host()}Content-Length: -1\r\n\r\n`,
      `GET / HTTP/1.1\r\n${host()}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n`,
      `GET / HTTP/1.1\r\n${host()}X-Long: ${'a'.repeat(20_000)}\r\n\r\n`,
      `GET / HTTP/1.1\r\n${host()}bad header\r\n\r\n`,
      `GET / HTTP/1.1\r\n${host()}X:\u0001\r\n\r\n`,
      `POST /api/runs HTTP/1.1\r\n${host()}Content-Length: 3\r\n\r\nabc`,
      `BREW / HTTP/1.1\r\n${host()}\r\n`,
      `\r\n\r\n\r\n`,
      `GET\r\n\r\n`,
      Buffer.from([0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1]), // a TLS ClientHello
      `GET / HTTP/1.1\r\n${host()}\r\nGET http://[ HTTP/1.1\r\n${host()}\r\n`, // pipelined: good then bad
    ];
    const next = rng(11);
    const pick = <T,>(xs: T[]) => xs[Math.floor(next() * xs.length)];
    const targets = ['/', '/api/runs', '/api/stream?run=demo/events', 'http://[', '/%', '/?a=%', '//', '/\u00ff', 'http://a:b@[::1', '/..%2f..%2f'];
    const junk = ['\0', '\r', '\n', ' ', ':', '[', '%', '\u00ff', '\u0007', '\t'];
    for (let i = 0; i < 40; i++) {
      let line = `${pick(['GET', 'HEAD', 'get', 'G ET', 'OPTIONS', ''])} ${pick(targets)} ${pick(['HTTP/1.1', 'HTTP/1.0', 'HTTP/2', ''])}\r\n${host()}\r\n`;
      // Flip a few characters somewhere in the request.
      for (let k = Math.floor(next() * 3); k > 0; k--) {
        const at = Math.floor(next() * line.length);
        line = line.slice(0, at) + pick(junk) + line.slice(at + 1);
      }
      cases.push(line);
    }

    for (const c of cases) {
      const { reply } = await raw(c);
      const statuses = [...reply.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => Number(m[1]));
      // Every answer is a success for a well-formed request or a 4xx; never a 5xx; the process stays up.
      for (const s of statuses) expect(s < 500, `case ${JSON.stringify(String(c).slice(0, 80))} got ${s}`).toBe(true);
      expect(exited, `server died on ${JSON.stringify(String(c).slice(0, 80))}: ${stderr}`).toBeUndefined();
    }
    const bad = await raw(`GET http://[ HTTP/1.1\r\n${host()}\r\n`);
    expect(bad.reply).toMatch(/^HTTP\/1\.1 400/);

    const ok = await raw(`GET /api/runs HTTP/1.1\r\n${host()}Connection: close\r\n\r\n`);
    expect(ok.reply).toMatch(/^HTTP\/1\.1 200/);
    expect(ok.reply).toContain('"demo/events"');
    expect(exited).toBeUndefined();
    expect(stderr).toBe('');
  }, 120_000);
});
