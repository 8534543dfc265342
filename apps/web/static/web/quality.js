// One "Smaller file ↔ Better quality" control that runs the same way for every media type. It
// moves the operation's own quality parameters (a video's CRF, where lower is better; an image's
// quality, where higher is better; an audio bitrate), which stay visible under "Advanced".

import { formatBytes } from "./format.js";

export const LEVELS = ["Smallest file", "Smaller file", "Balanced", "Better quality", "Best quality"];
const BALANCED = 2;
// Parameters that trade size for quality. Which way is better: a bitrate's higher values, and a
// "quality" number's higher values unless its description says lower is better (a CRF).
const KNOB_NAMES = new Set(["quality", "bitrate", "audio_bitrate"]);

function bitrateKbps(value) {
  const match = /^(\d+)k$/i.exec(String(value));
  return match ? Number(match[1]) : null;
}

// Five values for one parameter, from smallest file to best quality; the default is "Balanced".
function numericSteps(property) {
  const { minimum: min, maximum: max, default: start } = property;
  if (![min, max, start].every(Number.isFinite)) return null;
  const lowerIsBetter = /lower is better/i.test(property.description ?? "");
  const best = lowerIsBetter ? min : max;
  let worst = lowerIsBetter ? max : min;
  // A wide scale (an image's 1-100) goes only half-way down: quality 1 is no one's idea of a file.
  const halfRange = (max - min) / 2;
  if (Math.abs(worst - start) > halfRange) worst = start + Math.sign(worst - start) * halfRange;
  const round = property.type === "integer" ? Math.round : (value) => value;
  return [worst, start + (worst - start) / 2, start, start + (best - start) / 2, best].map(round);
}

function enumSteps(property) {
  const values = property.enum;
  if (!values.every((value) => bitrateKbps(value) !== null) || !values.includes(property.default)) return null;
  const ordered = [...values].sort((a, b) => bitrateKbps(a) - bitrateKbps(b));
  const start = ordered.indexOf(property.default);
  const last = ordered.length - 1;
  const indexes = [0, Math.floor(start / 2), start, start + Math.ceil((last - start) / 2), last];
  return indexes.map((index) => ordered[index]);
}

// [{name, steps}] for the schema's quality parameters; empty when it has none.
export function qualityKnobs(schema) {
  const knobs = [];
  for (const [name, property] of Object.entries(schema?.properties ?? {})) {
    if (!KNOB_NAMES.has(name) || property.default === undefined) continue;
    const steps = Array.isArray(property.enum) ? enumSteps(property) : numericSteps(property);
    if (steps) knobs.push({ name, steps });
  }
  return knobs;
}

// Builds the control into `container`; `form` is the parameter form it moves. Returns an object
// with update() (re-computes the estimate) or null when the operation has nothing to trade.
export function renderQualityControl(container, { schema, form, estimate }) {
  container.replaceChildren();
  const knobs = qualityKnobs(schema);
  container.hidden = knobs.length === 0;
  if (!knobs.length) return null;

  const wrapper = document.createElement("div");
  wrapper.className = "field knob";
  const label = document.createElement("label");
  label.htmlFor = "quality-knob";
  label.textContent = "Smaller file ↔ Better quality";
  const row = document.createElement("div");
  row.className = "knob-row";
  const ends = (text) => {
    const node = document.createElement("span");
    node.className = "knob-end";
    node.setAttribute("aria-hidden", "true");
    node.textContent = text;
    return node;
  };
  const slider = document.createElement("input");
  slider.type = "range";
  slider.id = "quality-knob";
  slider.min = "0";
  slider.max = String(LEVELS.length - 1);
  slider.step = "1";
  slider.value = String(BALANCED);
  slider.setAttribute("aria-describedby", "quality-knob-text quality-estimate");
  row.append(ends("Smaller"), slider, ends("Better"));
  const text = document.createElement("p");
  text.id = "quality-knob-text";
  text.className = "knob-text";
  const estimateNode = document.createElement("p");
  estimateNode.id = "quality-estimate";
  estimateNode.className = "hint";
  estimateNode.setAttribute("aria-live", "polite");
  wrapper.append(label, row, text, estimateNode);
  container.append(wrapper);

  const update = () => {
    const values = form.values();
    // A target size decides the quality itself (two-pass encoding): the control would do nothing.
    const targeted = Number.isFinite(values.target_size_mb);
    slider.disabled = targeted;
    text.textContent = targeted ? "Set by the target size" : LEVELS[Number(slider.value)];
    estimateNode.textContent = estimate?.(values) ?? "";
  };
  const apply = () => {
    const level = Number(slider.value);
    slider.setAttribute("aria-valuetext", LEVELS[level]);
    text.textContent = LEVELS[level];
    for (const knob of knobs) form.set(knob.name, knob.steps[level]);
    update();
  };
  slider.addEventListener("input", apply);
  slider.setAttribute("aria-valuetext", LEVELS[BALANCED]);
  text.textContent = LEVELS[BALANCED];
  update();
  return { update, slider };
}

// An estimate only where one can be honest: a target size is a ceiling; a constant-bitrate audio
// output is bitrate × duration. Anything that depends on the content (CRF, image quality) is not
// guessed.
export function estimateSize(values, { duration, operation }) {
  if (Number.isFinite(values.target_size_mb)) return `The result will be at most ${values.target_size_mb} MB.`;
  const constantBitrate = ["mp3", "aac", "ogg"].includes(values.output_format);
  const kbps = bitrateKbps(values.bitrate);
  if (operation?.startsWith("audio_") && constantBitrate && kbps && Number.isFinite(duration) && duration > 0) {
    return `Estimated size: about ${formatBytes((kbps * 1000 * duration) / 8)}.`;
  }
  return null;
}
