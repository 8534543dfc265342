// The current job: upload progress, then processing progress followed through the event stream
// (or polled from /status/ when the server has no stream or it fails), then the result
// (download, sizes, a before/after comparison or a player) or the reason it failed.

import { describeError } from "./api.js";
import { openStream } from "./follow.js";
import { formatBytes, formatEta, formatExpiry, formatMetadata, formatSizeChange } from "./format.js";
import {
  isCancellable,
  isRetryable,
  isTerminal,
  operationLabel,
  phaseLabel,
  queueText,
  sentence,
  statusLabel,
} from "./status.js";

const POLL_VISIBLE_MS = 1000;
// A hidden tab still notices completion, at a pace that costs the server (and the rate limit) little.
const POLL_HIDDEN_MS = 10000;
const POLL_MAX_BACKOFF_MS = 30000;

const $ = (id) => document.getElementById(id);

export class JobView {
  constructor(api, { onStatusChange, onGone }) {
    this.api = api;
    this.onStatusChange = onStatusChange;
    this.onGone = onGone;
    this.section = $("job");
    this.operation = null;
    this.lastStatus = null;
    this.lastAnnounced = -1;
    this.timer = null;
    this.generation = 0;
    this.failures = 0;
    this.abortUpload = null;
    this.stream = null;
    // The picked file's object URL, for comparing an image result with its original.
    this.inputUrl = null;

    $("abort-upload").addEventListener("click", () => this.abortUpload?.());
    $("job-cancel").addEventListener("click", () => this.act("cancel"));
    $("job-retry").addEventListener("click", () => this.act("retry"));
    document.addEventListener("visibilitychange", () => {
      // Back in view: show the current state now rather than after the slow hidden interval.
      if (!document.hidden && this.isPolling()) this.pollSoon(0);
    });
  }

  get currentId() {
    return this.operation?.id ?? null;
  }

  isPolling() {
    return this.timer !== null;
  }

  reset(title) {
    this.stopPolling();
    this.generation += 1;
    this.operation = null;
    this.lastStatus = null;
    this.lastAnnounced = -1;
    this.section.hidden = false;
    $("job-title").textContent = title;
    $("upload-block").hidden = true;
    $("processing-block").hidden = true;
    $("result").hidden = true;
    $("result-preview").replaceChildren();
    this.hideError();
    this.showActions(null);
  }

  hide() {
    this.stopPolling();
    this.generation += 1;
    this.operation = null;
    this.section.hidden = true;
  }

  // --- upload ---------------------------------------------------------------------------------
  showUpload(file, title, abort, inputUrl = null) {
    this.reset(`${title}: ${file.name} (${formatBytes(file.size)})`);
    this.inputUrl = inputUrl;
    this.abortUpload = abort;
    $("upload-block").hidden = false;
    $("abort-upload").hidden = false;
    this.setUploadProgress(0, file.size);
    this.announce("Upload started.");
  }

  setUploadProgress(loaded, total) {
    const percent = total ? Math.floor((loaded / total) * 100) : 0;
    $("upload-progress").value = percent;
    $("upload-text").textContent = `${percent}% of ${formatBytes(total)}`;
  }

  // The connection dropped during a resumable upload; it carries on from where it was.
  uploadInterrupted() {
    $("upload-text").textContent = "Connection lost: resuming…";
    this.announce("The connection dropped; the upload will resume where it stopped.");
  }

  // A job created from a link: nothing to upload, the worker fetches it.
  showLink(url, title) {
    this.reset(`${title}: ${url}`);
    this.inputUrl = null;
    this.announce("Sent. Konvrt fetches the file itself.");
  }

  uploadFinished() {
    this.abortUpload = null;
    $("abort-upload").hidden = true;
    $("upload-progress").value = 100;
    $("upload-text").textContent = "Uploaded";
  }

