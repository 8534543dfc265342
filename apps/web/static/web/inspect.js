// A picked file read in the browser before anything is uploaded: what kind of media it is, a
// preview, its dimensions and duration. Whatever the browser cannot decode (a .mkv, a HEIC photo)
// still gets its name, size and format; the server probes it properly after upload.

import { formatBytes, formatDuration } from "./format.js";

const LOAD_TIMEOUT_MS = 5000;

export function extensionOf(name) {
  const dot = name.lastIndexOf(".");
  return dot > 0 ? name.slice(dot + 1).toLowerCase() : "";
}

// The media type of a file: from the operations that accept its extension (the server's own
// catalogue), else from the browser's MIME type.
export function mediaTypeOf(file, definitions) {
  const extension = extensionOf(file.name);
  const accepting = definitions.find((definition) =>
    definition.input_formats.some((format) => format.toLowerCase() === extension),
  );
  if (accepting) return accepting.media_type;
  const family = (file.type || "").split("/")[0];
  return ["image", "video", "audio"].includes(family) ? family : "";
}

function waitFor(element, readyEvent) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), LOAD_TIMEOUT_MS);
    element.addEventListener(readyEvent, () => {
      clearTimeout(timer);
      resolve(true);
    }, { once: true });
    element.addEventListener("error", () => {
      clearTimeout(timer);
      resolve(false);
    }, { once: true });
  });
}

// { kind, preview (an element or null), width, height, duration, url } for one file.
export async function inspectFile(file, mediaType) {
  const url = URL.createObjectURL(file);
  const facts = { kind: mediaType, preview: null, width: null, height: null, duration: null, url };
  if (mediaType === "image") {
    const image = new Image();
    image.alt = `Preview of ${file.name}`;
    const loaded = waitFor(image, "load");
    image.src = url;
    if (await loaded) {
      facts.width = image.naturalWidth;
      facts.height = image.naturalHeight;
      facts.preview = image;
    }
  } else if (mediaType === "video" || mediaType === "audio") {
    const player = document.createElement(mediaType);
    player.preload = "metadata";
    player.controls = true;
    player.muted = true;
    player.setAttribute("aria-label", `Play ${file.name}`);
    const loaded = waitFor(player, "loadedmetadata");
    player.src = url;
    if (await loaded) {
      if (Number.isFinite(player.duration)) facts.duration = player.duration;
      if (mediaType === "video" && player.videoWidth) {
        facts.width = player.videoWidth;
        facts.height = player.videoHeight;
      }
      facts.preview = player;
    }
  }
  return facts;
}

// "Video · MP4 · 1920×1080 · 0:12 · 3.4 MB"
export function describeInput(file, facts) {
  const parts = [];
  if (facts.kind) parts.push(facts.kind.charAt(0).toUpperCase() + facts.kind.slice(1));
  const extension = extensionOf(file.name);
  if (extension) parts.push(extension.toUpperCase());
  if (facts.width && facts.height) parts.push(`${facts.width}×${facts.height}`);
  if (Number.isFinite(facts.duration) && facts.duration > 0) parts.push(formatDuration(facts.duration));
  parts.push(formatBytes(file.size));
  return parts.join(" · ");
}
