// The public API (/api/v1/, same origin: the session cookie identifies this browser), and its
// errors turned into sentences a person understands.

import { formatBytes, formatWait } from "./format.js";

// Status → code, for error responses that did not come from the API itself (a proxy's 413 page).
const CODES_BY_STATUS = {
  400: "validation_error",
  404: "not_found",
  409: "invalid_state",
  410: "expired",
  413: "file_too_large",
  415: "unsupported_media",
  429: "throttled",
  503: "service_unavailable",
};

const FEATURES_KEY = "konvrt-api-features";

export class ApiError extends Error {
  constructor({ status, code, message = "", details = {}, retryAfter = null }) {
    super(message || code);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.apiMessage = message;
    this.details = details ?? {};
    // Seconds to wait, from the Retry-After header (429, sometimes 503).
    this.retryAfter = retryAfter;
  }
}

function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

// Retry-After is either seconds or an HTTP date.
function parseRetryAfter(value) {
  if (!value) return null;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, Math.ceil(seconds));
  const date = Date.parse(value);
  return Number.isNaN(date) ? null : Math.max(0, Math.ceil((date - Date.now()) / 1000));
}

export function errorFrom(status, payload, retryAfterHeader) {
  const error = payload && payload.success === false && payload.error ? payload.error : {};
  return new ApiError({
    status,
    code: error.code || CODES_BY_STATUS[status] || (status >= 500 ? "server_error" : "unexpected_response"),
    message: error.message || "",
    details: error.details || {},
    retryAfter: parseRetryAfter(retryAfterHeader),
  });
}

function randomKey() {
  // randomUUID needs a secure context; a self-hosted instance on plain http over the LAN is not one.
  if (crypto.randomUUID) return crypto.randomUUID();
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (byte) => byte.toString(16).padStart(2, "0")).join("");
}

export function newIdempotencyKey() {
  return randomKey();
}

export class Api {
  constructor(root) {
    this.root = root;
  }

  url(path) {
    return this.root + path;
  }

  operationPath(id, action = "") {
    return `operations/${encodeURIComponent(id)}/${action ? `${action}/` : ""}`;
  }

  async request(method, path) {
    let response;
    try {
      response = await fetch(this.url(path), {
        method,
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      });
    } catch {
      throw new ApiError({ status: 0, code: "network_error" });
    }
    const payload = parseJson(await response.text());
    if (!response.ok || !payload || payload.success !== true) {
      throw errorFrom(response.status, payload, response.headers.get("Retry-After"));
    }
    return payload;
  }

  // What this server offers beyond the first API (DESIGN.md "Second wave"), so that the page uses
  // it when it is there and works as before when it is not: `sourceUrl` and `upload` on create
  // (read from the OpenAPI schema's create request). Presets, the event stream and tus are
  // detected where they are used (presets(), follow.js, tusAvailable()).
  async features() {
    // The schema is large and the same for the whole visit: read it once per tab.
    const remembered = sessionStorage.getItem(FEATURES_KEY);
    if (remembered) return JSON.parse(remembered);
    const features = await this.readFeatures();
    // A failed read is not remembered: the next page load asks again.
    if (!features) return { sourceUrl: false, upload: false };
    sessionStorage.setItem(FEATURES_KEY, JSON.stringify(features));
    return features;
  }