  // --- processing -----------------------------------------------------------------------------
  // Shows an operation (just created, or opened from "My files") and follows it to the end.
  // keepPanel: the panel already shows this job (its upload, or before a cancel or retry).
  watch(operation, { keepPanel = false } = {}) {
    if (!keepPanel) {
      this.reset(`${operationLabel(operation.operation)}: ${operation.input_file?.file_name ?? "file"}`);
      this.inputUrl = null;
    }
    // A poll still in flight belongs to the previous state and must not overwrite this one.
    this.stopPolling();
    this.generation += 1;
    this.operation = operation;
    history.replaceState(null, "", `#operation=${encodeURIComponent(operation.id)}`);
    $("processing-block").hidden = false;
    this.renderStatus(operation);
    if (isTerminal(operation.status)) {
      this.finish(operation);
    } else {
      this.failures = 0;
      this.follow();
    }
  }

  pollSoon(delay = document.hidden ? POLL_HIDDEN_MS : POLL_VISIBLE_MS) {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.poll(), delay);
  }

  stopPolling() {
    clearTimeout(this.timer);
    this.timer = null;
    this.stream?.close();
    this.stream = null;
  }

  // The stream when the server has one; polling from the first failure on.
  follow() {
    const generation = this.generation;
    this.stream = openStream(this.api.eventsUrl(this.currentId), {
      onStatus: (status) => {
        if (generation === this.generation) this.streamed(status, generation);
      },
      onFailure: () => {
        if (generation !== this.generation) return;
        this.stream = null;
        this.section.dataset.transport = "polling";
        this.pollSoon(0);
      },
    });
    this.section.dataset.transport = this.stream ? "stream" : "polling";
    if (!this.stream) this.pollSoon();
  }

  async streamed(status, generation) {
    this.renderStatus(status);
    if (!isTerminal(status.status)) return;
    this.stream = null;
    try {
      const operation = await this.api.operation(this.currentId);
      if (generation === this.generation) this.finish(operation);
    } catch (error) {
      if (generation === this.generation) this.pollFailed(error);
    }
  }

  async poll() {
    const id = this.currentId;
    const generation = this.generation;
    if (!id) return;
    try {
      const status = await this.api.status(id);
      if (generation !== this.generation) return;
      this.failures = 0;
      this.renderStatus(status);
      if (isTerminal(status.status)) {
        this.stopPolling();
        const operation = await this.api.operation(id);
        if (generation === this.generation) this.finish(operation);
      } else {
        this.pollSoon();
      }
    } catch (error) {
      if (generation !== this.generation) return;
      this.pollFailed(error);
    }
  }

  pollFailed(error) {
    if (error.code === "not_found") {
      this.stopPolling();
      this.showError(describeError(error));
      this.showActions(null);
      this.onGone?.(this.currentId);
      return;
    }
    // Throttled, unreachable or briefly unavailable: say so and keep trying, slower each time.
    this.failures += 1;
    this.showError(`${describeError(error)} Still trying to get this job's progress.`);
    const backoff = Math.min(POLL_MAX_BACKOFF_MS, POLL_VISIBLE_MS * 2 ** this.failures);
    this.pollSoon(error.retryAfter ? error.retryAfter * 1000 : backoff);
  }

  renderStatus(status) {
    const progress = Math.max(0, Math.min(100, Math.round(status.progress ?? 0)));
    const changed = status.status !== this.lastStatus;
    this.hideError();
    $("processing-progress").value = progress;
    $("processing-percent").textContent = `${progress}%`;
    $("processing-text").textContent = describeStatus(status);
    this.showActions(status.status);
    // Screen readers hear each change of state and every quarter of progress, not every percent.
    if (changed || (status.status === "processing" && progress >= this.lastAnnounced + 25)) {
      this.announce(changed ? describeStatus(status) : `Processing: ${progress}%.`);
      this.lastAnnounced = progress;
    }
    this.lastStatus = status.status;
    this.onStatusChange?.(status, { changed });
  }

  finish(operation) {
    this.operation = operation;
    this.renderStatus(operation);
    if (operation.status === "completed") {
      this.renderResult(operation);
      this.announce("Done. The result is ready to download.");
    } else if (operation.status === "failed") {
      this.showError(sentence(operation.error_message) || "Processing failed.");
    }
  }

  renderResult(operation) {
    const output = operation.output_file;
    if (!output) return;
    const url = output.download_url || this.api.downloadUrl(operation.id);
    const link = $("download-link");
    link.href = url;
    link.setAttribute("download", output.file_name ?? "");
    link.textContent = `Download ${output.file_name} (${formatBytes(output.file_size)})`;

    const input = operation.input_file;
    const change = input ? formatSizeChange(input.file_size, output.file_size) : "";
    $("result-sizes").textContent = input
      ? `${formatBytes(input.file_size)} → ${formatBytes(output.file_size)}${change ? `: ${change}` : ""}.`
      : `${formatBytes(output.file_size)}.`;
    const notes = [formatMetadata(output.metadata), formatExpiry(operation.expires_at)].filter(Boolean);
    if (output.metadata?.larger_than_input) notes.push("the result came out larger than the original");
    $("result-details").textContent = notes.length ? sentence(capitalize(notes.join("; "))) : "";
    $("result-preview").replaceChildren(preview(output, url, this.inputUrl));
    $("result").hidden = false;
  }

  // --- actions --------------------------------------------------------------------------------
  showActions(status) {
    $("job-cancel").hidden = !isCancellable(status);
    $("job-retry").hidden = !isRetryable(status);
  }

  async act(action) {
    const id = this.currentId;
    if (!id) return;
    try {
      const operation = action === "cancel" ? await this.api.cancel(id) : await this.api.retry(id);
      $("result").hidden = true;
      this.lastStatus = null;
      this.watch(operation, { keepPanel: true });
    } catch (error) {
      this.showError(describeError(error));
    }
  }

  showError(message) {
    $("job-error").textContent = message;
    $("job-error").hidden = false;
  }

  hideError() {
    $("job-error").hidden = true;
    $("job-error").textContent = "";
  }

  announce(message) {
    $("job-live").textContent = message;
  }
}

