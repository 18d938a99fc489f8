// The comparison page: one /v1/translate request per ticked adapter, the answers side by
// side with their latencies, words that differ from a reference column highlighted.
// Every text from the server or the user is put in the page with textContent, never as markup.

import { wordDiff } from "./diff.js";

const BASE = "__base__";
const $ = (id) => document.getElementById(id);
const state = { key: sessionStorage.getItem("mtadapt-key") || "", adapters: [], results: [] };

function el(tag, text, attrs = {}) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function authHeaders() {
  return state.key ? { Authorization: `Bearer ${state.key}` } : {};
}

// URLs are relative to the page, so the page also works behind a proxy under a sub-path.
async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...authHeaders(), ...(options.headers || {}) } });
  let body = null;
  try { body = await response.json(); } catch { /* not JSON: reported below */ }
  if (!response.ok) {
    throw new Error((body && body.error) || `${path}: HTTP ${response.status}`);
  }
  return body;
}

// ---- settings (LibreTranslate's /frontend/settings) ----------------------------------------

async function loadSettings() {
  let settings = {};
  try { settings = await api("frontend/settings"); } catch { /* an older server: the defaults below */ }
  state.settings = settings;
  if (settings.keyRequired && !state.key) $("status").textContent = "This server needs an API key: enter one above.";
  if (settings.charLimit) $("text-limit").textContent = `At most ${settings.charLimit} characters per line.`;
  const formats = settings.supportedFilesFormat || [];
  if (settings.filesTranslation === false || (settings.supportedFilesFormat && !formats.length)) {
    $("file-form").hidden = true;
    $("file-formats").textContent = "This server translates no files.";
  } else if (formats.length) {
    const extensions = formats.map((f) => (f.startsWith(".") ? f : `.${f}`));
    $("file").setAttribute("accept", extensions.join(","));
    $("file-formats").textContent = `Formats: ${extensions.join(", ")}. The translated file comes back as a download link.`;
  }
}

// ---- languages ---------------------------------------------------------------------------

async function loadLanguages() {
  const languages = await api("languages");
  state.languages = languages;
  const source = $("source");
  source.replaceChildren(...languages.map((l) => el("option", `${l.name} (${l.code})`, { value: l.code })));
  const defaults = (state.settings && state.settings.language) || {};
  if (defaults.source && languages.some((l) => l.code === defaults.source.code)) source.value = defaults.source.code;
  fillTargets();
  const target = defaults.target && defaults.target.code;
  if (target && [...$("target").options].some((o) => o.value === target)) $("target").value = target;
}

function fillTargets() {
  const language = (state.languages || []).find((l) => l.code === $("source").value);
  const names = Object.fromEntries((state.languages || []).map((l) => [l.code, l.name]));
  const targets = language ? language.targets : [];
  $("target").replaceChildren(...targets.map((t) => el("option", names[t] ? `${names[t]} (${t})` : t, { value: t })));
}

// ---- adapters ----------------------------------------------------------------------------

