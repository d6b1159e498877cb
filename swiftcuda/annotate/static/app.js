// The annotation page: wires the viewer, the tools, the timeline and the panels to the server.

import { ApiError, deleteMask, fetchMask, fetchPicture, getJSON, grabcut, putMask, sendJSON, withToken } from "annotate/api.js";
import { Pacer } from "annotate/pacer.js";
import { cssColour } from "annotate/palette.js";
import { Timeline } from "annotate/timeline.js";
import { TOOL_HELP, ToolController } from "annotate/tools.js";
import { Viewer } from "annotate/viewer.js";

const $ = (id) => document.getElementById(id);
const PICTURES_KEPT = 64; // decoded frames kept for instant scrubbing
const PREFETCH = 3; // frames decoded ahead of the one shown
const UNDO_DEPTH = 40;
// While the engine runs, the page polls its status and shows its newest frame, each held to a
// share of the time (pacer.js): as live as the machine allows, never taking the engine's CPU
// where the browser and the engine share a few cores. Idle, the page polls at a fixed pace.
const RUNNING_POLL = { share: 0.03, minimum: 500 };
const FOLLOW = { share: 0.04, minimum: 500 };
const IDLE_POLL_INTERVAL = 700;
const KIND_NAMES = { given: "drawn by you", predicted: "propagated", stale: "out of date", none: "no mask" };

class App {
  async start() {
    this.info = await getJSON("api/session");
    const [height, width] = this.info.size;
    this.width = width;
    this.height = height;
    this.count = this.info.frames;
    this.viewer = new Viewer($("canvas-box"), width, height);
    this.timeline = new Timeline(this.count, (index) => this.userScrub(index));
    this.tool = "box";
    this.brushRadius = 8;
    this.objects = [];
    this.selected = null;
    this.index = 0;
    this.labels = null; // the shown frame's labels (Uint8Array) or null
    this.kind = "none";
    this.loaded = false;
    this.loading = 0; // ticket of the latest frame asked for
    this.editing = false;
    this.pending = 0; // saves not answered yet
    this.saving = Promise.resolve();
    this.pictures = new Map();
    this.history = new Map(); // frame -> {undo: [], redo: []}
    this.status = null;
    this.version = -1;
    this.wasRunning = false;
    this.lastError = null;
    this.pollPacer = new Pacer(RUNNING_POLL.share, RUNNING_POLL.minimum);
    this.followPacer = new Pacer(FOLLOW.share, FOLLOW.minimum);
    this.tools = new ToolController(this);
    this.wire();
    const name = this.info.input.split(/[\\/]/).filter(Boolean).pop() ?? this.info.input;
    $("video-name").textContent = `${name} · ${this.count} frames · ${width}x${height}`;
    $("video-name").title = `${this.info.input}\nsession and exports: ${this.info.out}`;
    this.fit();
    await this.refresh();
    if (this.objects.length === 0) await this.addObject();
    await this.show(0);
    this.setTool("box");
    this.poll();
    document.body.dataset.ready = "1";
  }

  // -- layout and controls -------------------------------------------------------------------

  fit() {
    const stage = $("stage");
    this.viewer.fit(stage.clientWidth - 20, stage.clientHeight - 50);
    this.tools.draw();
  }

  wire() {
    window.addEventListener("resize", () => this.fit());
    document.querySelectorAll("[data-tool]").forEach((button) => {
      button.addEventListener("click", () => this.setTool(button.dataset.tool));
    });
    $("brush-size").addEventListener("input", () => this.setBrush(Number($("brush-size").value)));
    this.setBrush(Number($("brush-size").value));
    $("opacity").addEventListener("input", () => {
      $("opacity-value").textContent = `${$("opacity").value}%`;
      this.viewer.setOpacity(Number($("opacity").value) / 100);
    });
    this.viewer.setOpacity(Number($("opacity").value) / 100);
    $("undo").addEventListener("click", () => this.undo());
    $("redo").addEventListener("click", () => this.redo());
    $("clear-frame").addEventListener("click", () => this.resetFrame());
    $("add-object").addEventListener("click", () => this.addObject());
    $("propagate").addEventListener("click", () => this.propagate());
    $("stop").addEventListener("click", () => this.stop());
    $("export").addEventListener("click", () => this.exportMasks(false));
    document.addEventListener("keydown", (event) => this.key(event));
  }

