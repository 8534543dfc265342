// "These files": several files sent at once, each its own job with its own upload and processing
// progress. Files are uploaded one after another (the connection is shared anyway); each job is
// followed from the moment it exists. When the server says too many jobs of this browser are
// active (429 with Retry-After), the next file waits for a free slot and is sent then.

import { describeError, newIdempotencyKey } from "./api.js";
import { Follower } from "./follow.js";
import { formatBytes, formatSizeChange, formatWait } from "./format.js";
import { describeStatus } from "./job.js";
import { isTerminal, sentence } from "./status.js";

// Waits longer than this (an hourly upload limit) are not sat out: the file fails with the reason.
const MAX_SLOT_WAIT_S = 120;

const $ = (id) => document.getElementById(id);

function node(tag, className, text = "") {
  const element = document.createElement(tag);
  if (className) element.className = className;
  if (text) element.textContent = text;
  return element;
}

function progressBar(className, label) {
  const bar = node("progress", className);
  bar.max = 100;
  bar.value = 0;
  bar.setAttribute("aria-label", label);
  return bar;
}

export class BatchView {
  constructor(api, { send, tooLarge, onCreated, onChanged }) {
    this.api = api;
    this.send = send;
    this.tooLarge = tooLarge;
    this.onCreated = onCreated;
    this.onChanged = onChanged;
    this.items = [];
  }

  async run(files, { choice, parameters, title }) {
    for (const item of this.items) item.follower?.stop();
    this.items = files.map((file) => this.renderItem(file, title));
    $("batch-list").replaceChildren(...this.items.map((item) => item.element));
    $("batch").hidden = false;
    this.summarize();
    $("batch").scrollIntoView({ block: "start" });
    $("batch-heading").focus({ preventScroll: true });
    for (const item of this.items) {
      const refusal = this.tooLarge(item.file, choice.definition);
      if (refusal) this.fail(item, refusal);
      else await this.sendOne(item, { choice, parameters });
    }
  }

  // Out of view; the jobs go on (they are in "My files") but are no longer followed here.
  hide() {
    for (const item of this.items) item.follower?.stop();
    this.items = [];
    $("batch").hidden = true;
  }

  renderItem(file, title) {
    const element = node("li", "batch-item");
    element.dataset.fileName = file.name;
    const name = node("p", "batch-name", `${title}: ${file.name} (${formatBytes(file.size)})`);
    const upload = progressBar("batch-upload", `Upload of ${file.name}`);
    const processing = progressBar("batch-progress", `Processing of ${file.name}`);
    const status = node("p", "batch-status status-text", "Waiting to be sent.");
    const result = node("div", "batch-result");
    result.hidden = true;
    element.append(name, upload, processing, status, result);
    return { file, element, upload, processing, status, result, done: false, failed: false, follower: null };
  }

  async sendOne(item, { choice, parameters }) {
    let idempotencyKey = newIdempotencyKey();
    for (;;) {
      item.status.textContent = "Uploading…";
      try {
        const operation = await this.send(item.file, {
          choice,
          parameters,
          idempotencyKey,
          onProgress: (loaded, total) => {
            item.upload.value = total ? Math.floor((loaded / total) * 100) : 0;
            item.status.textContent = `Uploading: ${item.upload.value}%`;
          },
          onRetry: () => {
            item.status.textContent = "Connection lost: resuming…";
          },
          setAbort: () => {},
        });
        item.upload.value = 100;
        item.element.dataset.operationId = operation.id;
        this.onCreated?.(operation);
        this.follow(item, operation);
        return;
      } catch (error) {
        const wait = error.code === "throttled" ? (error.retryAfter ?? 10) : null;
        if (wait === null || wait > MAX_SLOT_WAIT_S) {
          this.fail(item, describeError(error));
          return;
        }
        item.upload.value = 0;
        item.status.textContent = `Waiting ${formatWait(wait)} for a free slot: ${sentence(error.apiMessage) || "too many jobs at once."}`;
        await new Promise((resolve) => setTimeout(resolve, wait * 1000));
        // A refusal created nothing: the next try is a new request, not a replay of that one.
        idempotencyKey = newIdempotencyKey();
      }
    }
  }

  follow(item, operation) {
    const show = (status) => {
      item.processing.value = Math.max(0, Math.min(100, Math.round(status.progress ?? 0)));
      item.status.textContent = describeStatus(status);
    };
    show(operation);
    if (isTerminal(operation.status)) {
      this.finish(item, operation);
      return;
    }
    item.follower = new Follower(this.api, operation.id, {
      onStatus: show,
      onEnd: (finished) => {
        show(finished);
        this.finish(item, finished);
        this.onChanged?.();
      },
      onError: (error) => {
        if (error.code === "not_found") this.fail(item, describeError(error));
      },
    });
    item.follower.start();
    item.element.dataset.transport = item.follower.transport;
  }

  finish(item, operation) {
    if (operation.status === "completed" && operation.output_file) {
      const output = operation.output_file;
      const link = node("a", "button button-small", `Download ${output.file_name}`);
      link.href = output.download_url || this.api.downloadUrl(operation.id);
      link.setAttribute("download", output.file_name ?? "");
      const input = operation.input_file;
      const change = input ? formatSizeChange(input.file_size, output.file_size) : "";
      const sizes = node(
        "p",
        "sizes",
        input
          ? `${formatBytes(input.file_size)} → ${formatBytes(output.file_size)}${change ? `: ${change}` : ""}.`
          : `${formatBytes(output.file_size)}.`,
      );
      item.result.replaceChildren(sizes, link);
      item.result.hidden = false;
      item.done = true;
    } else if (operation.status === "failed") {
      this.fail(item, sentence(operation.error_message) || "Processing failed.");
      return;
    } else {
      item.done = true;
    }
    this.summarize();
  }

  fail(item, message) {
    item.failed = true;
    item.status.textContent = message;
    item.status.classList.add("file-failure");
    this.summarize();
  }

  summarize() {
    const finished = this.items.filter((item) => item.done || item.failed).length;
    const failed = this.items.filter((item) => item.failed).length;
    const total = this.items.length;
    const failures = failed ? ` (${failed} could not be processed)` : "";
    $("batch-summary").textContent =
      finished === total ? `All ${total} finished${failures}.` : `${finished} of ${total} finished${failures}.`;
  }
}
