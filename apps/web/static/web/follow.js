// Following an operation to its end: the server's event stream (GET /operations/{id}/events/,
// Server-Sent Events) when it has one, else (or when the stream fails) polling /status/.

import { isTerminal } from "./status.js";

const POLL_VISIBLE_MS = 1000;
const POLL_HIDDEN_MS = 10000;
const POLL_MAX_BACKOFF_MS = 30000;

const MAX_RECONNECTS_WITHOUT_EVENT = 2;

// Shared by every follower on the page: once a stream is refused before its first event (a
// server without the endpoint), the page stops asking and polls.
export const streams = { usable: typeof window.EventSource === "function" };

// Opens the stream; onStatus gets each status object, onFailure is called once if the stream
// breaks before the terminal status (the caller then polls). Returns null when streams are off.
export function openStream(url, { onStatus, onFailure }) {
  if (!streams.usable) return null;
  const source = new EventSource(url, { withCredentials: true });
  let received = false;
  let closed = false;
  let failuresInARow = 0;
  const close = () => {
    closed = true;
    source.close();
  };
  source.addEventListener("status", (event) => {
    let status;
    try {
      status = JSON.parse(event.data);
    } catch {
      return;
    }
    // The status object itself, or the API's envelope around it.
    if (status && status.success === true && status.data) status = status.data;
    received = true;
    failuresInARow = 0;
    if (isTerminal(status.status)) close();
    onStatus(status);
  });
  // Errors since the last event. A stream that ends (a server may send one status and end) or
  // drops is reconnected by the browser itself, after the server's `retry:` delay; each new
  // connection starts with the current status. Only a stream that keeps failing without an
  // event, or that the browser gives up on (an HTTP error), is left for polling.
  source.addEventListener("error", () => {
    if (closed) return;
    failuresInARow += 1;
    const reconnecting = source.readyState === EventSource.CONNECTING;
    if (reconnecting && received && failuresInARow <= MAX_RECONNECTS_WITHOUT_EVENT) return;
    close();
    if (!received) streams.usable = false;
    onFailure();
  });
  return { close };
}

// One operation followed for a list item: onStatus for every change, onEnd(operation) once
// with the full operation when it is finished.
export class Follower {
  constructor(api, id, { onStatus, onEnd, onError }) {
    this.api = api;
    this.id = id;
    this.onStatus = onStatus;
    this.onEnd = onEnd;
    this.onError = onError;
    this.stream = null;
    this.timer = null;
    this.failures = 0;
    this.stopped = false;
    this.transport = null;
  }

  start() {
    this.stream = openStream(this.api.eventsUrl(this.id), {
      onStatus: (status) => this.seen(status),
      onFailure: () => {
        this.stream = null;
        this.pollSoon(0);
      },
    });
    this.transport = this.stream ? "stream" : "polling";
    if (!this.stream) this.pollSoon();
  }

  stop() {
    this.stopped = true;
    this.stream?.close();
    clearTimeout(this.timer);
  }

  pollSoon(delay = document.hidden ? POLL_HIDDEN_MS : POLL_VISIBLE_MS) {
    if (this.stopped) return;
    this.transport = "polling";
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.poll(), delay);
  }

  async poll() {
    try {
      const status = await this.api.status(this.id);
      this.failures = 0;
      if (!(await this.seen(status))) this.pollSoon();
    } catch (error) {
      if (this.stopped) return;
      if (error.code === "not_found") {
        this.onError?.(error);
        return;
      }
      this.failures += 1;
      this.onError?.(error);
      const backoff = Math.min(POLL_MAX_BACKOFF_MS, POLL_VISIBLE_MS * 2 ** this.failures);
      this.pollSoon(error.retryAfter ? error.retryAfter * 1000 : backoff);
    }
  }

  // True once the operation is finished.
  async seen(status) {
    if (this.stopped) return true;
    this.onStatus?.(status);
    if (!isTerminal(status.status)) return false;
    this.stop();
    try {
      this.onEnd?.(await this.api.operation(this.id));
    } catch (error) {
      this.onError?.(error);
    }
    return true;
  }
}