function capitalize(text) {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

export function describeStatus(status) {
  const waiting = sentence(status.waiting_reason);
  switch (status.status) {
    case "pending":
      return ["Stored; waiting to be queued.", waiting].filter(Boolean).join(" ");
    case "queued":
      return [queueText(status.queue_position), waiting].filter(Boolean).join(" ");
    case "processing": {
      const eta = formatEta(status.eta_seconds);
      return `${phaseLabel(status.phase)}…${eta ? ` ${capitalize(eta)}.` : ""}`;
    }
    case "completed":
      return "Done.";
    case "failed":
      return "Failed.";
    case "cancelled":
      return "Cancelled.";
    default:
      return sentence(statusLabel(status.status));
  }
}

function preview(output, url, inputUrl) {
  const type = output.mime_type ?? "";
  const name = output.file_name ?? "the result";
  if (type.startsWith("image/")) {
    const image = document.createElement("img");
    image.src = url;
    image.alt = `Preview of ${name}`;
    return inputUrl ? comparison(image, inputUrl, name) : image;
  }
  if (type.startsWith("video/") || type.startsWith("audio/")) {
    // Seekable: the download answers Range requests, so the player fetches what it plays.
    const player = document.createElement(type.startsWith("video/") ? "video" : "audio");
    player.controls = true;
    player.preload = "metadata";
    player.src = url;
    player.setAttribute("aria-label", `Play ${name}`);
    return player;
  }
  return document.createTextNode("");
}

// Before (the picked file, still in this browser) over after (the result), split by a slider:
// left of the split is the original. Both fill the same box, as the result will be seen.
function comparison(after, beforeUrl, name) {
  const frame = document.createElement("div");
  frame.className = "compare";
  frame.style.setProperty("--split", "50%");
  after.className = "compare-after";
  const before = document.createElement("img");
  before.className = "compare-before";
  before.src = beforeUrl;
  before.alt = "The original, for comparison";
  const images = document.createElement("div");
  images.className = "compare-images";
  images.append(after, before);
  const slider = document.createElement("input");
  slider.type = "range";
  slider.id = "compare-slider";
  slider.min = "0";
  slider.max = "100";
  slider.value = "50";
  slider.setAttribute("aria-valuetext", "Half original, half result");
  const label = document.createElement("label");
  label.htmlFor = slider.id;
  label.className = "compare-label";
  label.textContent = `Before ↔ after: slide to compare the original with ${name}`;
  slider.addEventListener("input", () => {
    frame.style.setProperty("--split", `${slider.value}%`);
    slider.setAttribute("aria-valuetext", `${slider.value}% original, ${100 - Number(slider.value)}% result`);
  });
  frame.append(images, label, slider);
  return frame;
}
