// Resumable uploads through the server's tus endpoint (/api/v1/uploads/) with tus-js-client, the
// protocol's reference client (vendored: vendor/tus.min.js, `make web-vendor`). A dropped
// connection is retried from the last byte the server has, and a page reloaded mid-upload picks
// the same file up where it stopped (tus-js-client remembers the upload's URL in localStorage).

import { ApiError, errorFrom } from "./api.js";

// Chunks bound what a retry resends and keep each request short (main's data-tus-chunk-size,
// when set, overrides it: the browser tests use small chunks to cut a small file's upload midway).
const CHUNK_SIZE = 5 * 1024 * 1024;

function chunkSize() {
  const configured = Number(document.getElementById("main").dataset.tusChunkSize);
  return Number.isFinite(configured) && configured > 0 ? configured : CHUNK_SIZE;
}
const RETRY_DELAYS_MS = [0, 1000, 3000, 5000, 10000, 20000];

let library = null;

async function tusLibrary() {
  // A UMD build: loading it defines window.tus. Only loaded when a large file is sent.
  library ??= import("./vendor/tus.min.js").then(() => window.tus);
  return library;
}

function apiErrorOf(error) {
  const response = error?.originalResponse;
  if (!response) return new ApiError({ status: 0, code: "network_error" });
  let payload = null;
  try {
    payload = JSON.parse(response.getBody());
  } catch {
    payload = null;
  }
  return errorFrom(response.getStatus(), payload, response.getHeader("Retry-After"));
}

// Sends `file`; resolves with the finished upload's URL (what POST /operations/ takes as
// `upload`). onRetry is told each time the connection dropped and the upload carries on.
export function tusUpload(api, file, { onProgress, onRetry, setAbort }) {
  return new Promise((resolve, reject) => {
    tusLibrary().then((tus) => {
      const upload = new tus.Upload(file, {
        endpoint: api.url("uploads/"),
        chunkSize: chunkSize(),
        retryDelays: RETRY_DELAYS_MS,
        removeFingerprintOnSuccess: true,
        metadata: { filename: file.name, filetype: file.type || "application/octet-stream" },
        onProgress: (sent, total) => onProgress?.(sent, total),
        onShouldRetry: (error) => {
          const status = error?.originalResponse?.getStatus?.() ?? 0;
          // A refusal (too large, not allowed) will not change by retrying; a 409 (offset
          // mismatch), a 423, a 429, a 5xx or no answer at all may.
          const retry = status === 0 || status === 409 || status === 423 || status === 429 || status >= 500;
          if (retry) onRetry?.();
          return retry;
        },
        onSuccess: () => resolve(upload.url),
        onError: (error) => reject(apiErrorOf(error)),
      });
      setAbort?.(() => {
        upload.abort(true);
        reject(new ApiError({ status: 0, code: "aborted" }));
      });
      upload
        .findPreviousUploads()
        .then((previous) => {
          if (previous.length) upload.resumeFromPreviousUpload(previous[0]);
          upload.start();
        })
        .catch(() => upload.start());
    }, () => reject(new ApiError({ status: 0, code: "network_error" })));
  });
}