  setTool(tool) {
    this.tool = tool;
    this.tools.cancel();
    document.querySelectorAll("[data-tool]").forEach((button) => {
      button.setAttribute("aria-checked", String(button.dataset.tool === tool));
    });
    $("tool-help").textContent = TOOL_HELP[tool];
  }

  setBrush(diameter) {
    diameter = Math.min(120, Math.max(1, diameter));
    $("brush-size").value = String(diameter);
    $("brush-size-value").textContent = `${diameter} px`;
    this.brushRadius = diameter / 2;
    this.tools.draw();
  }

  key(event) {
    if (event.target instanceof HTMLInputElement) {
      // Text fields keep their keys; sliders keep the ones that move them.
      if (event.target.type !== "range" || /^(Arrow|Home|End|Page)/.test(event.key)) return;
    }
    const ctrl = event.ctrlKey || event.metaKey;
    const key = event.key;
    let handled = true;
    if (key === "ArrowLeft" || key === "ArrowRight") {
      const step = (key === "ArrowLeft" ? -1 : 1) * (event.shiftKey ? 10 : 1);
      this.userScrub(this.index + step);
    } else if (key === "Home") this.userScrub(0);
    else if (key === "End") this.userScrub(this.count - 1);
    else if (ctrl && (key === "z" || key === "Z")) event.shiftKey ? this.redo() : this.undo();
    else if (ctrl && (key === "y" || key === "Y")) this.redo();
    else if (ctrl) handled = false;
    else if (key === "b" || key === "B") this.setTool("box");
    else if (key === "d" || key === "D") this.setTool("brush");
    else if (key === "e" || key === "E") this.setTool("eraser");
    else if (key === "p" || key === "P") this.setTool("polygon");
    else if (key === "[") this.setBrush(Math.round(this.brushRadius * 2 / 1.25));
    else if (key === "]") this.setBrush(Math.round(this.brushRadius * 2 * 1.25) + 1);
    else if (key === "n" || key === "N") this.addObject();
    else if (key === "Escape") this.tools.cancel();
    else if (key === "Enter" && this.tool === "polygon") this.tools.closePolygon(event.shiftKey);
    else if (key === "Backspace" && this.tool === "polygon") this.tools.removeCorner();
    else if (/^[1-9]$/.test(key) && this.objects[Number(key) - 1]) this.select(this.objects[Number(key) - 1].id);
    else handled = false;
    if (handled) event.preventDefault();
  }

  toast(message, kind = "error") {
    const toast = $("toast");
    toast.textContent = message;
    toast.className = kind;
    toast.hidden = false;
    clearTimeout(this.toastTimer);
    this.toastTimer = setTimeout(() => { toast.hidden = true; }, kind === "error" ? 7000 : 3500);
  }

  failed(error) {
    console.error(error);
    this.toast(error instanceof ApiError ? sentence(error.message) : `Something went wrong: ${error.message ?? error}`);
  }

  // -- frames --------------------------------------------------------------------------------

  userScrub(index) {
    if (this.editing) return;
    if (this.status?.run?.running && $("follow").checked) $("follow").checked = false; // the user looks around
    this.show(index).catch((error) => this.failed(error));
  }

  async picture(index) {
    let bitmap = this.pictures.get(index);
    if (bitmap === undefined) {
      bitmap = fetchPicture(index);
      this.pictures.set(index, bitmap);
      bitmap.catch(() => this.pictures.delete(index));
    } else {
      this.pictures.delete(index); // most recently used last
      this.pictures.set(index, bitmap);
    }
    while (this.pictures.size > PICTURES_KEPT) {
      const [oldest, promise] = this.pictures.entries().next().value;
      this.pictures.delete(oldest);
      promise.then((old) => old.close()).catch(() => {});
    }
    return bitmap;
  }

