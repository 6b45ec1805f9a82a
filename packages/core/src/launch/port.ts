/**
 * Rendezvous ports: picking a free one and checking whether one is taken.
 * @module
 */
import { createServer } from 'node:net';

/**
 * A TCP port that is free right now, chosen by the operating system
 * (listen on port 0, read the port, close). Another program could take it
 * before rank 0 binds it; in practice the window is a few milliseconds, and
 * it is what torchrun and Accelerate do too.
 */
export function findFreePort(host?: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen({ port: 0, host, exclusive: true }, () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => (port > 0 ? resolve(port) : reject(new Error('the operating system returned no port'))));
    });
  });
}

/**
 * True when something already listens on `port` (binding it fails with
 * EADDRINUSE), as Accelerate's `is_port_in_use` checks before launching.
 */
export function isPortInUse(port: number, host?: string): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'EADDRINUSE' || e.code === 'EACCES') resolve(true);
      else reject(e);
    });
    server.listen({ port, host, exclusive: true }, () => server.close(() => resolve(false)));
  });
}
