/**
 * JSON-over-HTTP helper for the REST trackers: timeouts, retries with
 * back-off on network errors, 429 and 5xx, and errors that carry the
 * server's own message.
 * @module
 */

/** An HTTP error from a tracking server, with its status and parsed body. */
export class TrackerHttpError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly body: unknown,
  ) {
    super(message);
    this.name = 'TrackerHttpError';
  }
}

/** Options of {@link requestJson}. */
export interface RequestOptions {
  method?: 'GET' | 'POST' | 'PUT' | 'PATCH';
  headers?: Record<string, string>;
  body?: unknown;
  /** Per-attempt timeout. Default 15000 ms. */
  timeoutMs?: number;
  /** Extra attempts after a retryable failure. Default 3. */
  retries?: number;
  /** First back-off delay, doubled each retry. Default 250 ms. */
  backoffMs?: number;
  /** `fetch` to use (tests). */
  fetch?: typeof fetch;
  /** Turns an error response into a message (`{error_code, message}` for MLflow). */
  describeError?: (status: number, body: unknown) => string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** `fetch` a JSON endpoint; resolves with the parsed body, rejects with {@link TrackerHttpError} or the network error. */
export async function requestJson(url: string, o: RequestOptions = {}): Promise<unknown> {
  const f = o.fetch ?? fetch;
  const retries = o.retries ?? 3;
  let delay = o.backoffMs ?? 250;
  for (let attempt = 0; ; attempt++) {
    let res: Response;
    try {
      res = await f(url, {
        method: o.method ?? (o.body === undefined ? 'GET' : 'POST'),
        headers: { ...(o.body !== undefined ? { 'Content-Type': 'application/json' } : {}), ...o.headers },
        body: o.body === undefined ? undefined : typeof o.body === 'string' ? o.body : JSON.stringify(o.body),
        signal: AbortSignal.timeout(o.timeoutMs ?? 15_000),
      });
    } catch (e) {
      if (attempt < retries) {
        await sleep(delay);
        delay *= 2;
        continue;
      }
      const cause = (e as { cause?: { code?: string; message?: string } }).cause;
      throw new Error(`${url}: ${(e as Error).message}${cause ? ` (${cause.code ?? cause.message})` : ''}`);
    }
    const text = await res.text();
    let body: unknown = text;
    try {
      body = text ? JSON.parse(text) : {};
    } catch {
      /* not JSON: keep the text */
    }
    if (res.ok) return body;
    if ((res.status === 429 || res.status >= 500) && attempt < retries) {
      await sleep(delay);
      delay *= 2;
      continue;
    }
    const detail = o.describeError ? o.describeError(res.status, body) : typeof body === 'string' ? body : JSON.stringify(body);
    throw new TrackerHttpError(`${o.method ?? (o.body === undefined ? 'GET' : 'POST')} ${url} failed: HTTP ${res.status} ${detail}`, res.status, body);
  }
}

/**
 * A flush that runs in the background `delayMs` after the first request
 * since the last flush, so metrics go out in batches. An error of that
 * background run is kept and rethrown by {@link DeferredFlush.throwPending}
 * on the tracker's next event, so the hub can warn and disable the tracker.
 */
export class DeferredFlush {
  private timer: NodeJS.Timeout | undefined;
  private error: Error | undefined;

  constructor(
    private readonly flush: () => Promise<void>,
    private readonly delayMs: number,
  ) {}

  /** Flush in `delayMs` unless a flush is already scheduled. The timer does not keep the process alive. */
  schedule(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.flush().catch((e: Error) => (this.error = e));
    }, this.delayMs);
    this.timer.unref();
  }

  /** Drop the scheduled flush (the caller is flushing now). */
  cancel(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Throw, once, the error of the last background flush. */
  throwPending(): void {
    const e = this.error;
    this.error = undefined;
    if (e) throw e;
  }
}
