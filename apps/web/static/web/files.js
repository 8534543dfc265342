// "My files": this session's operations, newest first, a page at a time, with their actions.

import { describeError } from "./api.js";
import { formatBytes, formatDateTime, formatExpiry, formatSizeChange } from "./format.js";
import { isCancellable, isRetryable, isTerminal, operationLabel, statusLabel } from "./status.js";
import { ZIP_LIMIT, uniqueNames, zipStore } from "./zip.js";

// The ZIP holds what "My files" can list: at most this many finished results.
const ZIP_MAX_FILES = 100;

const PAGE_SIZE = 10;
// Only operations other than the current job need this; the current one is polled already.
const REFRESH_VISIBLE_MS = 4000;
const REFRESH_HIDDEN_MS = 30000;

const $ = (id) => document.getElementById(id);

function button(text, label, onClick, className = "button button-secondary button-small") {
  const node = document.createElement("button");
  node.type = "button";
  node.className = className;
  node.textContent = text;
  node.setAttribute("aria-label", label);
  node.addEventListener("click", onClick);
  return node;
}

function paragraph(className, text) {
  const node = document.createElement("p");
  node.className = className;
  node.textContent = text;
  return node;
}

export class FilesView {
  constructor(api, { onOpen, onActed, onRemoved, currentId }) {
    this.api = api;
    this.onOpen = onOpen;
    this.onActed = onActed;
    this.onRemoved = onRemoved;
    this.currentId = currentId;
    this.page = 1;
    this.totalPages = 1;
    this.timer = null;
    this.items = new Map();

    $("files-refresh").addEventListener("click", () => this.load());
    $("files-zip").addEventListener("click", () => this.downloadZip());
    $("files-previous").addEventListener("click", () => this.load(this.page - 1));
    $("files-next").addEventListener("click", () => this.load(this.page + 1));
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && this.timer !== null) this.load();
    });
  }

  async load(page = this.page) {
    clearTimeout(this.timer);
    this.timer = null;
    try {
      const payload = await this.api.listOperations({ page, pageSize: PAGE_SIZE });
      const pagination = payload.pagination ?? { page, total_pages: 1, count: payload.data.length };
      // The last item of the last page was deleted: that page no longer exists.
      if (!payload.data.length && pagination.page > 1 && pagination.page > pagination.total_pages) {
        return this.load(pagination.total_pages || 1);
      }
      $("files-error").hidden = true;
      this.render(payload.data, pagination);
    } catch (error) {
      if (error.code === "not_found" && page > 1) return this.load(1);
      $("files-error").textContent = describeError(error);
      $("files-error").hidden = false;
      this.scheduleRefresh(error.retryAfter ? error.retryAfter * 1000 : REFRESH_HIDDEN_MS);
    }
  }

  render(operations, pagination) {
    this.page = pagination.page ?? 1;
    this.totalPages = Math.max(1, pagination.total_pages ?? 1);
    this.items.clear();
    $("files-list").replaceChildren(...operations.map((operation) => this.renderItem(operation)));
    $("files-empty").hidden = operations.length > 0;
    $("files-pages").hidden = this.totalPages <= 1;
    $("files-page-info").textContent = `Page ${this.page} of ${this.totalPages}`;
    $("files-previous").disabled = this.page <= 1;
    $("files-next").disabled = this.page >= this.totalPages;
    $("files-zip").disabled = !operations.some((op) => op.status === "completed") && this.totalPages <= 1;
    const othersActive = operations.some((op) => !isTerminal(op.status) && op.id !== this.currentId());
    if (othersActive) this.scheduleRefresh();
  }

  scheduleRefresh(delay = document.hidden ? REFRESH_HIDDEN_MS : REFRESH_VISIBLE_MS) {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.load(), delay);
  }

  renderItem(operation) {
    const name = operation.input_file?.file_name ?? "file";
    const item = document.createElement("li");
    item.className = "file-item";
    item.dataset.operationId = operation.id;

    const main = document.createElement("div");
    main.className = "file-main";
    main.append(paragraph("file-name", name));
    const meta = [operationLabel(operation.operation), formatDateTime(operation.created_at)];
    const output = operation.output_file;
    if (output) {
      const change = formatSizeChange(operation.input_file?.file_size, output.file_size);
      meta.push(`${outputFormat(output)} result ${formatBytes(output.file_size)}${change ? ` (${change})` : ""}`);
    }
    if (operation.status === "completed") meta.push(formatExpiry(operation.expires_at));
    main.append(paragraph("file-meta", meta.filter(Boolean).join(" · ")));
    if (operation.status === "failed" && operation.error_message) {
      main.append(paragraph("file-meta file-failure", operation.error_message));
    }

    const status = document.createElement("p");
    status.className = "file-status";
    const badge = document.createElement("span");
    badge.className = `badge status-${operation.status}`;
    status.append(badge);
    item.append(this.thumbnail(operation), main, status, this.renderActions(operation, name));
    this.items.set(operation.id, { badge });
    this.updateStatus(operation);
    return item;
  }

  // The result itself when it is an image, else its format in a tile.
  thumbnail(operation) {
    const output = operation.output_file;
    const tile = document.createElement("div");
    tile.className = "file-thumb";
    tile.setAttribute("aria-hidden", "true");
    if (operation.status === "completed" && output?.mime_type?.startsWith("image/")) {
      const image = document.createElement("img");
      image.src = output.download_url || this.api.downloadUrl(operation.id);
      image.alt = "";
      image.loading = "lazy";
      tile.append(image);
    } else {
      tile.textContent = output ? outputFormat(output) : extensionOf(operation.input_file?.file_name ?? "") || "…";
    }
    return tile;
  }

  // Every finished result of this browser in one ZIP, built here (stored: media is compressed).
  async downloadZip() {
    const button = $("files-zip");
    const say = (text) => {
      $("files-zip-status").textContent = text;
    };
    button.disabled = true;
    try {
      const payload = await this.api.listOperations({ page: 1, pageSize: ZIP_MAX_FILES, status: "completed" });
      const finished = payload.data.filter((op) => op.status === "completed" && op.output_file);
      if (!finished.length) {
        say("Nothing finished yet to put in a ZIP.");
        return;
      }
      const total = finished.reduce((sum, op) => sum + (op.output_file.file_size ?? 0), 0);
      if (total > ZIP_LIMIT) {
        say("These results are too large for one ZIP: download them one by one.");
        return;
      }
      const names = uniqueNames(finished.map((op) => op.output_file.file_name || `${op.id}.bin`));
      const entries = [];
      for (const [index, op] of finished.entries()) {
        say(`Fetching ${index + 1} of ${finished.length}…`);
        const response = await fetch(op.output_file.download_url || this.api.downloadUrl(op.id), {
          credentials: "same-origin",
        });
        if (!response.ok) throw new Error(`${names[index]}: HTTP ${response.status}`);
        entries.push({ name: names[index], bytes: new Uint8Array(await response.arrayBuffer()) });
      }
      const url = URL.createObjectURL(zipStore(entries));
      const link = document.createElement("a");
      link.href = url;
      link.download = "konvrt-results.zip";
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
      say(`ZIP of ${entries.length} ${entries.length === 1 ? "result" : "results"} ready (${formatBytes(total)}).`);
    } catch (error) {
      say(
        error.code
          ? describeError(error)
          : `The ZIP could not be made: ${error.message}. Download the results one by one instead.`,
      );
    } finally {
      button.disabled = false;
    }
  }

  renderActions(operation, name) {
    const actions = document.createElement("div");
    actions.className = "file-actions";
    actions.append(button("Open", `Open ${name}`, () => this.onOpen(operation)));
    if (operation.status === "completed" && operation.output_file) {
      const link = document.createElement("a");
      link.className = "button button-small";
      link.href = operation.output_file.download_url || this.api.downloadUrl(operation.id);
      link.setAttribute("download", operation.output_file.file_name ?? "");
      link.textContent = "Download";
      link.setAttribute("aria-label", `Download the result of ${name}`);
      actions.append(link);
    }
    if (isCancellable(operation.status)) {
      actions.append(button("Cancel", `Cancel ${name}`, () => this.act(() => this.api.cancel(operation.id))));
    }
    if (isRetryable(operation.status)) {
      actions.append(button("Retry", `Retry ${name}`, () => this.act(() => this.api.retry(operation.id))));
    }
    actions.append(
      button("Delete", `Delete ${name}`, () => this.remove(operation, name), "button button-danger button-small"),
    );
    return actions;
  }

  // The badge follows the current job's polls without reloading the list.
  updateStatus(status) {
    const entry = this.items.get(status.id);
    if (!entry) return;
    const progress = status.status === "processing" ? ` ${Math.round(status.progress ?? 0)}%` : "";
    entry.badge.textContent = `${statusLabel(status.status)}${progress}`;
    entry.badge.className = `badge status-${status.status}`;
  }

  async act(request) {
    try {
      this.onActed?.(await request());
      await this.load();
    } catch (error) {
      $("files-error").textContent = describeError(error);
      $("files-error").hidden = false;
    }
  }

  async remove(operation, name) {
    if (!window.confirm(`Delete ${name} and its result? This cannot be undone.`)) return;
    try {
      await this.api.remove(operation.id);
      this.onRemoved?.(operation.id);
      await this.load();
      // The button that had focus is gone; keep keyboard users in the list.
      $("files-heading").focus();
    } catch (error) {
      $("files-error").textContent = describeError(error);
      $("files-error").hidden = false;
    }
  }
}

function extensionOf(name) {
  const dot = name.lastIndexOf(".");
  return dot > 0 ? name.slice(dot + 1).toUpperCase() : "";
}

function outputFormat(output) {
  return extensionOf(output.file_name ?? "") || (output.mime_type ?? "").split("/")[1]?.toUpperCase() || "";
}