  /** Show frame `index` (its picture and masks); a later call wins over an earlier one. `prefetch`
   * decodes the next frames ahead for scrubbing (not when following the engine, whose newest frame
   * is all that is shown: prefetching would only take CPU from it). */
  async show(index, prefetch = true) {
    index = Math.min(this.count - 1, Math.max(0, index));
    const ticket = ++this.loading;
    this.index = index;
    this.loaded = false;
    this.timeline.setCurrent(index);
    this.tools.cancel();
    $("frame-number").textContent = `frame ${index + 1} of ${this.count}`;
    const [bitmap, mask] = await Promise.all([this.picture(index), fetchMask(index)]);
    if (ticket !== this.loading) return;
    this.viewer.showPicture(bitmap);
    this.setMask(mask.labels, mask.kind);
    this.loaded = true;
    setData("frame", String(index));
    if (!prefetch) return;
    for (let next = index + 1; next <= Math.min(this.count - 1, index + PREFETCH); next++) this.picture(next).catch(() => {});
  }

  setMask(labels, kind) {
    this.labels = labels;
    this.kind = kind;
    this.viewer.showMask(labels, kind === "stale");
    this.badge();
  }

  badge() {
    const name = this.info.names[this.index];
    const badge = $("frame-badge");
    badge.replaceChildren();
    const bold = document.createElement("b");
    bold.textContent = `Frame ${this.index + 1}`;
    const kind = document.createElement("span");
    kind.className = `kind ${this.kind}`;
    kind.textContent = KIND_NAMES[this.kind] ?? this.kind;
    badge.append(bold, ` of ${this.count} · ${name}`, kind);
    setData("kind", this.kind);
  }

  // -- editing (the tools call these) --------------------------------------------------------

  canEdit() {
    if (this.status?.run?.running) {
      this.toast("The engine is propagating: press Stop to edit frames.");
      return false;
    }
    if (!this.loaded) return false;
    if (this.tool !== "eraser" && this.selected === null) {
      this.toast("Add an object first (+ Add object), then draw it.");
      return false;
    }
    return true;
  }

  historyOf(index) {
    if (!this.history.has(index)) this.history.set(index, { undo: [], redo: [] });
    return this.history.get(index);
  }

  beginEdit() {
    const history = this.historyOf(this.index);
    history.undo.push({ labels: this.labels === null ? null : this.labels.slice(), kind: this.kind });
    if (history.undo.length > UNDO_DEPTH) history.undo.shift();
    history.redo = [];
    if (this.labels === null) this.labels = new Uint8Array(this.width * this.height);
    this.editing = true;
  }

  labelsForEdit() {
    return this.labels;
  }

  selectedId() {
    return this.selected;
  }

  changed(box) {
    this.viewer.renderMask(box[0], box[1], box[2], box[3]);
  }

  endEdit() {
    this.editing = false;
    this.kind = "given";
    this.viewer.showMask(this.labels, false);
    this.badge();
    this.save(this.index, this.labels.slice());
  }

  /** Send frame `index`'s labels as given, one save after the other. */
  save(index, labels) {
    this.pending++;
    this.saving = this.saving
      .then(() => putMask(index, labels))
      .catch((error) => {
        this.failed(error);
        if (index === this.index) this.show(index).catch(() => {});
      })
      .finally(() => { this.pending--; });
  }