function formatBytes(n) {
  if (n === null || n === undefined) return "";
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

function adapterRow(name, label, cells, checked) {
  const id = `use-${name}`;
  const box = el("input", null, { type: "checkbox", id, value: name, name: "adapter" });
  box.checked = checked;
  const use = el("td");
  use.append(box);
  const tr = el("tr");
  const nameCell = el("td");
  nameCell.append(el("label", label, { for: id }));
  tr.append(use, nameCell, ...cells.map((c) => el("td", c)));
  return tr;
}

async function loadAdapters() {
  const tbody = $("adapters").querySelector("tbody");
  tbody.replaceChildren();
  state.adapters = [];
  let listing;
  try {
    listing = await api("v1/adapters");
  } catch (err) {
    showError(`${err.message}. Enter an API key above.`);
    fillFileAdapters();
    return;
  }
  state.adapters = listing.adapters;
  state.baseAllowed = listing.base_allowed !== false;
  const rows = [];
  if (state.baseAllowed) rows.push(adapterRow(BASE, "base (no adapter)", ["none", "0", "", ""], true));
  listing.adapters.forEach((a, i) => rows.push(adapterRow(a.name, a.name, [
    a.method, Number(a.trainable_parameters).toLocaleString("en-US"), formatBytes(a.bytes), a.state,
  ], !state.baseAllowed ? i < 2 : i < 1)));
  tbody.replaceChildren(...rows);
  fillFileAdapters();
  $("status").textContent = `${listing.adapters.length} adapter(s) available${state.baseAllowed ? ", and the base model" : ""}.`;
}

function fillFileAdapters() {
  const options = [el("option", "the direction's default", { value: "" })];
  if (state.baseAllowed) options.push(el("option", "base (no adapter)", { value: BASE }));
  for (const a of state.adapters) options.push(el("option", a.name, { value: a.name }));
  $("file-adapter").replaceChildren(...options);
}

// ---- translation -------------------------------------------------------------------------

function segments(text, html) {
  if (html) return { texts: [text], rebuild: (out) => out[0] };
  // each non-empty line is one segment; empty lines stay where they were
  const lines = text.split("\n");
  const kept = lines.map((l, i) => [l, i]).filter(([l]) => l.trim() !== "");
  return {
    texts: kept.map(([l]) => l),
    rebuild: (out) => {
      const copy = lines.map(() => "");
      kept.forEach(([, i], k) => { copy[i] = out[k]; });
      return copy.join("\n");
    },
  };
}

async function translateWith(name, texts, html) {
  const body = { texts, adapter: name, src_lang: $("source").value, tgt_lang: $("target").value };
  if (html) body.format = "html";
  const start = performance.now();
  const answer = await api("v1/translate", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  return { answer, ms: performance.now() - start };
}

async function translateAll(event) {
  event.preventDefault();
  showError("");
  const names = [...document.querySelectorAll("#adapters input[name=adapter]:checked")].map((b) => b.value);
  const text = $("text").value;
  if (!names.length) return showError("Tick at least one adapter to translate with.");
  if (!text.trim()) return showError("Type or paste a text to translate.");
  const html = $("html-mode").checked;
  const { texts, rebuild } = segments(text, html);
  state.results = [];
  renderResults();
  $("translate").disabled = true;
  // one adapter after the other: each latency is that adapter's alone, not a shared batch's
  try {
    for (const name of names) {
      const label = name === BASE ? "base (no adapter)" : name;
      try {
        const { answer, ms } = await translateWith(name, texts, html);
        state.results.push({ name, label, text: rebuild(answer.translations), ms, serverMs: answer.timings.total_ms,
                             warnings: answer.warnings || [] });
      } catch (err) {
        state.results.push({ name, label, error: err.message });
      }
      renderResults();
    }
  } finally {
    $("translate").disabled = false;
  }
  $("status").textContent = `Translated with ${names.length} adapter(s).`;
}

function renderText(container, parts) {
  for (const part of parts) {
    if (part.same) container.append(document.createTextNode(part.text));
    else container.append(el("mark", part.text, { class: "diff" }));
  }
}

function renderResults() {
  const reference = $("reference");
  const chosen = reference.value;
  const ok = state.results.filter((r) => r.error === undefined);
  reference.replaceChildren(...ok.map((r) => el("option", r.label, { value: r.name })));
  if (ok.some((r) => r.name === chosen)) reference.value = chosen;
  const ref = ok.find((r) => r.name === reference.value);
  const columns = state.results.map((r) => {
    const column = el("section", null, { class: "column", "data-adapter": r.name, "aria-label": r.label });
    column.append(el("h3", r.label));
    if (r.error !== undefined) {
      column.append(el("p", r.error, { class: "error" }));
      return column;
    }
    column.append(el("p", `${Math.round(r.ms)} ms (server ${Math.round(r.serverMs)} ms)`, { class: "latency" }));
    const output = el("div", null, { class: "output" });
    const diff = ref && ref !== r ? wordDiff(ref.text, r.text) : null;
    if (diff) {
      renderText(output, diff.b);
      const differing = diff.b.filter((p) => !p.same).length;
      column.append(el("p", `${differing} word(s) differ from ${ref.label}`, { class: "diff-count" }));
    } else {
      output.textContent = r.text;
      if (ref === r) column.append(el("p", "reference", { class: "diff-count" }));
    }
    column.append(output);
    if (r.warnings.length) column.append(warningList(r.warnings));
    return column;
  });
  $("results").replaceChildren(...columns);
}

// placeholders that did not come through exactly once, or markup the model lost (the server's `warnings`)
function warningList(warnings) {
  const list = el("ul", null, { class: "warnings", "aria-label": "warnings" });
  list.append(...warnings.map((w) => el("li", w.message || JSON.stringify(w))));  // the message names where
  return list;
}

// ---- files -------------------------------------------------------------------------------

async function translateFile(event) {
  event.preventDefault();
  showError("");
  const file = $("file").files[0];
  if (!file) return showError("Choose a file to translate.");
  const form = new FormData();
  form.append("file", file);
  form.append("source", $("source").value);
  form.append("target", $("target").value);
  if (state.key) form.append("api_key", state.key);
  if ($("file-adapter").value) form.append("adapter", $("file-adapter").value);
  $("file-result").replaceChildren(document.createTextNode(`Translating ${file.name}...`));
  $("translate-file").disabled = true;
  try {
    const answer = await api("translate_file", { method: "POST", body: form });
    const url = new URL(answer.translatedFileUrl, location.href);
    if (!["http:", "https:"].includes(url.protocol)) throw new Error(`unexpected download URL ${url}`);
    const name = decodeURIComponent(url.pathname.split("/").pop());
    const link = el("a", `Download ${name}`, { href: url.href, download: name, id: "download" });
    $("file-result").replaceChildren(link);
    if (answer.warnings && answer.warnings.length) $("file-result").append(warningList(answer.warnings));
  } catch (err) {
    $("file-result").replaceChildren();
    showError(err.message);
  } finally {
    $("translate-file").disabled = false;
  }
}

// ---- start -------------------------------------------------------------------------------

async function start() {
  $("api-key").value = state.key;
  $("source").addEventListener("change", fillTargets);
  $("reference").addEventListener("change", renderResults);
  $("translate-form").addEventListener("submit", translateAll);
  $("file-form").addEventListener("submit", translateFile);
  $("key-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    showError("");
    state.key = $("api-key").value.trim();
    sessionStorage.setItem("mtadapt-key", state.key);
    await loadAdapters();
  });
  await loadSettings();
  try {
    await loadLanguages();
  } catch (err) {
    showError(err.message);
  }
  await loadAdapters();
  document.body.dataset.ready = "true";
}

start();