  async readFeatures() {
    try {
      const response = await fetch(this.schemaUrl, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (!response.ok) return null;
      const schema = await response.json();
      const schemas = schema?.components?.schemas ?? {};
      const names = new Set();
      for (const [name, component] of Object.entries(schemas)) {
        if (/^OperationCreate/.test(name)) for (const key of Object.keys(component.properties ?? {})) names.add(key);
      }
      return { sourceUrl: names.has("source_url"), upload: names.has("upload") };
    } catch {
      return null;
    }
  }

  get schemaUrl() {
    // The schema is served beside the versioned API: /api/schema/ next to /api/v1/.
    return this.root.replace(/v1\/$/, "schema/") + "?format=json";
  }

  // Ready-made settings (GET /presets/); an empty list on a server without them.
  async presets() {
    try {
      return (await this.request("GET", "presets/")).data ?? [];
    } catch (error) {
      if (error.code === "not_found" || error.status === 405) return [];
      throw error;
    }
  }

  eventsUrl(id) {
    return this.url(this.operationPath(id, "events"));
  }

  // Whether /uploads/ speaks tus (an OPTIONS answered with Tus-Version).
  async tusAvailable() {
    if (this.tus === undefined) {
      try {
        const response = await fetch(this.url("uploads/"), { method: "OPTIONS", credentials: "same-origin" });
        this.tus = response.ok && Boolean(response.headers.get("Tus-Version"));
      } catch {
        this.tus = false;
      }
    }
    return this.tus;
  }

  // Creates an operation from an upload finished through tus or from a link: a JSON body, no file.
  async createFromSource({ upload, sourceUrl, operation, preset, parameters, idempotencyKey }) {
    const body = { parameters };
    if (preset) body.preset = preset;
    else body.operation = operation;
    if (upload) body.upload = upload;
    if (sourceUrl) body.source_url = sourceUrl;
    let response;
    try {
      response = await fetch(this.url("operations/"), {
        method: "POST",
        credentials: "same-origin",
        headers: {
          Accept: "application/json",
          "Content-Type": "application/json",
          ...(idempotencyKey ? { "Idempotency-Key": idempotencyKey } : {}),
        },
        body: JSON.stringify(body),
      });
    } catch {
      throw new ApiError({ status: 0, code: "network_error" });
    }
    const payload = parseJson(await response.text());
    if (!response.ok || payload?.success !== true) {
      throw errorFrom(response.status, payload, response.headers.get("Retry-After"));
    }
    return payload.data;
  }

  async session() {
    return (await this.request("GET", "session/")).data;
  }

  async definitions() {
    return (await this.request("GET", "operation-definitions/")).data;
  }

  // Statuses and phases: their labels, and which statuses are terminal, cancellable, retryable.
  async vocabulary() {
    return (await this.request("GET", "vocabulary/")).data;
  }

  // The whole envelope: data (a page of operations) and pagination.
  listOperations({ page = 1, pageSize = 10, status = "" } = {}) {
    const filter = status ? `&status=${encodeURIComponent(status)}` : "";
    return this.request("GET", `operations/?page=${page}&page_size=${pageSize}${filter}`);
  }

  async operation(id) {
    return (await this.request("GET", this.operationPath(id))).data;
  }

  async status(id) {
    return (await this.request("GET", this.operationPath(id, "status"))).data;
  }

  async retry(id) {
    return (await this.request("POST", this.operationPath(id, "retry"))).data;
  }

  async cancel(id) {
    return (await this.request("POST", this.operationPath(id, "cancel"))).data;
  }

  async remove(id) {
    return this.request("DELETE", this.operationPath(id));
  }

  downloadUrl(id) {
    return this.url(this.operationPath(id, "download"));
  }

  // Uploads with XMLHttpRequest because fetch cannot report upload progress. Returns the
  // promise of the created operation and a function that stops the upload.
  createOperation({ file, operation, preset, parameters, idempotencyKey, onUploadProgress }) {
    const form = new FormData();
    if (preset) form.append("preset", preset);
    else form.append("operation", operation);
    form.append("parameters", JSON.stringify(parameters));
    form.append("file", file, file.name);
    const xhr = new XMLHttpRequest();
    const promise = new Promise((resolve, reject) => {
      xhr.open("POST", this.url("operations/"));
      xhr.setRequestHeader("Accept", "application/json");
      if (idempotencyKey) xhr.setRequestHeader("Idempotency-Key", idempotencyKey);
      xhr.upload.addEventListener("progress", (event) => {
        if (event.lengthComputable) onUploadProgress?.(event.loaded, event.total);
      });
      xhr.addEventListener("load", () => {
        const payload = parseJson(xhr.responseText);
        if (xhr.status >= 200 && xhr.status < 300 && payload?.success === true) {
          resolve(payload.data);
        } else {
          reject(errorFrom(xhr.status, payload, xhr.getResponseHeader("Retry-After")));
        }
      });
      xhr.addEventListener("error", () => reject(new ApiError({ status: 0, code: "network_error" })));
      xhr.addEventListener("abort", () => reject(new ApiError({ status: 0, code: "aborted" })));
      xhr.send(form);
    });
    return { promise, abort: () => xhr.abort() };
  }
}

function withPeriod(text) {
  const trimmed = String(text).trim();
  return /[.!?]$/.test(trimmed) ? trimmed : `${trimmed}.`;
}

// One plain sentence (or two) for any error. `limit` is the size limit of the chosen operation, as
// the page knows it.
export function describeError(error, { limit: knownLimit } = {}) {
  if (!(error instanceof ApiError)) return "Something unexpected went wrong in this page. Please reload it.";
  const said = error.apiMessage ? ` ${withPeriod(error.apiMessage)}` : "";
  switch (error.code) {
    case "file_too_large": {
      // The server's own figure wins: the page's copy of the limits may be older than its settings.
      const limit = error.details?.max_file_size ?? knownLimit;
      return limit
        ? `This file is too large. The limit for this operation is ${formatBytes(limit)}.`
        : `This file is too large for Konvrt.${said}`;
    }
    case "unsupported_media":
      return `Konvrt can't process this file.${said || " Its content is not a supported format."}`;
    case "throttled":
      // The limit on active jobs explains itself (how many are running, when to start another):
      // its own sentence says more than "too many requests". Only the rate limits' is generic.
      if (error.details?.active !== undefined && said) return said.trim();
      return error.retryAfter
        ? `Too many requests from this browser. Please wait ${formatWait(error.retryAfter)} and try again.`
        : "Too many requests from this browser. Please wait a little and try again.";
    case "service_unavailable":
      return "Konvrt is temporarily unavailable because one of its services is not answering. Please try again in a minute.";
    case "network_error":
      return "Konvrt could not be reached. Check your connection and try again.";
    case "aborted":
      return "The upload was stopped.";
    case "not_found":
      return "This job no longer exists: it was deleted or has expired.";
    case "expired":
      return said.trim() || "The files of this job have expired and were deleted.";
    case "invalid_state":
      return said.trim() || "This job can't do that in its current state.";
    case "validation_error":
      return said.trim() || "Some settings need attention.";
    default:
      return error.status >= 500
        ? "Something went wrong on the server. Please try again later."
        : said.trim() || `The request failed (HTTP ${error.status}).`;
  }
}

// Field name → messages, from a 400's error.details, whatever its nesting:
// {"parameters": {"quality": ["…"]}}, {"quality": "…"}, {"parameters.quality": […]}, {"file": […]}.
// Messages that name no known field (or name it only inside the text, as JSON Schema's
// "'width' is a required property" does) are matched by the quoted name, else left general.
export function fieldErrors(details, knownFields) {
  const byField = new Map();
  const general = [];
  const add = (field, message) => {
    if (!byField.has(field)) byField.set(field, []);
    byField.get(field).push(message);
  };
  const walk = (value, path) => {
    if (value === null || value === undefined) return;
    if (Array.isArray(value)) {
      for (const item of value) walk(item, path);
      return;
    }
    if (typeof value === "object") {
      for (const [key, inner] of Object.entries(value)) walk(inner, [...path, ...String(key).split(".")]);
      return;
    }
    const message = String(value);
    const named = [...path].reverse().find((segment) => knownFields.has(segment));
    if (named) {
      add(named, message);
      return;
    }
    const quoted = [...knownFields].filter((field) => message.includes(`'${field}'`) || message.includes(`"${field}"`));
    if (quoted.length === 1) add(quoted[0], message);
    else general.push(message);
  };
  walk(details, []);
  return { byField, general };
}