  async box(rect) {
    if (!this.canEdit()) return;
    const index = this.index;
    const id = this.selected;
    this.toast("Finding the object in the box…", "info");
    let mask;
    try {
      mask = await grabcut(index, rect);
    } catch (error) {
      this.failed(error);
      return;
    }
    if (index !== this.index || !this.loaded) return;
    let pixels = 0;
    for (let p = 0; p < mask.length; p++) pixels += mask[p];
    if (pixels === 0) {
      this.toast("GrabCut found nothing in that box: draw a box a little larger than the object, or use the brush.");
      return;
    }
    $("toast").hidden = true;
    this.beginEdit();
    const labels = this.labels;
    for (let p = 0; p < labels.length; p++) {
      if (mask[p]) labels[p] = id;
      else if (labels[p] === id) labels[p] = 0; // the box's object replaces the object's mask
    }
    this.endEdit();
  }

  undo() {
    this.step("undo", "redo");
  }

  redo() {
    this.step("redo", "undo");
  }

  step(from, to) {
    const history = this.historyOf(this.index);
    if (history[from].length === 0 || this.editing) return;
    if (!this.canEdit()) return;
    const entry = history[from].pop();
    history[to].push({ labels: this.labels === null ? null : this.labels.slice(), kind: this.kind });
    this.restore(entry);
  }

  restore(entry) {
    const index = this.index;
    this.setMask(entry.labels === null ? null : entry.labels.slice(), entry.kind);
    if (entry.kind === "given") {
      this.save(index, entry.labels.slice());
      return;
    }
    this.pending++;
    this.saving = this.saving
      .then(() => deleteMask(index))
      .then((reply) => { if (index === this.index) { this.kind = reply.kind; this.badge(); } })
      .catch((error) => this.failed(error))
      .finally(() => { this.pending--; });
  }

  async resetFrame() {
    if (this.kind !== "given") {
      this.toast("Nothing drawn on this frame: it shows the propagated mask, if any.");
      return;
    }
    if (!this.canEdit()) return;
    const history = this.historyOf(this.index);
    history.undo.push({ labels: this.labels.slice(), kind: this.kind });
    history.redo = [];
    const index = this.index;
    try {
      await this.saving;
      await deleteMask(index);
      const mask = await fetchMask(index);
      if (index === this.index) this.setMask(mask.labels, mask.kind);
    } catch (error) {
      this.failed(error);
    }
  }

  // -- objects -------------------------------------------------------------------------------

  async addObject() {
    try {
      const created = await sendJSON("POST", "api/objects", {});
      await this.refresh();
      this.select(created.id);
    } catch (error) {
      this.failed(error);
    }
  }

  select(id) {
    this.selected = id;
    this.renderObjects();
  }

  async removeObject(object) {
    if (!window.confirm(`Remove ${object.name} (id ${object.id}) from every frame? Its masks are erased.`)) return;
    try {
      await this.saving;
      await sendJSON("DELETE", `api/objects/${object.id}`);
      if (this.selected === object.id) this.selected = null;
      await this.refresh();
      await this.show(this.index);
    } catch (error) {
      this.failed(error);
    }
  }

  async renameObject(object) {
    const name = window.prompt("Name of the object:", object.name);
    if (name === null) return;
    try {
      await sendJSON("PATCH", `api/objects/${object.id}`, { name });
      await this.refresh();
    } catch (error) {
      this.failed(error);
    }
  }

  renderObjects() {
    const list = $("objects");
    list.replaceChildren();
    if (this.selected !== null && !this.objects.some((o) => o.id === this.selected)) this.selected = null;
    if (this.selected === null && this.objects.length > 0) this.selected = this.objects[0].id;
    this.objects.forEach((object, position) => {
      const item = document.createElement("li");
      item.dataset.id = String(object.id);
      item.title = `Select (${position < 9 ? `key ${position + 1}` : "click"}); double-click the name to rename`;
      if (object.id === this.selected) item.classList.add("selected");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = cssColour(object.id);
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = object.name;
      name.addEventListener("dblclick", () => this.renameObject(object));
      const id = document.createElement("span");
      id.className = "id";
      id.textContent = `#${object.id}`;
      const remove = document.createElement("button");
      remove.textContent = "×";
      remove.title = "Remove this object from every frame";
      remove.addEventListener("click", (event) => {
        event.stopPropagation();
        this.removeObject(object);
      });
      item.append(swatch, name, id, remove);
      item.addEventListener("click", () => this.select(object.id));
      list.append(item);
    });
  }

  // -- the engine ----------------------------------------------------------------------------

  async propagate() {
    try {
      await this.saving;
      const plan = await sendJSON("POST", "api/propagate");
      $("follow").checked = true;
      this.toast(`Propagating from frame ${plan.start + 1}…`, "info");
      await this.refresh();
    } catch (error) {
      this.failed(error);
    }
  }

  async stop() {
    try {
      await sendJSON("POST", "api/stop");
    } catch (error) {
      this.failed(error);
    }
  }

  async exportMasks(overwrite) {
    const name = $("export-name").value.trim() || "masks";
    $("export").disabled = true;
    $("export-info").textContent = "Exporting…";
    try {
      await this.saving;
      const report = await sendJSON("POST", "api/export", { name, overwrite });
      const info = $("export-info");
      info.replaceChildren(`Wrote ${report.frames} masks to ${report.masks} and `);
      const link = document.createElement("a");
      link.href = withToken(report.overlay_url);
      link.textContent = "the overlay video";
      link.download = "";
      info.append(link, ".");
      const notes = [];
      if (report.without_mask) notes.push(`${report.without_mask} frames had no mask (written as background)`);
      if (report.stale) notes.push(`${report.stale} were out of date`);
      if (notes.length) info.append(` Note: ${notes.join("; ")}.`);
      this.toast(`Exported ${report.frames} frames.`, "info");
    } catch (error) {
      $("export-info").textContent = "";
      if (error instanceof ApiError && error.status === 409 && !overwrite
          && window.confirm(`${sentence(error.message)}\n\nReplace the earlier export?`)) {
        $("export").disabled = false;
        return this.exportMasks(true);
      }
      this.failed(error);
    } finally {
      $("export").disabled = false;
    }
  }

  // -- the server's state --------------------------------------------------------------------

  async refresh() {
    this.applyStatus(await getJSON("api/status"));
  }

  poll() {
    this.pollPacer
      .run(() => this.refresh())
      .catch((error) => {
        if (error instanceof TypeError) this.toast("Lost the server: is swiftcuda annotate still running?");
        else this.failed(error);
      })
      .finally(() => setTimeout(() => this.poll(), this.status?.run?.running ? this.pollPacer.wait() : IDLE_POLL_INTERVAL));
  }

  /** Show the engine's newest frame `index`, when the follow pacer allows. */
  follow(index) {
    if (index === this.index || this.editing || !this.followPacer.due()) return;
    this.followPacer.run(() => this.show(index, false)).catch(() => {});
  }

  applyStatus(status) {
    const previous = this.status;
    this.status = status;
    const { session, run, plan } = status;
    if (JSON.stringify(session.objects) !== JSON.stringify(this.objects)) {
      this.objects = session.objects;
      this.renderObjects();
    }
    this.timeline.setRuns(session.runs);
    this.timeline.setEngineFrame(run.running ? run.frame : null);
    this.runPanel(run, plan);
    this.hint(session, run, plan);
    setData("running", String(run.running));
    if ($("tool-canvas").classList.contains("busy") !== run.running) $("tool-canvas").classList.toggle("busy", run.running);
    const engineFrame = run.frame !== null && run.frame !== undefined;
    const following = $("follow").checked && engineFrame && (run.running || this.wasRunning);
    if (following && run.running) {
      this.follow(run.frame);
    } else if (following && run.frame !== this.index && !this.editing) {
      this.show(run.frame).catch(() => {}); // the run ended: its last frame, whatever the pace
    } else if (session.version !== this.version && previous !== null && !this.editing && this.pending === 0 && this.loaded) {
      // Something changed on the server (a run, another tab): reload the frame if its mask did.
      const kind = this.timeline.kindOf(this.index);
      if (kind !== this.kind || (run.running && run.frame === this.index) || (this.wasRunning && !run.running)) {
        this.show(this.index).catch(() => {});
      }
    }
    if (this.wasRunning && !run.running && run.error) this.toast(run.error);
    if (this.wasRunning && !run.running && !run.error) {
      this.toast(run.finished === "stopped" ? "Stopped: the masks so far are kept." : "Propagated to the end of the video.", "info");
    }
    this.version = session.version;
    this.wasRunning = run.running;
  }

  runPanel(run, plan) {
    const button = $("propagate");
    setProperty(button, "disabled", run.running || plan.start === undefined);
    setProperty(button, "textContent", plan.start === undefined ? "▶ Propagate" : `▶ Propagate from frame ${plan.start + 1}`);
    setProperty(button, "title", sentence(plan.error ?? "Run the engine from the frames you drew on to the end of the video"));
    setProperty($("stop"), "disabled", !run.running || run.stopping);
    const progress = $("progress");
    const info = $("run-info");
    if (run.running) {
      setProperty(progress, "max", Math.max(1, run.total));
      setProperty(progress, "value", run.done);
      const parts = [run.replaying ? "Resuming the engine…" : `Frame ${(run.frame ?? run.start) + 1} of ${this.count}`];
      if (run.fps) parts.push(`${run.fps.toFixed(1)} frames/s`);
      if (run.eta_s !== null && run.eta_s !== undefined) parts.push(`${formatSeconds(run.eta_s)} left`);
      setProperty(info, "textContent", parts.join(" · "));
    } else {
      if (run.finished === "completed") setProperty(progress, "value", progress.max);
      setProperty(info, "textContent", run.error ? `Stopped by an error: ${run.error}` : sentence(plan.error ?? ""));
    }
  }

  hint(session, run, plan) {
    const kinds = new Set(session.runs.map((r) => r[0]));
    const selected = this.objects.find((o) => o.id === this.selected);
    let text;
    if (this.objects.length === 0) text = "Add an object to track: + Add object.";
    else if (!kinds.has("given")) text = `Draw ${selected?.name ?? "the object"} on a frame: drag a box around it (B) or paint it (D).`;
    else if (run.running) text = "Propagating: scrub the timeline to look at any frame; Stop to correct one.";
    else if (session.chain === null) text = "Drawn? Press ▶ Propagate to follow the objects through the video.";
    else if (kinds.has("stale")) text = "Frames after your correction are out of date: press ▶ Propagate.";
    else if (plan.start !== undefined) text = `Press ▶ Propagate to carry on from frame ${plan.start + 1}.`;
    else text = "Scrub to check the masks; draw on any frame to correct it, then Propagate again. Export when done.";
    setProperty($("hint"), "textContent", text);
  }
}

// The page is polled several times a second while the engine runs: writing only what changed
// spares the browser style and layout work (CPU the engine needs on a small machine).
function setProperty(element, name, value) {
  if (element[name] !== value) element[name] = value;
}

function setData(name, value) {
  if (document.body.dataset[name] !== value) document.body.dataset[name] = value;
}

/** The server's one-line messages, as sentences. */
function sentence(text) {
  if (!text) return text;
  return text.charAt(0).toUpperCase() + text.slice(1) + (/[.!?]$/.test(text) ? "" : ".");
}

function formatSeconds(seconds) {
  if (seconds < 60) return `${Math.ceil(seconds)} s`;
  const minutes = Math.floor(seconds / 60);
  return `${minutes} min ${Math.round(seconds - 60 * minutes)} s`;
}

const app = new App();
window.annotateApp = app; // for the browser tests
app.start().catch((error) => {
  console.error(error);
  const toast = $("toast");
  toast.textContent = `The page could not start: ${error.message ?? error}`;
  toast.hidden = false;
});
